"""Cut raw videos into face clips in this project's training layout.

    python crop_video.py --inp raw/ --out data/my-faces [--image_shape 256,256] [--increase 0.1]
        [--min_frames 64] [--min_size 256] [--stride 5] [--track fixed|smooth] [--format mp4|png]
        [--test_ids alice,bob | --test_fraction 0.2] [--id_regex '^(?P<id>[^_]+)_'] [--preset fomm]

Any size, frame rate and length; several faces; cuts. For every video:

1. One decode: shot cuts on every frame (colour histograms), faces on every `--stride`-th frame
   of each shot and on its last frame, in batches of `--batch_size` (frames shrunk to
   `--detect_size` for the detector; with `--detector hog`, the default, a frame without a face is
   looked at again at 2x and 4x that size, unless only faces under `--min_size` could be found).
2. Detections are linked into tubes by IoU (`--iou`); a tube ends at a cut or when its face is not
   found (`--max_missed` detection frames in a row); with a fixed box also when the face has left
   its first box (IoU below `--iou_with_initial`, FOMM's rule). Tubes shorter than `--min_frames`
   frames or whose face box (union over the tube) is smaller than `--min_size` pixels are dropped.
3. A square box per tube: the union of its face boxes, enlarged by `--increase` on each side
   (FOMM's crop-video uses 0.1); or, with `--track smooth`, a box whose centre follows the face,
   smoothed over `--smooth` seconds, with the side of the tube's largest face box (no zoom). At the frame edge the box is padded (`--edge pad`, edge pixels
   repeated), moved inside (`shift`) or cut (`clip`, then stretched as FOMM's crop-video).
4. A second decode writes each tube, resized to `--image_shape`, to
   OUT/train|test/<id>#<video>#<tube>.mp4 (or a folder of PNG frames with `--format png`), split
   by identity: the id is the file name's part before its first '#' (else the whole name), or the
   group `id` (else group 1) of `--id_regex`. Test ids: `--test_ids`, else a seeded
   `--test_fraction` of the ids.

OUT/manifest.csv lists every clip: source, frame range, times, fps, box and the options, so the
cut can be reproduced; OUT/skipped.csv lists dropped tubes and videos without a face, with the
reason. Writes are atomic; a re-run skips videos already done with the same options, and clips
already written. The result trains with `run.py` unchanged (dataset_params.root_dir: OUT).
Face backend: `--face_backend auto|face-alignment|dlib` (see docs/faces.md).

`--preset fomm`: FOMM's crop-video.py's rules instead (every frame; a tube follows its first box
and ends on the first frame without its face; cuts not seen; kept when end - start > 150, written
from start to end - 1 as its ffmpeg command cuts; any face size; the box cut at the frame edge).

`--target body` cuts clips of whole persons instead (Tai-Chi-style data sets), with the person
tubes of video-preprocessing's crop_taichi.py (bodies/tubes.py, docs/bodies.md): persons found by
MediaPipe's BlazePose (whole: head and feet seen; at least --min_person of the frame height), one
fixed square box per tube (the first person box enlarged by --increase, default 0.05), a tube
ending when its person leaves that box, another person walks into it, the camera moves
(--camera_motion) or the shot cuts;
--min_frames (default 128) and --min_size on the box's side; boxes at the frame edge are moved
inside (--edge shift).
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import os
import re
import sys
import warnings
from dataclasses import dataclass
from typing import Iterator

import numpy as np

ROOT = os.path.dirname(os.path.abspath(__file__))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from bodies.backend import BodyModelError  # noqa: E402
from faces.backend import BACKEND_CHOICES, DETECTOR_CHOICES, DETECTOR_HELP, FaceModelError, load_backend  # noqa: E402
from faces.boxes import (EDGE_MODES, crop_resized, fit_box, fomm_box, outside_fraction, smooth_track,  # noqa: E402
                         square_box)
from faces.scan import scan_video  # noqa: E402
from faces.tubes import Tube  # noqa: E402
from media.files import Terminated, atomic_path, overwritten_input, sigterm_as_interrupt  # noqa: E402
from media import MediaError, MediaWarning, VideoReader, VideoWriter  # noqa: E402

VIDEO_EXTENSIONS = ('.mp4', '.mov', '.avi', '.mkv', '.webm', '.gif', '.m4v', '.mpg', '.mpeg', '.flv', '.wmv')
MANIFEST_FIELDS = ('name', 'partition', 'id', 'source', 'start_frame', 'end_frame', 'start_time', 'end_time',
                   'fps', 'source_width', 'source_height', 'x0', 'y0', 'x1', 'y1', 'outside', 'track', 'edge',
                   'face_backend', 'options')
SKIPPED_FIELDS = ('source', 'start_frame', 'end_frame', 'reason', 'options')
# --preset fomm: FOMM's crop-video.py (first-order-model). It keeps a tube when end - start > 150
# (its --min_frames 150; at least 152 frames with a face) and its ffmpeg command (-ss start/fps
# -t (end - start)/fps) cuts frames start..end-1: clips of at least 151 frames. It looks at every
# frame, shrunk to 640 px, keeps faces of any size and clips the box at the frame edge.
FOMM_PRESET = {'min_frames': 151, 'max_frames': 0, 'min_size': 0, 'increase': 0.1, 'track': 'fixed', 'edge': 'clip',
               'stride': 1, 'detect_size': 640, 'iou_with_initial': 0.25, 'max_missed': 0}


class CropError(Exception):
    """A problem with the command line; one line, exit status 2."""


def parse_shape(text: str) -> tuple[int, int]:
    values = [int(v) for v in re.split('[,x]', text) if v.strip()] if re.fullmatch(r'[\d,x ]+', text) else []
    if len(values) == 1:
        values *= 2
    if len(values) != 2 or min(values) < 1:
        raise argparse.ArgumentTypeError(f'{text!r}: expected H,W such as 256,256')
    return values[0], values[1]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog='crop_video.py', description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--inp', nargs='+', required=True, metavar='PATH', help='video files and/or folders of them')
    p.add_argument('--out', required=True, help='output data set folder (train/, test/, manifest.csv)')
    p.add_argument('--preset', choices=('fomm',), default=None,
                   help="fomm: FOMM crop-video.py's rules (every frame, a tube follows its first box, clips of at "
                        "least 151 frames, any face size, the box cut at the frame edge); options given beside "
                        "it override its defaults")
    p.add_argument('--image_shape', type=parse_shape, default=(256, 256), metavar='H,W', help='clip size (256,256)')
    p.add_argument('--target', choices=('face', 'body'), default='face',
                   help='face clips (default) or whole-person clips (crop_taichi.py rules, docs/bodies.md)')
    p.add_argument('--increase', type=float, default=None,
                   help='enlarge the face box by this share per side (0.1; --target body: 0.05)')
    p.add_argument('--min_frames', type=int, default=None, help='drop tubes shorter than this (64; --target body: 128)')
    p.add_argument('--max_frames', type=int, default=0, help='split tubes longer than this (0: never)')
    p.add_argument('--min_size', type=int, default=256,
                   help="drop tubes whose face box's longer side (union over the tube, source pixels) is smaller (256)")
    p.add_argument('--track', choices=('fixed', 'smooth'), default='fixed',
                   help='fixed: one box per tube (union); smooth: a box following the face')
    p.add_argument('--smooth', type=float, default=0.3, metavar='SECONDS', help='--track smooth: Gaussian sigma (0.3)')
    p.add_argument('--edge', choices=EDGE_MODES, default=None,
                   help='at the frame edge: pad | shift | clip (pad; --target body: shift)')
    p.add_argument('--format', choices=('mp4', 'png'), default='mp4', help='clip files (mp4) or PNG frame folders')
    p.add_argument('--test_ids', default=None, help='comma-separated ids that go to test/')
    p.add_argument('--test_fraction', type=float, default=0.2, help='share of ids for test/ without --test_ids (0.2)')
    p.add_argument('--seed', type=int, default=0, help='seed of the id split (0)')
    p.add_argument('--id_regex', default=None, help="regex on the file name; group 'id' (or 1) is the identity")
    d = p.add_argument_group('detection')
    d.add_argument('--face_backend', choices=BACKEND_CHOICES, default='auto')
    d.add_argument('--detector', choices=DETECTOR_CHOICES, default='hog', help=DETECTOR_HELP)
    d.add_argument('--device', default='cpu', help='torch device of the face-alignment backend')
    d.add_argument('--stride', type=int, default=5, help='detect faces on every N-th frame (5)')
    d.add_argument('--batch_size', type=int, default=16, help='frames per detector call (16)')
    d.add_argument('--detect_size', type=int, default=640, help="shrink frames to this longer side for detection")
    d.add_argument('--iou', type=float, default=0.25, help='link a detection to a tube above this IoU (0.25)')
    d.add_argument('--iou_with_initial', type=float, default=0.25,
                   help="--track fixed: end a tube when the face's IoU with its first box falls below (0.25)")
    d.add_argument('--max_missed', type=int, default=0, help='detection frames a face may be missed in a tube (0)')
    d.add_argument('--cut_threshold', type=float, default=0.5, help='histogram distance of a cut, 0..1 (0.5)')
    d.add_argument('--min_person', type=float, default=0.1,
                   help='--target body: drop persons shorter than this share of the frame height (0.1)')
    d.add_argument('--camera_motion', type=float, default=1.0, metavar='PX',
                   help='--target body: end every tube where the camera moves this many pixels or more between '
                        'two frames at 256x256 (crop_taichi: 1); 0: never')
    d.add_argument('--no_tiles', action='store_true',
                   help='--target body: look at the whole frame only (default: also at overlapping square tiles '
                        'of a wide frame, where BlazePose finds small persons)')
    p.add_argument('--quiet', action='store_true', help='no progress bars')
    return p


# ----------------------------------------------------------------------------------------------
# Inputs, identities, split
# ----------------------------------------------------------------------------------------------

def list_inputs(paths: list[str]) -> list[str]:
    found = []
    for path in paths:
        if os.path.isdir(path):
            found += [os.path.join(path, n) for n in sorted(os.listdir(path))
                      if not n.startswith('.') and n.lower().endswith(VIDEO_EXTENSIONS)]
        elif os.path.isfile(path):
            found.append(path)
        else:
            raise CropError(f'--inp {path!r}: no such file or folder')
    if not found:
        raise CropError(f'--inp {" ".join(paths)}: no video files ({", ".join(VIDEO_EXTENSIONS)})')
    return [os.path.abspath(p) for p in found]


def identity_of(path: str, regex: str | None) -> tuple[str, str]:
    """(id, video name) from a file name: 'id10001#abc.mp4' -> ('id10001', 'abc')."""
    stem = os.path.splitext(os.path.basename(path))[0]
    if regex:
        match = re.search(regex, stem)
        if not match:
            raise CropError(f'--id_regex {regex!r} does not match the file name {stem!r}')
        ident = match.groupdict().get('id') or (match.group(1) if match.groups() else match.group(0))
        video = stem
    elif '#' in stem:
        ident, video = stem.split('#', 1)
    else:
        ident, video = stem, stem
    clean = re.sub(r'[^\w.-]+', '_', ident).strip('_') or 'face'
    return clean, re.sub(r'[#/\\]+', '_', video)


def test_identities(ids: list[str], args) -> set[str]:
    if args.test_ids is not None:
        return {i.strip() for i in args.test_ids.split(',') if i.strip()}
    unique = sorted(set(ids))
    count = math.ceil(args.test_fraction * len(unique)) if len(unique) > 1 else 0
    order = sorted(unique, key=lambda i: hashlib.sha1(f'{args.seed}:{i}'.encode()).hexdigest())
    return set(order[:count])


def options_signature(args, source: str) -> str:
    """A short hash of everything that decides the clips of `source`."""
    keys = ('image_shape', 'increase', 'min_frames', 'max_frames', 'min_size', 'track', 'smooth', 'edge', 'format',
            'detector', 'stride', 'detect_size', 'iou', 'iou_with_initial', 'max_missed', 'cut_threshold')
    if args.target == 'body':       # (face signatures stay as they were: re-runs skip finished videos)
        keys += ('target', 'min_person', 'no_tiles', 'camera_motion')
    stat = os.stat(source)
    values = [[k, getattr(args, k)] for k in keys] + ([['preset', args.preset]] if args.preset else [])
    if args.target == 'face' and args.detector == 'hog':
        values[keys.index('detector')][1] += '+retry'       # 'hog' looked once before
    blob = json.dumps(values + [stat.st_size, int(stat.st_mtime)], default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:12]


# ----------------------------------------------------------------------------------------------
# Tubes into clips
# ----------------------------------------------------------------------------------------------

@dataclass
class Clip:
    name: str
    partition: str
    start: int            # first frame, inclusive
    end: int              # last frame, inclusive
    boxes: np.ndarray     # (end - start + 1, 4) integer crop boxes in source pixels

    @property
    def box(self) -> np.ndarray:
        return np.concatenate([self.boxes[:, :2].min(axis=0), self.boxes[:, 2:].max(axis=0)])


def split_long(first: int, last: int, max_frames: int) -> list[tuple[int, int]]:
    if max_frames <= 0 or last - first + 1 <= max_frames:
        return [(first, last)]
    return [(s, min(s + max_frames - 1, last)) for s in range(first, last + 1, max_frames)]


def clip_range(tube: Tube, args) -> tuple[int, int]:
    """First and last frame (inclusive) written for a tube: all of it, or with --preset fomm the
    frames crop-video's ffmpeg command cuts (its last frame left out)."""
    return (tube.start, tube.end - 1) if args.preset == 'fomm' else (tube.start, tube.end)


