"""One call on a GPU machine: does every CUDA path work, how fast, and does it equal the CPU?

    bash benchmarks/device_check.sh            # on a machine with one CUDA GPU (< 8 minutes)
    bash benchmarks/device_check.sh --dry_run  # on the CPU: everything but the CUDA parts, tiny sizes

Prints one table, a row per check: name, result (ok / FAIL / skipped), figure, detail.
  tests        pytest tests/test_cuda.py (the CUDA-only tests; on the CPU they skip)
  train        one training step per family on the parity fixtures' models and batch, the losses
               compared with the fixture (the reference's CPU numbers), relative 1e-3 (TF32 off);
               then the step time at vox-256, batch 4
  demo         frames/s of the Animator per family (vox-256, random weights, the sample clip's
               first frames) for each precision (fp32, bf16, fp16, fp16 + torch.compile) and batch
               size (1, 8, 32), each output's PSNR against the CPU's fp32 output (>= 30 dB)
`--dry_run` runs the same code on the CPU with the parity models, batches 1 and 2, and
fp32 only (2 frames), so its logic is tested without a GPU (tests/test_device_check.py). Exit status 1 when
any check fails.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import numpy as np
import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
PARITY = os.path.join(os.path.dirname(REPO), 'shared', 'parity')
CLIP = os.path.join(os.path.dirname(REPO), 'shared', 'samples', 'face-driving.mp4')
ROWS: list[tuple[str, str, str, str]] = []


def row(name: str, ok: bool | None, figure: str = '', detail: str = '') -> None:
    ROWS.append((name, 'skipped' if ok is None else ('ok' if ok else 'FAIL'), figure, detail))
    print(f'  {name}: {ROWS[-1][1]} {figure} {detail}', flush=True)


def print_table() -> None:
    widths = [max(len(r[i]) for r in ROWS + [('check', 'result', 'figure', 'detail')]) for i in range(4)]
    line = lambda r: '  '.join(c.ljust(w) for c, w in zip(r, widths))  # noqa: E731
    print('\n' + line(('check', 'result', 'figure', 'detail')))
    print('  '.join('-' * w for w in widths))
    for r in ROWS:
        print(line(r))


def sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize()


def run_tests(dry_run: bool) -> None:
    proc = subprocess.run([sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider', 'tests/test_cuda.py'],
                          cwd=REPO, capture_output=True, text=True)
    summary = (proc.stdout.strip().splitlines() or ['no output'])[-1]
    row('tests/test_cuda.py', proc.returncode == 0 if 'passed' in summary or not dry_run else None, '', summary)


# ---- training ---------------------------------------------------------------------------------

def parity_vgg(fixture: dict):
    from modules.model import Vgg19
    q = torch.load(os.path.join(PARITY, fixture['vgg19']), map_location='cpu', weights_only=True)
    vgg = Vgg19(pretrained=False)
    vgg.features.load_state_dict({k: v.float() * q['scale'][k] for k, v in q['int8'].items()}, strict=False)
    return vgg


def train_step_matches_fixture(name: str, device: torch.device) -> None:
    """The fixture's training step on `device`; losses against the reference's."""
    from modules import build_models
    from loading import load_config
    from modules.model import GeneratorFullModel
    config = load_config(os.path.join(PARITY, f'{name}.yaml'))
    fixture = torch.load(os.path.join(PARITY, f'{name}.fixture.pt'), map_location='cpu', weights_only=True)
    checkpoint = torch.load(os.path.join(PARITY, f'{name}.pth.tar'), map_location='cpu', weights_only=True)
    models = build_models(config)
    for key, net in models.items():
        if key in checkpoint:
            net.load_state_dict(checkpoint[key])
        net.to(device).train()
    full = GeneratorFullModel(models, config['train_params'], vgg=parity_vgg(fixture).to(device))
    move = lambda v: v.to(device) if isinstance(v, torch.Tensor) else v  # noqa: E731
    x = {k: fixture['inputs'][k].to(device) for k in ('source', 'driving')}
    tr = fixture['expected_train']
    losses, _ = full(x, epoch=tr.get('epoch', 0), transform={k: move(v) for k, v in fixture['equivariance_transform'].items()})
    sum(v.mean() for v in losses.values()).backward()
    errors = {k: abs(losses[k].detach().item() - float(v)) / max(abs(float(v)), 1e-8) for k, v in tr['generator_losses'].items()}
    worst = max(errors, key=errors.get)
    row(f'train step {name} ({device.type})', errors[worst] <= 1e-3, f'rel err {errors[worst]:.1e}',
        f'worst loss {worst}, vs the reference (CPU)')


def train_step_time(config_path: str, device: torch.device, batch: int, size: int) -> None:
    from modules import build_models
    from loading import load_config
    from modules.model import GeneratorFullModel
    config = load_config(config_path)
    config['train_params']['vgg19_weights'] = 'random'
    models = {k: m.to(device).train() for k, m in build_models(config).items()}
    full = GeneratorFullModel(models, config['train_params']).to(device)
    params = [p for k, m in models.items() if k != 'discriminator' for p in m.parameters()]
    optimizer = torch.optim.Adam(params, lr=1e-4)
    x = {k: torch.rand(batch, 3, size, size, device=device) for k in ('source', 'driving')}
    times = []
    for _ in range(3):
        start = time.perf_counter()
        losses, _ = full(x)
        optimizer.zero_grad()
        sum(v.mean() for v in losses.values()).backward()
        optimizer.step()
        sync(device)
        times.append(time.perf_counter() - start)
    finite = all(torch.isfinite(v).all() for v in losses.values())
    row(f'train step time {os.path.basename(os.path.dirname(config_path))}/{os.path.basename(config_path)}',
        bool(finite), f'{min(times[1:]):.3f} s', f'batch {batch}, {size}x{size}, generator side, losses finite')


# ---- demo -------------------------------------------------------------------------------------

def sample_frames(count: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    from media import VideoReader
    reader = VideoReader(CLIP)
    frames = next(iter(reader.iter_batches(count, size=(size, size))))      # the first `count` frames
    reader.close()
    return frames[0], frames


def animate(animator, source: np.ndarray, frames: np.ndarray, batch: int) -> np.ndarray:
    batches = (frames[i:i + batch] for i in range(0, len(frames), batch))
    return np.concatenate(list(animator.animate(source, batches, mode='relative', adapt_scale=True)))


def demo_rates(config_path: str, device: torch.device, precisions: list[str], batches: list[int],
               frames_count: int) -> None:
    from animate import Animator, frame_shape_of
    from modules import build_models
    from loading import load_config
    config = load_config(config_path)
    torch.manual_seed(0)
    models = build_models(config)
    size = frame_shape_of(config)[0]
    source, frames = sample_frames(frames_count, size)
    import copy
    reference = animate(Animator(config, copy.deepcopy(models), 'cpu'), source, frames, 1)
    label = os.path.relpath(config_path, REPO)
    for precision in precisions:
        compiled = precision.endswith('+compile')
        dtype = precision.split('+')[0]
        for batch in batches:
            animator = Animator(config, copy.deepcopy(models), device, dtype, compile=compiled)
            animate(animator, source, frames[:batch], batch)          # warm-up (and compilation)
            sync(device)
            start = time.perf_counter()
            out = animate(animator, source, frames, batch)
            sync(device)
            rate = len(frames) / (time.perf_counter() - start)
            mse = float(np.mean((out.astype(np.float64) - reference) ** 2))
            psnr = float('inf') if mse == 0 else 10 * np.log10(1 / mse)
            row(f'demo {label} {precision} batch {batch}', psnr >= 30, f'{rate:.1f} frames/s',
                f'PSNR vs CPU fp32 {psnr:.1f} dB, {len(frames)} frames')


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--dry_run', action='store_true', help='CPU only, tiny sizes: everything but the CUDA parts')
    args = p.parse_args(argv)
    cuda = torch.cuda.is_available() and not args.dry_run
    if not cuda and not args.dry_run:
        print('no CUDA device: run with --dry_run to check the logic on the CPU', file=sys.stderr)
        return 2
    device = torch.device('cuda' if cuda else 'cpu')
    torch.backends.cuda.matmul.allow_tf32 = False       # equality checks: full fp32 on the GPU
    torch.backends.cudnn.allow_tf32 = False
    start = time.perf_counter()
    print(f'device: {torch.cuda.get_device_name(0) if cuda else "CPU (dry run: the CUDA parts are skipped)"}')
    run_tests(args.dry_run)
    for name in ('fomm-public', 'tps-public'):
        train_step_matches_fixture(name, device)
    if cuda:
        for config in ('config/fomm/vox-256.yaml', 'config/tps/vox-256.yaml'):
            train_step_time(os.path.join(REPO, config), device, 4, 256)
            demo_rates(os.path.join(REPO, config), device, ['fp32', 'bf16', 'fp16', 'fp16+compile'], [1, 8, 32], 64)
    else:
        row('train step time vox-256', None, '', 'CUDA only')
        for name in ('fomm-public', 'tps-public'):
            demo_rates(os.path.join(PARITY, f'{name}.yaml'), device, ['fp32'], [1, 2], 2)
        row('demo bf16/fp16/compile on CUDA', None, '', 'CUDA only')
    print_table()
    print(f'\n{time.perf_counter() - start:.0f} s in all')
    return 1 if any(r[1] == 'FAIL' for r in ROWS) else 0


if __name__ == '__main__':
    sys.exit(main())
