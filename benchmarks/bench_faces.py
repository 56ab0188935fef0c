"""Face figures on this CPU, in one command (needs ../shared/samples):

    python benchmarks/bench_faces.py [--repeats 3] [--step 4] [--skip_crop]

1. Throughput at 256x256 (frames/s, median of --repeats passes over the sample clip): detection,
   68 landmarks given the box, identity embedding, per backend that loads.
2. crop_video.py's wall time for one minute of 720p video (25 fps, 1500 frames) built from the
   sample clip (placed in a 1280x720 frame that pans, with a cut every 10 s), default options.
3. AKD / AED (protocol and Euclidean) of the real clip scored against: itself; its first frame
   held still (what "copying the source" scores); the clip with a small jitter (every frame
   shifted by a random 1-3 px). Every --step-th frame. Good reconstructions must rank first.
4. Small faces: dlib's detection time per frame and faces found, `hog` (the default: frames
   without a face looked at again at 2x and 4x size) against `hog-once` (one pass, the default
   before), as demo.py --crop and crop_video.py look (frames shrunk to 640 px): the sample clip at
   its size, 720p frames with its face shrunk to a ~60 px box, 720p frames without a face.
   `--small_faces_only` runs only this part.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from faces import load_backend  # noqa: E402
from faces.metrics import FaceMetrics, protocol_frame  # noqa: E402
from media import VideoReader, VideoWriter, resize_frame  # noqa: E402

CLIP = os.path.join(ROOT, '..', 'shared', 'samples', 'face-driving.mp4')


def timed(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def throughput(frames: np.ndarray, repeats: int) -> None:
    for name in ('dlib', 'face-alignment'):
        try:
            backend = load_backend(name, say=lambda m: None)
        except Exception as err:  # noqa: BLE001 - report and go on
            print(f'{name:15s} not available: {str(err)[:100]}')
            continue
        boxes = [f[0].box for f in backend.detect_batch(frames[:1])] * len(frames)
        det = timed(lambda: [backend.detect_batch([f]) for f in frames], repeats)
        lmk = timed(lambda: [backend.landmarks(f, b) for f, b in zip(frames, boxes)], repeats)
        points = backend.landmarks(frames[0], boxes[0])
        few = frames[:20]
        emb = timed(lambda: [backend.embed(f, points) for f in few], 1)
        print(f'{name:15s} detection {len(frames) / det:7.1f} frames/s   landmarks {len(frames) / lmk:7.1f} frames/s'
              f'   embedding {len(few) / emb:6.1f} frames/s   (256x256, {backend.description})')


def build_720p(frames: np.ndarray, path: str, seconds: int = 60) -> None:
    rng = np.random.default_rng(0)
    faces = [np.rint(resize_frame(f, (400, 400)) * 255).astype(np.uint8) for f in frames]
    with VideoWriter(path, fps=25) as writer:
        for t in range(25 * seconds):
            shot = t // 250
            frame = np.empty((720, 1280, 3), np.uint8)
            frame[:] = (40 + 30 * (shot % 3), 90, 140 - 20 * (shot % 4))
            x, y = 200 + 80 * (shot % 5) + (t % 250) // 5, 150 + 20 * (shot % 3)
            frame[y:y + 400, x:x + 400] = faces[t % len(faces)]
            frame[600:700, 1100:1200] = rng.integers(0, 255, (100, 100, 3), dtype=np.uint8)
            writer.write(frame)


def crop_time(frames: np.ndarray) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        raw = os.path.join(tmp, 'raw', 'someone#minute.mp4')
        start = time.perf_counter()
        build_720p(frames, raw)
        print(f'built 60 s of 1280x720 at 25 fps in {time.perf_counter() - start:.1f} s')
        cmd = [sys.executable, os.path.join(ROOT, 'crop_video.py'), '--inp', raw, '--out', os.path.join(tmp, 'out'),
               '--face_backend', 'dlib', '--quiet', '--test_fraction', '0']
        start = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        lines = [line for line in done.stderr.splitlines() if 'frames' in line]
        print(f'crop_video.py on 1 minute of 720p: {seconds:.1f} s wall ({1500 / seconds:.0f} frames/s), '
              f'exit {done.returncode}: {lines[-1] if lines else done.stderr[-300:]}')


def ranking(frames: np.ndarray, step: int) -> None:
    real = frames[::step]
    rng = np.random.default_rng(0)
    jitter = []
    for f in real:
        dx, dy = rng.integers(1, 4, 2) * rng.choice([-1, 1], 2)
        jitter.append(np.roll(f, (dy, dx), axis=(0, 1)))
    metrics = FaceMetrics(load_backend('auto', say=lambda m: None))
    print(f'AKD / AED on {len(real)} frames of the real clip (every {step}th), {metrics.describe()}:')
    print(f"  {'fake':28s} {'AKD px':>8s} {'AKD-L2':>8s} {'AED':>8s} {'AED-L2':>8s} {'missing':>8s}")
    for name, fake in (('the clip itself', real), ('small jitter (1-3 px)', np.stack(jitter)),
                       ('first frame held still', np.repeat(real[:1], len(real), axis=0))):
        s = metrics.score_video(name, real, fake)
        print(f"  {name:28s} {s['akd']:8.3f} {s['akd_euclidean']:8.3f} {s['aed']:8.4f} {s['aed_l2']:8.4f} "
              f"{s['missing_face']:8.3f}")


def small_faces(native: np.ndarray, repeats: int, count: int = 8) -> None:
    from faces.scan import scan_video
    rng = np.random.default_rng(0)
    background = rng.integers(50, 130, (720, 1280, 3), dtype=np.uint8)
    pick = native[::max(1, len(native) // count)][:count]
    small = []
    for t, frame in enumerate(pick):
        out = background.copy()
        out[220:334, 400 + 6 * t:514 + 6 * t] = np.rint(resize_frame(frame, (114, 114)) * 255).astype(np.uint8)
        small.append(out)
    cases = (('sample clip, 410x412', list(pick)), ('720p, ~60 px face', small), ('720p, no face', [background] * 4))
    print(f'detection per frame (dlib, frames shrunk to 640 px, median of {repeats}; CPU: this process, '
          'which a loaded machine inflates less than wall time):')
    for detector in ('hog-once', 'hog'):
        backend = load_backend('dlib', detector=detector, say=lambda m: None)
        for name, frames in cases:
            found = []

            def scan():
                result = scan_video(iter(frames), backend, stride=1, cut_threshold=2.0)
                found[:] = [bool(v) for v in result.detections.values()]
            cpu = []

            def cpu_timed():
                start = time.process_time()
                scan()
                cpu.append(time.process_time() - start)
            seconds = timed(cpu_timed, repeats)
            print(f'  {detector:9s} {name:22s} {1000 * seconds / len(frames):8.0f} ms/frame wall '
                  f'{1000 * statistics.median(cpu) / len(frames):8.0f} ms CPU   '
                  f'face found on {sum(found)}/{len(frames)}')


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--repeats', type=int, default=3)
    p.add_argument('--step', type=int, default=4)
    p.add_argument('--skip_crop', action='store_true')
    p.add_argument('--small_faces_only', action='store_true')
    args = p.parse_args()
    native = np.stack(list(VideoReader(CLIP)))
    if args.small_faces_only:
        small_faces(native, args.repeats)
        return
    frames = np.stack([protocol_frame(f) for f in native])
    print(f'machine: {os.cpu_count()} CPUs; sample clip {len(native)} frames {native.shape[2]}x{native.shape[1]}')
    throughput(frames, args.repeats)
    ranking(frames, args.step)
    small_faces(native, args.repeats)
    if not args.skip_crop:
        crop_time(native)


if __name__ == '__main__':
    main()