def crop_boxes(tube: Tube, start: int, end: int, width: int, height: int, fps: float, args) -> np.ndarray:
    """(end - start + 1, 4) integer crop boxes for frames start..end of a tube."""
    if args.target == 'body':       # crop_taichi: the box fixed when the tube began (bodies/tubes.py)
        return np.repeat(fit_box(tube.region, width, height, args.edge)[None], end - start + 1, axis=0)
    if args.preset == 'fomm':
        return np.repeat(fomm_box(tube.union(), args.increase, width, height)[None], end - start + 1, axis=0)
    if args.track == 'fixed':
        box = fit_box(square_box(tube.union(), args.increase), width, height, args.edge)
        return np.repeat(box[None], end - start + 1, axis=0)
    faces = tube.per_frame_boxes()[start - tube.start:end - tube.start + 1]
    smooth = smooth_track(faces, args.smooth * fps)
    # the centre follows the face; the side stays the tube's largest, so the clip never zooms
    half = (1 + 2 * args.increase) * (smooth[:, 2:] - smooth[:, :2]).max() / 2
    centres = (smooth[:, :2] + smooth[:, 2:]) / 2
    return np.stack([fit_box(np.concatenate([c - half, c + half]), width, height, args.edge) for c in centres])


def plan_clips(tubes: list[Tube], width: int, height: int, fps: float, prefix: str, partition: str,
               args) -> tuple[list[Clip], list[tuple[int, int, str]]]:
    clips, dropped = [], []
    for tube in tubes:
        union = tube.union()
        size = max(union[2] - union[0], union[3] - union[1])
        first, last = clip_range(tube, args)
        if last - first + 1 < args.min_frames:
            dropped.append((tube.start, tube.end, f'{last - first + 1} frames < --min_frames {args.min_frames}'))
            continue
        if size < args.min_size:
            what = 'face' if args.target == 'face' else 'person box'
            dropped.append((tube.start, tube.end, f'{what} {size:.0f} px < --min_size {args.min_size}'))
            continue
        for start, end in split_long(first, last, args.max_frames):
            if end - start + 1 < args.min_frames:
                dropped.append((start, end, f'{end - start + 1} frames (tail of a split) < --min_frames'))
                continue
            name = f'{prefix}#{len(clips):03d}'
            clips.append(Clip(name, partition, start, end, crop_boxes(tube, start, end, width, height, fps, args)))
    return clips, dropped


