"""`bench_demo.py --suite`: every CPU inference figure of docs/cpu-inference.md in one command.

See bench_demo.py's docstring. Kept apart so bench_demo.py stays a single-run tool.
"""
from __future__ import annotations

import copy
import os
import platform
import re
import statistics
import sys
import tempfile

import numpy as np

from demo_runs import REPO, prepare_inputs, psnr, run_demo, run_timed

# (name, our config, our demo.py motion options, reference option, the reference demo's options)
FAMILIES = (
    ('FOMM', 'config/fomm/vox-256.yaml', ['--relative', '--adapt_scale'], 'fomm_reference',
     ['--relative', '--adapt_scale', '--cpu']),
    ('TPSMM', 'config/tps/vox-256.yaml', ['--mode', 'relative'], 'tps_reference', ['--mode', 'relative', '--cpu']),
)
INT8_SETUP = re.compile(r'int8 set-up, inside the animation time: ([0-9.]+) s')


def host() -> str:
    """'AMD EPYC, 2 cores, AVX2 (no AVX-512, no VNNI, no AMX), torch 2.x (quantized engine x86)'."""
    import torch
    model, flags = platform.processor() or 'unknown CPU', set()
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name') and model in ('unknown CPU', platform.processor()):
                    model = line.split(':', 1)[1].strip()
                elif line.startswith('flags'):
                    flags = set(line.split(':', 1)[1].split())
    except OSError:
        pass
    have = [f for f in ('avx2', 'avx512f', 'avx512_vnni', 'avx_vnni', 'avx512_bf16', 'amx_int8') if f in flags]
    lacks = [f for f in ('avx512f', 'avx512_vnni', 'avx_vnni', 'amx_int8') if f not in flags]
    return (f'{model}, {os.cpu_count()} cores, flags: {" ".join(have) or "none of avx2/avx512/vnni/amx"}'
            f'{" (lacks " + " ".join(lacks) + ")" if lacks else ""}; torch {torch.__version__} '
            f'(quantized engine {torch.backends.quantized.engine})')


class Family:
    """One family's inputs and how to run each variant on them."""

    def __init__(self, args, spec, tmp: str):
        self.name, config, self.motion, ref_option, self.ref_motion = spec
        self.args = copy.copy(args)
        self.args.config, self.args.compile, self.args.demo_args = os.path.join(REPO, config), False, []
        self.args.random_weights, self.args.checkpoint, self.args.precision = True, None, 'fp32'
        self.tmp = os.path.join(tmp, self.name)
        os.makedirs(self.tmp)
        self.checkpoint, self.driving, self.source = prepare_inputs(self.args, self.tmp)
        self.reference = getattr(args, ref_option)
        # Caches the cold runs fill and the timed rounds then find warm.
        self.env = {'KEYPOINT_ANIMATION_CACHE': os.path.join(self.tmp, 'int8-cache'),
                    'TORCHINDUCTOR_CACHE_DIR': os.path.join(self.tmp, 'inductor-cache')}

    def variants(self) -> list[str]:
        compiled = [] if self.args.no_compile else ['fp32 --compile']
        return ['fp32', 'int8'] + compiled + (['reference'] if self.reference else [])

    def set_up_variants(self) -> list[str]:
        """The variants with a one-time set-up (export and calibration, compilation): timed cold
        once, and scored by PSNR against fp32."""
        return [v for v in self.variants() if v in ('int8', 'fp32 --compile')]

    def run(self, variant: str, result: str | None = None) -> dict:
        result = result or os.path.join(self.tmp, 'result.mp4')
        if variant == 'reference':       # the same random weights: our checkpoints use the official keys
            cmd = [sys.executable, 'demo.py', '--config', os.path.join('config', 'vox-256.yaml'), '--checkpoint',
                   self.checkpoint, '--source_image', self.source, '--driving_video', self.driving,
                   '--result_video', result] + self.ref_motion
            return run_timed(cmd, os.path.abspath(self.reference))
        precision = 'int8' if variant == 'int8' else 'fp32'
        extra = self.motion + (['--compile'] if 'compile' in variant else [])
        return run_demo(self.args, self.checkpoint, self.driving, self.source, result, precision, extra, self.env)

    def output(self, variant: str) -> np.ndarray:
        """The variant's frames as uint8 (T, H, W, 3), written losslessly (PNG)."""
        from media import VideoReader
        folder = os.path.join(self.tmp, f'png-{variant.replace(" ", "")}') + '/'
        self.run(variant, folder)
        return np.stack(list(VideoReader(folder)))


def measure(family: Family, repeat: int) -> dict:
    """Cold set-up runs, then `repeat` alternating rounds of every variant; medians."""
    cold = {v: family.run(v) for v in family.set_up_variants()}
    runs = {v: [] for v in family.variants()}
    for r in range(repeat):
        for variant in family.variants():
            stats = family.run(variant)
            runs[variant].append(stats)
            print(f'  {family.name} round {r + 1}/{repeat} {variant:15s} wall {stats["wall"]:6.1f} s', flush=True)
    median = {v: {k: statistics.median(s[k] for s in runs[v]) for k in ('wall', 'rss_mib')} for v in runs}
    setup = INT8_SETUP.search(cold['int8']['stdout'])
    return {'median': median, 'cold': {v: s['wall'] for v, s in cold.items()},
            'int8_setup': float(setup.group(1)) if setup else None}


def report(family: Family, m: dict, psnrs: dict, frames: int, repeat: int) -> None:
    base = m['median']['fp32']['wall']
    print(f'\n{family.name} vox-256, random weights, first {frames} frames, {" ".join(family.motion)}; '
          f'medians of {repeat} alternating rounds, whole process:')
    print(f'  {"variant":15s} {"wall":>8s} {"fp32 / it":>10s} {"peak RSS":>9s}   set-up (first run only)')
    for variant, med in m['median'].items():
        note = ''
        if variant in m['cold']:
            note = f'cold run {m["cold"][variant]:.1f} s: +{m["cold"][variant] - med["wall"]:.1f} s'
            if variant == 'int8' and m['int8_setup']:
                note += f' (calibration and quantization {m["int8_setup"]:.1f} s)'
            elif variant != 'int8':
                note += ' (Inductor compile, then cached)'
        print(f'  {variant:15s} {med["wall"]:7.1f}s {base / med["wall"]:9.2f}x {med["rss_mib"]:7.0f}MiB   {note}')
    if 'reference' in m['median']:
        ref = m['median']['reference']['wall']
        print('  against the reference demo (wall time, ours / reference): '
              + ', '.join(f'{v} {m["median"][v]["wall"] / ref:.2f}' for v in m['median'] if v != 'reference'))
    print('  PSNR against our fp32 (lossless frames): '
          + ', '.join(f'{v} {p:.1f} dB' for v, p in psnrs.items()))


def run_suite(args) -> int:
    print(f'host: {host()}')
    print(f'threads: {args.threads or "torch default"}; the machine should be otherwise idle')
    with tempfile.TemporaryDirectory(prefix='bench_suite.') as tmp:
        families = [Family(args, spec, tmp) for spec in FAMILIES]
        results = []
        for family in families:
            m = measure(family, args.repeat)
            reference = family.output('fp32')
            psnrs = {v: psnr(family.output(v), reference) for v in family.set_up_variants()}
            results.append((family, m, psnrs))
        for family, m, psnrs in results:
            report(family, m, psnrs, args.frames, args.repeat)
    return 0
