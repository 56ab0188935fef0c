"""Score generated face videos against the real ones: L1, AKD, AED and missing faces.

    python evaluate.py --real data/vox/test --fake log/run/reconstruction/png [--out scores.json]

Any two folders of matching videos: .mp4 (and other ffmpeg formats), .gif, folders of PNG/JPEG
frames, or single-image strips of frames side by side (this project's and the references'
reconstruction/png/<video>.png). Videos match by name with their extensions removed, so
`id1#a.mp4` in --real matches `id1#a.mp4.png` or `id1#a/` in --fake. Real videos are read as the
training data set reads them, at the generated frames' size, so on a reconstruction's png/
folder this gives the numbers of `run.py --mode reconstruction` (faces/metrics.py), with the L1
of the 8-bit strips beside them (the run's L1 is of its unrounded output: within 1/255).

AKD and AED as pose-evaluation computes them: frames at 256x256; AKD = cmp_kp.py's mean
absolute landmark-coordinate difference in pixels; AED = cmp.py's squared L2 distance of the
identity embeddings; other forms beside them (AKD-L2, AED-L2, AED-abs); each with the share of
frames it could not score. See docs/faces.md for the formulas and what differs from the papers.

`--kind body` scores bodies instead (bodies/metrics.py, docs/bodies.md): AKD (mean absolute
coordinate difference over the 18 pose keypoints found in both frames) and MKR (share of the
real frame's keypoints missing in the generated one), as pose-evaluation's cmp_with_missing.py;
AED (cmp.py's squared L2 of re-identification embeddings) with --reid_model, else "not computed".
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.abspath(__file__))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from faces.backend import BACKEND_CHOICES, FaceModelError, as_uint8, load_backend  # noqa: E402
from faces.metrics import PROTOCOL_SIZE, FaceMetrics, face_columns  # noqa: E402
from scoring import L1, table_lines  # noqa: E402
from media.files import atomic_path, overwritten_input  # noqa: E402
from media import IMAGE_EXTENSIONS, MediaError, VideoReader, load_image  # noqa: E402

VIDEO_EXTENSIONS = ('.mp4', '.mov', '.avi', '.mkv', '.webm', '.gif', '.m4v')
STRIP_EXTENSIONS = ('.png', '.jpg', '.jpeg')


class EvaluateError(Exception):
    """A problem with the inputs; one line, exit status 2."""


def base_name(name: str) -> str:
    """'a#b.mp4.png' -> 'a#b': every media extension removed."""
    name = name.rstrip('/')
    while True:
        stem, ext = os.path.splitext(name)
        if ext.lower() not in VIDEO_EXTENSIONS + STRIP_EXTENSIONS + tuple(IMAGE_EXTENSIONS) or not stem:
            return name
        name = stem


def list_media(folder: str) -> dict[str, str]:
    if not os.path.isdir(folder):
        raise EvaluateError(f'{folder!r} is not a folder')
    found = {}
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if name.startswith('.'):
            continue
        if os.path.isdir(path) or name.lower().endswith(VIDEO_EXTENSIONS + STRIP_EXTENSIONS):
            found[base_name(name)] = path
    if not found:
        raise EvaluateError(f'{folder!r} holds no videos (mp4, gif, frame folders or .png strips)')
    return found


def read_video(path: str, frame_height: int) -> np.ndarray:
    """uint8 (T, H, W, 3); a single image is a strip of square frames side by side."""
    if not os.path.isdir(path) and path.lower().endswith(STRIP_EXTENSIONS):
        strip = np.rint(load_image(path) * 255).astype(np.uint8)
        h, w = strip.shape[:2]
        side = frame_height or h
        if w % side or h != side:
            raise EvaluateError(f'{path}: a {w}x{h} image is not a strip of {side}x{side} frames '
                                f'(give --frame_size)')
        return strip.reshape(h, w // side, side, 3).transpose(1, 0, 2, 3)
    with VideoReader(path, strict=True) as reader:
        return np.stack(list(reader))


def read_real(path: str, size: tuple[int, int]) -> np.ndarray:
    """uint8 (T, H, W, 3): a real video as the data set gives it to reconstruction (any format it
    reads, resized to `size` when it differs), so both tools score the same frames."""
    from frames_dataset import VIDEO_FILE_EXTENSIONS, VideoReadError, fit_frame, read_frames, to_float_rgb
    shape = (int(size[0]), int(size[1]), 3)
    try:
        if os.path.isdir(path) or path.lower().endswith(VIDEO_FILE_EXTENSIONS):
            return as_uint8(read_frames(path, None, shape))        # float32 in [0, 1] -> its 8-bit values
    except VideoReadError as err:
        raise EvaluateError(str(err)) from None
    with VideoReader(path, strict=True) as reader:                 # a format the data set does not list
        return as_uint8(np.stack([fit_frame(to_float_rgb(frame), shape) for frame in reader]))


def frame_l1(real: np.ndarray, fake: np.ndarray) -> np.ndarray:
    """(T,) mean |real - fake| per frame of uint8 (T, H, W, 3) videos, in [0, 1] units."""
    return np.abs(real.astype(np.float32) - fake.astype(np.float32)).mean(axis=(1, 2, 3)) / 255.0


def evaluate(real_dir: str, fake_dir: str, backend_name: str = 'auto', device: str = 'cpu',
             frame_size: int = 0, identity: bool = True, kind: str = 'face', reid_model: str | None = None,
             out: str | None = None) -> dict:
    """Scores of the videos of `fake_dir` against their namesakes in `real_dir`. `out`, the JSON
    file main() writes afterwards, is checked first: it must not be one of the videos."""
    real, fake = list_media(real_dir), list_media(fake_dir)
    clash = overwritten_input(out, [*real.values(), *fake.values()]) if out else None
    if clash:
        raise EvaluateError(f'--out {out!r} would write over the input video {clash!r}; choose another path')
    common = sorted(set(real) & set(fake))
    if not common:
        raise EvaluateError(f'no video of {fake_dir!r} matches one of {real_dir!r} by name '
                            f'(e.g. {next(iter(real))!r} vs {next(iter(fake))!r})')
    if kind == 'body':      # bodies/metrics.py: AKD and MKR of the 18 pose keypoints, AED given a re-ID model
        from bodies.metrics import make_body_metrics
        metrics = make_body_metrics(reid_model if identity else None, device)
    else:
        metrics = FaceMetrics(load_backend(backend_name, device), identity=identity)
    notes, l1, counts = [], {}, {}
    from tqdm import tqdm
    for name in tqdm(common, desc='evaluate', unit='video', disable=None, leave=False):
        b = read_video(fake[name], frame_size)
        a = read_real(real[name], b.shape[1:3])
        n = min(len(a), len(b))
        if len(a) != len(b):
            notes.append(f'{name}: {len(a)} real and {len(b)} generated frames; scored the first {n}')
        l1[name] = frame_l1(a[:n], b[:n])
        counts[name] = {'frames_real': len(a), 'frames_generated': len(b)}
        row = metrics.score_video(name, a[:n], b[:n])
        if kind == 'body' and row['mkr'] is None:
            notes.append(f'{name}: no person found in its real frames; not scored')
    if kind == 'body' and metrics.total.summary()['mkr'] is None:
        from bodies.backend import NoBodyError
        raise NoBodyError(f'no person found in any frame of the real videos in {real_dir!r} ({metrics.describe()}): '
                          'nothing to score')
    unmatched = sorted(set(real) ^ set(fake))
    if unmatched:
        notes.append(f'{len(unmatched)} video(s) without a match, not scored: {", ".join(unmatched[:5])}')
    summary = metrics.summary()
    per_video = {name: {'l1': float(l1[name].mean()) if len(l1[name]) else None, **counts[name], **row}
                 for name, row in summary.pop('per_video').items()}
    pooled = np.concatenate(list(l1.values()))
    return {'l1': float(pooled.mean()) if len(pooled) else None, **summary, 'num_videos': len(common),
            'videos_with_frame_count_mismatch': sum(c['frames_real'] != c['frames_generated'] for c in counts.values()),
            'per_video': per_video, 'protocol_frame_size': list(PROTOCOL_SIZE), 'notes': notes}


def report_lines(scores: dict, identity: bool = True, kind: str = 'face') -> list[str]:
    """The table (one line per video and an overall line) and what its columns mean."""
    if kind == 'body':
        from bodies.metrics import body_columns, body_legend
        columns = [L1] + body_columns()
    else:
        columns = [L1] + face_columns(identity)
    lines = table_lines(scores['per_video'], scores, columns)
    mismatched = scores['videos_with_frame_count_mismatch']
    lines.append(f"scored {scores['frames']} frame pairs of {scores['num_videos']} videos"
                 + (f"; {mismatched} video(s) had different real and generated frame counts (see the notes)"
                    if mismatched else ''))
    if kind == 'body':
        return lines + body_legend(scores)
    lines.append(f"face backend: {scores['face_backend']}. AKD: pose-evaluation's cmp_kp.py, mean |coordinate "
                 f"difference| of the 68 landmarks in pixels at 256x256; AKD-L2: mean Euclidean landmark distance. "
                 f"AED: cmp.py, squared L2 distance of identity embeddings; AED-L2: its square root; AED-abs: mean "
                 f"|difference|. (x%): share of frames the metric could not score (no face).")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog='evaluate.py', description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--real', required=True, help='folder of real (ground-truth) videos')
    p.add_argument('--fake', required=True, help='folder of generated videos with matching names')
    p.add_argument('--out', default=None, help='write the scores as JSON here')
    p.add_argument('--face_backend', choices=BACKEND_CHOICES, default='auto')
    p.add_argument('--device', default='cpu', help='torch device of the face-alignment backend')
    p.add_argument('--frame_size', type=int, default=0, help='frame side in strips (default: the strip height)')
    p.add_argument('--no_identity', action='store_true', help='skip AED (the identity network is the slow part)')
    p.add_argument('--kind', choices=('face', 'body'), default='face',
                   help='face: AKD, AED, missing faces; body: AKD, MKR (18 pose keypoints), AED with --reid_model')
    p.add_argument('--reid_model', default=None, metavar='FILE',
                   help='--kind body: person re-identification weights for AED (ft_net ResNet-50, see docs/bodies.md)')
    args = p.parse_args(argv)
    from bodies.backend import BodyModelError, NoBodyError
    try:
        scores = evaluate(args.real, args.fake, args.face_backend, args.device, args.frame_size,
                          identity=not args.no_identity, kind=args.kind, reid_model=args.reid_model, out=args.out)
    except (EvaluateError, FaceModelError, MediaError, BodyModelError, NoBodyError) as err:
        print(f'error: {err}', file=sys.stderr)
        return 2
    for line in scores['notes']:
        print(f'note: {line}', file=sys.stderr)
    print('\n'.join(report_lines(scores, identity=not args.no_identity, kind=args.kind)))
    if args.out:
        with atomic_path(args.out) as tmp, open(tmp, 'w') as f:
            json.dump(scores, f, indent=2)
    return 0


if __name__ == '__main__':
    sys.exit(main())