def clip_path(out: str, clip: Clip, fmt: str) -> str:
    base = os.path.join(out, clip.partition, clip.name)
    return base + '.mp4' if fmt == 'mp4' else base + '/'


def write_clips(reader: VideoReader, clips: list[Clip], args, bar) -> None:
    """Second decode: crop every pending clip's frames as they stream past."""
    writers: dict[str, VideoWriter] = {}
    last = max(c.end for c in clips)
    try:
        for index, frame in enumerate(reader):
            for clip in clips:
                if clip.start <= index <= clip.end:
                    if clip.name not in writers:
                        # A keyframe every second: training decodes a sampled frame from the keyframe
                        # before it, so x264's default (every 250 frames) would load several times slower.
                        writers[clip.name] = VideoWriter(clip_path(args.out, clip, args.format), fps=reader.fps,
                                                         keyframe_interval=max(1, round(reader.fps)))
                    patch = crop_resized(frame, clip.boxes[index - clip.start], args.image_shape)
                    writers[clip.name].write(patch)
                    if index == clip.end:
                        writers.pop(clip.name).close()
            bar.update(1)
            if index >= last:
                break
        if writers:
            raise MediaError(f'{reader.path}: the video ended before frame {last} on the second read')
    finally:
        for writer in writers.values():
            writer.abort()
        reader.close()


