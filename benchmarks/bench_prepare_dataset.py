"""prepare_dataset.py's throughput and memory on 720p sources (needs ../shared/samples):

    python benchmarks/bench_prepare_dataset.py [--seconds 20,80] [--segments 6] [--repeats 3]
        [--format .mp4] [--workers 1]

Sources: the sample face clip placed in a 1280x720 frame (25 fps, H.264 made by the ffmpeg
program), looped to each length of --seconds. Metadata: --segments segments spread over the whole
video (every frame of it belongs to one), boxes of about 400x400 pixels given at 1280x720, resized
to 256x256, as VoxCeleb's rows. Each run is a fresh `python prepare_dataset.py` process into an
empty folder; its wall time includes start-up and imports, its peak RSS is `ru_maxrss` from
`os.wait4`. Prints every run, then per length the median wall time, written and decoded frames per
second of the whole job, and the peak RSS: streaming means the RSS does not follow the length.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLIP = os.path.join(ROOT, '..', 'shared', 'samples', 'face-driving.mp4')
FPS = 25
SOURCE_ID = 'bench720p_01'


def ffmpeg() -> str:
    import imageio_ffmpeg
    return imageio_ffmpeg.get_ffmpeg_exe()


def make_source(path: str, seconds: int) -> None:
    """The sample (410x412) scaled to 700 px high on a grey 1280x720 canvas, looped to `seconds`."""
    subprocess.run([ffmpeg(), '-loglevel', 'error', '-y', '-stream_loop', '-1', '-i', CLIP,
                    '-vf', 'scale=-2:700,pad=1280:720:(ow-iw)/2:10:gray,fps=25', '-t', str(seconds),
                    '-c:v', 'libx264', '-preset', 'veryfast', '-crf', '20', '-pix_fmt', 'yuv420p', path], check=True)


def write_metadata(path: str, frames: int, segments: int) -> int:
    """`segments` back-to-back segments covering frames 0..frames-1; returns the frames they hold."""
    bounds = [round(k * frames / segments) for k in range(segments + 1)]
    rows = ['video_id,start,end,bbox,fps,width,height,partition,person_id']
    for k in range(segments):
        left = 400 + 20 * k
        rows.append(f'{SOURCE_ID},{bounds[k]},{bounds[k + 1]},{left}-60-{left + 410}-470,{FPS},1280,720,'
                    f'{"test" if k == 0 else "train"},id{k % 3:05d}')
    with open(path, 'w') as f:
        f.write('\n'.join(rows) + '\n')
    return bounds[-1]


def run_once(work: str, fmt: str, workers: int) -> tuple[float, int]:
    """(wall seconds, peak RSS in KiB) of one prepare_dataset.py process."""
    out = os.path.join(work, 'out')
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, os.path.join(ROOT, 'prepare_dataset.py'), '--metadata', os.path.join(work, 'meta.csv'),
           '--video_folder', work, '--out_folder', out, '--format', fmt, '--workers', str(workers), '--quiet']
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    err = proc.stderr.read()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f'prepare_dataset.py failed:\n{err}')
    return wall, usage.ru_maxrss


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--seconds', default='20,80', help='source lengths in seconds (20,80)')
    p.add_argument('--segments', type=int, default=6)
    p.add_argument('--repeats', type=int, default=3)
    p.add_argument('--format', default='.mp4', choices=('.mp4', '.png'))
    p.add_argument('--workers', type=int, default=1)
    args = p.parse_args()
    if not os.path.isfile(CLIP):
        raise SystemExit(f'needs the sample clip {CLIP}')
    lengths = [int(s) for s in args.seconds.split(',')]
    summary = []
    with tempfile.TemporaryDirectory() as tmp:
        for seconds in lengths:
            work = os.path.join(tmp, f'{seconds}s')
            os.makedirs(work)
            make_source(os.path.join(work, SOURCE_ID + '.mp4'), seconds)
            frames = write_metadata(os.path.join(work, 'meta.csv'), seconds * FPS, args.segments)
            runs = []
            for r in range(args.repeats):
                wall, rss = run_once(work, args.format, args.workers)
                runs.append((wall, rss))
                print(f'{seconds:4d} s source ({frames} frames, {args.segments} segments, {args.format}): '
                      f'run {r + 1}: {wall:6.2f} s, {frames / wall:6.1f} frames/s, peak RSS {rss / 1024:6.1f} MiB')
            wall = statistics.median(w for w, _ in runs)
            summary.append((seconds, frames, wall, max(m for _, m in runs)))
    print(f'\nmedians of {args.repeats} runs, 1280x720 source -> 256x256 clips, --workers {args.workers}:')
    for seconds, frames, wall, rss in summary:
        print(f'  {seconds:4d} s ({frames:5d} frames): {wall:6.2f} s wall, {frames / wall:6.1f} frames/s '
              f'(frames written = frames decoded), peak RSS {rss / 1024:6.1f} MiB')


if __name__ == '__main__':
    main()
