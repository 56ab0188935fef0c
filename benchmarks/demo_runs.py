"""What the demo benchmarks share: the inputs they prepare and one timed `demo.py` process.

Used by bench_demo.py (one configuration), bench_suite.py (both families against the references)
and bench_app.py.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
DEMO = os.path.join(REPO, 'demo.py')
LOOP = re.compile(r'animation ([0-9.]+) s, ([0-9.]+|inf) frames/s')
SAMPLE_CLIP = os.path.join(os.path.dirname(REPO), 'shared', 'samples', 'face-driving.mp4')


def random_checkpoint(config: str, path: str) -> str:
    """A checkpoint of freshly initialised networks for `config` (official key names), at `path`."""
    import torch

    from modules import build_models
    from loading import load_config
    torch.manual_seed(0)
    models = build_models(load_config(config))
    torch.save({**{k: m.state_dict() for k, m in models.items()}, 'epoch': 0}, path)
    return path


def prepare_inputs(args, tmp: str) -> tuple[str, str, str]:
    """(checkpoint, driving video, source image), made outside the timed region."""
    from PIL import Image

    from media import VideoReader, VideoWriter

    checkpoint = args.checkpoint
    if args.random_weights:
        checkpoint = random_checkpoint(args.config, os.path.join(tmp, 'random.pth.tar'))
    driving = args.driving_video
    reader = VideoReader(driving)
    if args.frames is not None:
        driving = os.path.join(tmp, 'driving.mp4')
        with VideoWriter(driving, fps=reader.fps) as writer:
            for i, frame in enumerate(reader):
                if i == args.frames:
                    break
                writer.write(frame)
        reader.close()
    source = args.source_image
    if source is None:
        source = os.path.join(tmp, 'source.png')
        Image.fromarray(reader.read_frame(0)).save(source)
    return checkpoint, driving, source


def run_demo(args, checkpoint: str, driving: str, source: str, result: str, precision: str,
             extra: list[str] | None = None, env: dict | None = None) -> dict:
    cmd = [sys.executable, DEMO, '--config', args.config, '--checkpoint', checkpoint, '--source_image', source,
           '--driving_video', driving, '--result_video', result, '--precision', precision, '--quiet']
    if args.compile:
        cmd.append('--compile')
    if args.batch_size is not None:
        cmd += ['--batch_size', str(args.batch_size)]
    if args.cpu:
        cmd.append('--cpu')
    if args.device:
        cmd += ['--device', args.device]
    if args.threads is not None:
        cmd += ['--threads', str(args.threads)]
    cmd += args.demo_args + (extra or [])
    return run_timed(cmd, REPO, env)


def run_timed(cmd: list[str], cwd: str, env: dict | None = None) -> dict:
    """Run one process; its wall time, peak RSS and what demo.py printed about its loop."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, cwd=cwd, env={**os.environ, **(env or {})})
        _, status, usage = os.wait4(proc.pid, 0)           # this child's own rusage
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors='replace'), err.read().decode(errors='replace')
    if proc.returncode != 0:
        sys.exit(f'{" ".join(cmd[:2])} failed (exit {proc.returncode}):\n{stderr.strip()[-3000:]}')
    match = LOOP.search(stdout)
    frames = re.search(r': (\d+) frames at', stdout)
    return {'wall': wall, 'loop_s': float(match.group(1)) if match else float('nan'),
            'fps': float(match.group(2)) if match else float('nan'),
            'frames': int(frames.group(1)) if frames else -1,
            'rss_mib': usage.ru_maxrss / 1024, 'summary': stdout.strip().splitlines()[-1] if stdout.strip() else '',
            'stdout': stdout}


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float('inf') if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)
