"""Score generated face videos against the real ones: AKD, AED and missing faces.

    python evaluate.py --real data/vox/test --fake log/run/reconstruction/png [--out scores.json]

Any two folders of matching videos: .mp4 (and other ffmpeg formats), .gif, folders of PNG/JPEG
frames, or single-image strips of frames side by side (this project's and the references'
reconstruction/png/<video>.png). Videos match by name with their extensions removed, so
`id1#a.mp4` in --real matches `id1#a.mp4.png` or `id1#a/` in --fake. The same code as
`run.py --mode reconstruction` (faces/metrics.py), following the pose-evaluation protocol:
frames at 256x256; AKD = mean Euclidean landmark distance in pixels; AED = pose-evaluation's
cmp.py (mean absolute difference of identity embeddings), with the FOMM paper's Euclidean form
beside it as aed_euclidean. See docs/faces.md for what differs from the papers' models.
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

from faces.backend import BACKEND_CHOICES, FaceModelError, load_backend  # noqa: E402
from faces.metrics import PROTOCOL_SIZE, FaceMetrics  # noqa: E402
from media.files import atomic_path  # noqa: E402
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


def evaluate(real_dir: str, fake_dir: str, backend_name: str = 'auto', device: str = 'cpu',
             frame_size: int = 0, identity: bool = True) -> dict:
    real, fake = list_media(real_dir), list_media(fake_dir)
    common = sorted(set(real) & set(fake))
    if not common:
        raise EvaluateError(f'no video of {fake_dir!r} matches one of {real_dir!r} by name '
                            f'(e.g. {next(iter(real))!r} vs {next(iter(fake))!r})')
    metrics = FaceMetrics(load_backend(backend_name, device), identity=identity)
    notes = []
    from tqdm import tqdm
    for name in tqdm(common, desc='evaluate', unit='video', disable=None, leave=False):
        a, b = read_video(real[name], frame_size), read_video(fake[name], frame_size)
        if len(a) != len(b):
            notes.append(f'{name}: {len(a)} real and {len(b)} generated frames; scored the first {min(len(a), len(b))}')
        metrics.score_video(name, a, b)
    unmatched = sorted(set(real) ^ set(fake))
    if unmatched:
        notes.append(f'{len(unmatched)} video(s) without a match, not scored: {", ".join(unmatched[:5])}')
    return {**metrics.summary(), 'protocol_frame_size': list(PROTOCOL_SIZE), 'notes': notes}


def fmt(value, digits: int = 4) -> str:
    return '-' if value is None else f'{value:.{digits}f}'


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
    args = p.parse_args(argv)
    try:
        scores = evaluate(args.real, args.fake, args.face_backend, args.device, args.frame_size,
                          identity=not args.no_identity)
    except (EvaluateError, FaceModelError, MediaError) as err:
        print(f'error: {err}', file=sys.stderr)
        return 2
    for line in scores['notes']:
        print(f'note: {line}', file=sys.stderr)
    print(f"{'video':40s} {'frames':>6s} {'AKD':>8s} {'AED':>8s} {'AED-L2':>8s} {'missing':>8s}")
    for name, row in scores['per_video'].items():
        print(f"{name[:40]:40s} {row['frames']:6d} {fmt(row['akd'], 3):>8s} {fmt(row['aed']):>8s} "
              f"{fmt(row['aed_euclidean']):>8s} {fmt(row['missing_face'], 3):>8s}")
    print(f"{'overall':40s} {scores['frames']:6d} {fmt(scores['akd'], 3):>8s} {fmt(scores['aed']):>8s} "
          f"{fmt(scores['aed_euclidean']):>8s} {fmt(scores['missing_face'], 3):>8s}")
    print(f"face backend: {scores['face_backend']}; AKD in pixels at 256x256; AED = pose-evaluation's mean |difference| "
          f"of embeddings, AED-L2 = the FOMM paper's Euclidean distance")
    if args.out:
        with atomic_path(args.out) as tmp, open(tmp, 'w') as f:
            json.dump(scores, f, indent=2)
    return 0


if __name__ == '__main__':
    sys.exit(main())
