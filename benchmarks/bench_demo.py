"""End-to-end benchmark of demo.py: wall time, animation-loop frames/s and peak RSS.

    python benchmarks/bench_demo.py --config config/fomm/vox-256.yaml --checkpoint vox-cpk.pth.tar \\
        --driving_video ../shared/samples/face-driving.mp4 --frames 100 --repeat 3 \\
        [--source_image S] [--precision bf16] [--batch_size 16] [--cpu | --device cuda] \\
        [--threads N] [--random_weights] [--compare_precision] [-- --relative --adapt_scale]

Each run is a fresh `python demo.py ...` subprocess, so the wall time includes interpreter start,
imports, model loading and the encoder's finish, and the peak RSS is that run's own. Peak RSS is
`ru_maxrss` from `os.wait4` on the child (decoding and encoding run inside the demo process, through
PyAV). Frames/s is the demo's own measure of its streaming loop (decode, resize, networks, encode),
printed on its last line.

Set-up work happens outside the timed region: `--frames N` writes the first N driving frames to a
temporary mp4 (same resolution and frame rate); without `--source_image` the first driving frame
is the source; `--random_weights` saves a checkpoint of freshly initialised networks for the
config (fine for timing, meaningless pictures).

`--compare_precision` additionally animates the same input in fp32, bf16, int8 (CPU) and (on CUDA)
fp16 to lossless PNG frames and prints each one's PSNR against fp32. Arguments after `--` go to
demo.py.

`--suite` prints every figure of docs/cpu-inference.md in one command: both families (vox-256
configs, random weights, the first --frames 40 frames of the sample clip, FOMM `--relative
--adapt_scale`, TPSMM `--mode relative`), each variant (fp32, int8, fp32 --compile, and the
reference implementation when --fomm_reference / --tps_reference name a checkout of it) run as a
fresh process, alternating, --repeat rounds (default 3), medians and ratios to our fp32. Set-up
work is timed apart: one cold int8 run (empty cache: export + calibration) and one cold
--compile run (empty Inductor cache) before the rounds, whose runs then find those caches warm,
as a user's second run does. Last, int8's and --compile's PSNR against fp32 (PNG output).

    python benchmarks/bench_demo.py --suite [--repeat 3] [--frames 40] \
        [--fomm_reference ../first-order-model] [--tps_reference ../Thin-Plate-Spline-Motion-Model]

A reference checkout runs as `python demo.py --config config/vox-256.yaml --checkpoint C
--source_image S --driving_video D --result_video R --cpu` plus the family's motion options, in
its own folder, with this Python; it must run on the CPU with the installed torch (see
benchmarks/README.md for the few lines that needs).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile

import numpy as np

from demo_runs import REPO, SAMPLE_CLIP, prepare_inputs, psnr, run_demo  # noqa: E402


def parse_args(argv=None):
    if argv is None:
        argv = sys.argv[1:]
    extra = []
    if '--' in argv:
        cut = argv.index('--')
        argv, extra = argv[:cut], argv[cut + 1:]
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--suite', action='store_true', help='every figure of docs/cpu-inference.md (see above)')
    p.add_argument('--fomm_reference', default=None, metavar='DIR', help='--suite: a FOMM reference checkout to time')
    p.add_argument('--tps_reference', default=None, metavar='DIR', help='--suite: a TPSMM reference checkout to time')
    p.add_argument('--no_compile', action='store_true', help='--suite: leave out fp32 --compile (two thirds of its time)')
    p.add_argument('--config')
    weights = p.add_mutually_exclusive_group()
    weights.add_argument('--checkpoint')
    weights.add_argument('--random_weights', action='store_true', help='random weights built from the config')
    p.add_argument('--driving_video', default=SAMPLE_CLIP)
    p.add_argument('--source_image', default=None, help='default: the first driving frame')
    p.add_argument('--frames', type=int, default=None, help='use only the first N driving frames')
    p.add_argument('--precision', default='fp32', choices=('fp32', 'int8', 'bf16', 'fp16'))
    p.add_argument('--compile', action='store_true', help='demo.py --compile')
    p.add_argument('--batch_size', type=int, default=None)
    p.add_argument('--repeat', type=int, default=1, help='runs; the median is reported')
    p.add_argument('--cpu', action='store_true')
    p.add_argument('--device', default=None)
    p.add_argument('--threads', type=int, default=None, help="demo.py --threads (CPU threads for torch)")
    p.add_argument('--compare_precision', action='store_true', help='PSNR of bf16/fp16 output vs fp32')
    args = p.parse_args(argv)
    args.demo_args = extra
    if args.suite:
        args.frames = args.frames or 40
        args.repeat = max(args.repeat, 3) if '--repeat' not in argv else args.repeat
    elif not args.config or not (args.checkpoint or args.random_weights):
        p.error('--config and --checkpoint (or --random_weights) are required without --suite')
    return args



def compare_precision(args, checkpoint: str, driving: str, source: str, tmp: str) -> None:
    import torch

    from media import VideoReader
    on_cuda = not args.cpu and (args.device or ('cuda' if torch.cuda.is_available() else 'cpu')).startswith('cuda')
    precisions = ['fp32', 'bf16'] + (['fp16'] if on_cuda else ['int8'])
    frames = {}
    print('\nprecision comparison (lossless PNG output, PSNR vs fp32 over all frames):')
    for precision in precisions:
        result = os.path.join(tmp, f'cmp-{precision}') + '/'
        stats = run_demo(args, checkpoint, driving, source, result, precision)
        frames[precision] = np.stack(list(VideoReader(result)))
        value = psnr(frames[precision], frames['fp32'])
        diff = np.abs(frames[precision].astype(np.int16) - frames['fp32'].astype(np.int16))
        print(f'  {precision:5s} PSNR {value:6.2f} dB   max |diff| {int(diff.max()):3d}/255   '
              f'loop {stats["fps"]:7.2f} frames/s')
    if not on_cuda:
        print('  fp16 skipped: it needs a CUDA device (int8 runs on the CPU alone)')


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.suite:
        from bench_suite import run_suite
        return run_suite(args)
    with tempfile.TemporaryDirectory(prefix='bench_demo.') as tmp:
        checkpoint, driving, source = prepare_inputs(args, tmp)
        runs = []
        for i in range(args.repeat):
            stats = run_demo(args, checkpoint, driving, source, os.path.join(tmp, 'result.mp4'), args.precision)
            runs.append(stats)
            print(f'run {i + 1}/{args.repeat}: wall {stats["wall"]:.2f} s, loop {stats["loop_s"]:.2f} s '
                  f'({stats["fps"]:.2f} frames/s), peak RSS {stats["rss_mib"]:.0f} MiB')
        print(f'demo: {runs[-1]["summary"]}')
        median = {k: statistics.median(r[k] for r in runs) for k in ('wall', 'loop_s', 'fps', 'rss_mib')}
        print(f'median of {len(runs)}: {runs[-1]["frames"]} frames, wall {median["wall"]:.2f} s, '
              f'loop {median["fps"]:.2f} frames/s ({median["loop_s"]:.2f} s), peak RSS {median["rss_mib"]:.0f} MiB '
              f'[{os.path.relpath(args.config, REPO) if os.path.isabs(args.config) else args.config}, '
              f'{args.precision}, batch {args.batch_size or "default"}, threads {args.threads or "default"}]')
        if args.compare_precision:
            compare_precision(args, checkpoint, driving, source, tmp)
    return 0


if __name__ == '__main__':
    sys.exit(main())