# ----------------------------------------------------------------------------------------------
# Manifest
# ----------------------------------------------------------------------------------------------

def read_csv(path: str) -> list[dict]:
    if not os.path.isfile(path):
        return []
    with open(path, newline='') as f:
        return list(csv.DictReader(f))


def write_csv(path: str, fields, rows: list[dict]) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, 'w', newline='') as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)


def manifest_rows(clips: list[Clip], source: str, ident: str, fps: float, width: int, height: int,
                  backend: str, signature: str, args) -> list[dict]:
    rows = []
    for clip in clips:
        x0, y0, x1, y1 = (int(v) for v in clip.box)
        rows.append({'name': os.path.basename(clip_path(args.out, clip, args.format).rstrip('/')),
                     'partition': clip.partition, 'id': ident, 'source': source,
                     'start_frame': clip.start, 'end_frame': clip.end,
                     'start_time': f'{clip.start / fps:.3f}', 'end_time': f'{(clip.end + 1) / fps:.3f}',
                     'fps': f'{fps:g}', 'source_width': width, 'source_height': height,
                     'x0': x0, 'y0': y0, 'x1': x1, 'y1': y1,
                     'outside': f'{max(outside_fraction(b, width, height) for b in clip.boxes):.3f}',
                     'track': args.track if args.track == 'fixed' else f'smooth:boxes/{clip.name}.csv',
                     'edge': args.edge, 'face_backend': backend, 'options': signature})
    return rows


