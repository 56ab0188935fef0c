"""Body figures on this CPU, in one command (needs ../shared/samples/body-raw.mp4):

    python benchmarks/bench_bodies.py [--repeats 3] [--frames 40] [--skip_crop]

1. Throughput of the body backend (frames/s, median of --repeats passes over --frames frames):
   at 256x256 (the metrics' size: the man on the box, cropped), and on the sample's 884x498 frames
   whole and tiled (crop_video.py --target body's default).
2. crop_video.py --target body's wall time on the whole sample (230 frames, default options but
   --min_size 128 and --min_frames 64, the sample's persons being small and its clip short), and
   the clips it writes.
3. AKD / MKR of the man's clip scored against: itself; a jitter (every frame shifted by up to 3 px);
   its first frame held still; a black clip. Good reconstructions must rank first.
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

from bodies import load_backend  # noqa: E402
from bodies.metrics import BodyMetrics  # noqa: E402
from faces.metrics import protocol_frame  # noqa: E402
from media import VideoReader  # noqa: E402

RAW = os.path.join(ROOT, '..', 'shared', 'samples', 'body-raw.mp4')
MAN = (177, 0, 446, 269)       # x0, y0, x1, y1 of the man on the box in frames 20-100


def timed(fn, repeats: int) -> tuple[float, float]:
    """(median wall seconds, median CPU seconds of this process, all threads): on a shared, loaded
    machine the CPU time says what a quiet one would take, give or take the threads' overlap."""
    walls, cpus = [], []
    for _ in range(repeats):
        start, cpu = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - start)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus)


def read(count: int) -> np.ndarray:
    reader = VideoReader(RAW)
    frames = [np.array(f, copy=True) for _, f in zip(range(count), reader)]
    reader.close()
    return np.stack(frames)


def throughput(raw: np.ndarray, man: np.ndarray, repeats: int) -> None:
    for tiles in (False, True):
        backend = load_backend(use_tiles=tiles, say=lambda m: None)
        cases = [('256x256', man)] if not tiles else []
        for name, frames in cases + [(f'{raw.shape[2]}x{raw.shape[1]}', raw)]:
            wall, cpu = timed(lambda: [backend.detect_batch([f]) for f in frames], repeats)
            print(f'{"tiled" if tiles else "whole":6s} {name:8s} {len(frames) / wall:6.1f} frames/s '
                  f'({1000 * wall / len(frames):.0f} ms a frame wall, {1000 * cpu / len(frames):.0f} ms CPU; '
                  f'{backend.description})')


def crop_time() -> None:
    with tempfile.TemporaryDirectory() as out:
        start, before = time.perf_counter(), os.times()
        done = subprocess.run([sys.executable, os.path.join(ROOT, 'crop_video.py'), '--inp', RAW, '--out', out,
                               '--target', 'body', '--min_size', '128', '--min_frames', '64', '--quiet'],
                              capture_output=True, text=True)
        seconds, after = time.perf_counter() - start, os.times()
        cpu = (after.children_user + after.children_system) - (before.children_user + before.children_system)
        summary = [line for line in done.stderr.splitlines() if line.startswith('body-raw.mp4')]
        print(f'crop_video.py --target body on the sample (230 frames, 884x498): {seconds:.1f} s wall, {cpu:.1f} s CPU, '
              f'exit {done.returncode}; {summary[0] if summary else done.stderr.strip()[-200:]}')


def ranking(man: np.ndarray) -> None:
    metrics = BodyMetrics(load_backend(say=lambda m: None))
    rng = np.random.default_rng(0)
    fakes = {'itself': man,
             'jitter <= 3 px': np.stack([np.roll(f, tuple(rng.integers(-3, 4, 2)), (0, 1)) for f in man]),
             'first frame held': np.repeat(man[:1], len(man), 0),
             'black': np.zeros_like(man)}
    for name, fake in fakes.items():
        row = metrics.score_video(name, man, fake)
        akd = '-' if row['akd'] is None else f"{row['akd']:.3f}"
        print(f'{name:18s} AKD {akd:>7s} px   MKR {row["mkr"]:.4f}   ({row["frames"]} frames at 256x256)')


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--repeats', type=int, default=3)
    p.add_argument('--frames', type=int, default=40)
    p.add_argument('--skip_crop', action='store_true')
    args = p.parse_args()
    raw = read(100)
    x0, y0, x1, y1 = MAN
    man = np.stack([protocol_frame(f[y0:y1, x0:x1]) for f in raw[20:100]])
    step = max(1, len(man) // args.frames)
    throughput(raw[20:100:step], man[::step], args.repeats)
    if not args.skip_crop:
        crop_time()
    ranking(man[::step])


if __name__ == '__main__':
    main()