def write_track_files(clips: list[Clip], args) -> None:
    if args.track != 'smooth':
        return
    for clip in clips:
        rows = [{'frame': clip.start + i, 'x0': b[0], 'y0': b[1], 'x1': b[2], 'y1': b[3]}
                for i, b in enumerate(clip.boxes.tolist())]
        write_csv(os.path.join(args.out, 'boxes', clip.name + '.csv'), ('frame', 'x0', 'y0', 'x1', 'y1'), rows)


# ----------------------------------------------------------------------------------------------

def progress(total, desc: str, quiet: bool):
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, unit='frame', disable=True if quiet else None, leave=False)


def already_done(source: str, signature: str, manifest: list[dict], skipped: list[dict], args) -> bool:
    mine = [r for r in manifest if r['source'] == source and r['options'] == signature]
    if any(r['source'] == source and r['options'] == signature for r in skipped) and not mine:
        return True        # looked at before: nothing to keep
    return bool(mine) and all(os.path.exists(os.path.join(args.out, r['partition'], r['name'])) for r in mine)


def process_video(source: str, backend, partition: str, ident: str, video: str, signature: str,
                  args) -> tuple[list[dict], list[dict], str]:
    """Scan, plan and write one video; returns (manifest rows, skipped rows, one-line summary)."""
    reader = VideoReader(source)
    name = os.path.basename(source)
    frames = reader
    if args.target == 'body':
        from bodies.tubes import CameraMotion
        frames = CameraMotion(reader, args.camera_motion)
    with progress(reader.estimated_num_frames, f'scan {name}', args.quiet) as bar:
        scan = scan_video(frames, backend, stride=args.stride, batch_size=args.batch_size,
                          detect_size=args.detect_size, cut_threshold=args.cut_threshold, min_face=args.min_size,
                          on_frame=lambda: bar.update(1))
    if args.target == 'body':
        from bodies.tubes import person_tubes
        tubes = person_tubes(scan, args.increase, frames.moving)
    else:
        tubes = scan.tubes(args.iou, args.iou_with_initial if args.track == 'fixed' else None, args.max_missed,
                           rule='fomm' if args.preset == 'fomm' else 'ours')
    clips, dropped = plan_clips(tubes, scan.width, scan.height, reader.fps, f'{ident}#{video}', partition, args)
    skipped = [{'source': source, 'start_frame': s, 'end_frame': e, 'reason': why, 'options': signature}
               for s, e, why in dropped]
    if not tubes:
        looked = len(scan.detections)
        skipped.append({'source': source, 'start_frame': 0, 'end_frame': scan.num_frames - 1,
                        'reason': f'no {what_of(args)}', 'options': signature})
        return [], skipped, (f'note: {source}: no {what_of(args)} found (looked at {looked} of {scan.num_frames} '
                             f'frames with {backend.name}); nothing written')
    pending = [c for c in clips if not os.path.exists(clip_path(args.out, c, args.format))]
    if pending:
        with progress(max(c.end for c in pending) + 1, f'crop {name}', args.quiet) as bar:
            write_clips(VideoReader(source), pending, args, bar)
    write_track_files(clips, args)
    rows = manifest_rows(clips, source, ident, reader.fps, scan.width, scan.height, backend.description,
                         signature, args)
    cuts = f', {len(scan.cuts)} cut(s)' if scan.cuts else ''
    why = f'; dropped {len(dropped)}: ' + '; '.join(d[2] for d in dropped[:3]) if dropped else ''
    return rows, skipped, (f'{name}: {scan.num_frames} frames{cuts}, {len(tubes)} tube(s), '
                           f'{len(clips)} clip(s) to {partition}/{why}')


def what_of(args) -> str:
    return 'face' if args.target == 'face' else 'whole person'


def apply_target_defaults(args) -> None:
    """Options left unset take the target's defaults: FOMM's crop-video for faces, crop_taichi.py's
    for bodies (--increase 0.05, --min_frames 128, boxes moved inside the frame)."""
    face = args.target == 'face'
    for name, face_default, body_default in (('increase', 0.1, 0.05), ('min_frames', 64, 128), ('edge', 'pad', 'shift')):
        if getattr(args, name) is None:
            setattr(args, name, face_default if face else body_default)
    if not face and args.track != 'fixed':
        raise CropError('--target body crops each tube with one fixed box (crop_taichi.py); drop --track smooth')
    if not 0 <= args.min_person < 1:
        raise CropError(f'--min_person {args.min_person}: must be in [0, 1)')


def load_detector(args):
    """The face backend, or for --target body the person detector (bodies/)."""
    if args.target == 'face':
        return load_backend(args.face_backend, args.device, detector=args.detector)
    from bodies import load_backend as load_body_backend
    from bodies.tubes import PersonFilter
    return PersonFilter(load_body_backend(use_tiles=not args.no_tiles), args.min_person)


def check_args(args) -> None:
    apply_target_defaults(args)
    for name in ('stride', 'batch_size', 'min_frames'):
        if getattr(args, name) < 1:
            raise CropError(f'--{name} {getattr(args, name)}: must be at least 1')
    if args.increase < 0 or not 0 <= args.test_fraction < 1:
        raise CropError('--increase must be >= 0 and --test_fraction in [0, 1)')
    if args.preset == 'fomm' and (args.target, args.track, args.edge, args.max_missed) != ('face', 'fixed', 'clip', 0):
        raise CropError("--preset fomm follows crop-video.py's rules: one box per tube cut at the frame edge, a tube "
                        'ends on the first frame without its face; drop --target, --track, --edge and --max_missed')
    if args.id_regex:
        try:
            re.compile(args.id_regex)
        except re.error as err:
            raise CropError(f'--id_regex {args.id_regex!r}: {err}') from None


def run(args) -> int:
    check_args(args)
    sources = list_inputs(args.inp)
    clash = overwritten_input(args.out, sources)
    if clash:
        raise CropError(f'--out {args.out!r} holds the input {clash!r}: clips and manifest.csv written there could '
                        'replace it; choose an output folder outside the inputs')
    idents = {s: identity_of(s, args.id_regex) for s in sources}
    test = test_identities([i for i, _ in idents.values()], args)
    backend = load_detector(args)
    manifest_path, skipped_path = os.path.join(args.out, 'manifest.csv'), os.path.join(args.out, 'skipped.csv')
    manifest, skipped = read_csv(manifest_path), read_csv(skipped_path)
    written = failed = 0
    for source in iter_progress(sources, args.quiet):
        ident, video = idents[source]
        signature = options_signature(args, source)
        if already_done(source, signature, manifest, skipped, args):
            print(f'{os.path.basename(source)}: done before with these options; skipped', file=sys.stderr)
            written += sum(r['source'] == source for r in manifest)
            continue
        try:
            rows, dropped, summary = process_video(source, backend, 'test' if ident in test else 'train',
                                                   ident, video, signature, args)
        except MediaError as err:
            print(f'error: {err}', file=sys.stderr)
            failed += 1
            continue
        manifest = [r for r in manifest if r['source'] != source] + rows
        skipped = [r for r in skipped if r['source'] != source] + dropped
        write_csv(manifest_path, MANIFEST_FIELDS, manifest)
        write_csv(skipped_path, SKIPPED_FIELDS, skipped)
        written += len(rows)
        print(summary, file=sys.stderr)
    counts = {p: sum(r['partition'] == p for r in manifest) for p in ('train', 'test')}
    print(f'{args.out}: {counts["train"]} train and {counts["test"]} test clips; manifest {manifest_path}',
          file=sys.stderr)
    if written == 0:
        print('error: no clip was written (see the lines above and skipped.csv)', file=sys.stderr)
        return 2
    if not counts['test'] or not counts['train']:
        print('note: one split is empty; run.py needs clips in both train/ and test/: give --test_ids or more '
              'identities', file=sys.stderr)
    return 2 if failed else 0


def iter_progress(items: list[str], quiet: bool) -> Iterator[str]:
    from tqdm import tqdm
    yield from tqdm(items, desc='videos', unit='video', disable=True if quiet or len(items) < 2 else None)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line; --preset sets its defaults first, so options given beside it win."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.preset == 'fomm':
        parser.set_defaults(**FOMM_PRESET)
        args = parser.parse_args(argv)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with warnings.catch_warnings():
        warnings.simplefilter('always', MediaWarning)
        warnings.showwarning = lambda message, *a, **k: print(f'note: {message}', file=sys.stderr)
        try:
            with sigterm_as_interrupt():       # SIGTERM cleans up as Ctrl-C does: no .part files left
                return run(args)
        except (CropError, FaceModelError, BodyModelError, MediaError) as err:
            print(f'error: {err}', file=sys.stderr)
            return 2
        except KeyboardInterrupt as stop:
            terminated = isinstance(stop, Terminated)
            print(f"{'terminated' if terminated else 'interrupted'}; finished clips are kept, the unfinished one "
                  'is not', file=sys.stderr)
            return 143 if terminated else 130


if __name__ == '__main__':
    sys.exit(main())
