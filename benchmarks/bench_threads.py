"""CPU threads on a busy machine: the bundled example model animated by whole demo.py processes,
with other processes keeping every core busy, under three thread settings, alternating, medians.

    python benchmarks/bench_threads.py [--burners 2] [--repeat 3] [--frames 32] [--precision fp32]

Settings (each a fresh `python demo.py` process; the figure is demo's own "animation ... s"):
  old default   OMP_WAIT_POLICY empty (libgomp's default: spin, then sleep), --threads = all cores
                (what demo.py did before modules/cpu_threads.py)
  new default   no option: OMP_WAIT_POLICY=PASSIVE and threads by the load average
  --threads 1   one thread
`--burners N` starts N busy-looping processes for the whole benchmark (0: measure the machine as
it is). Results go to stdout as one table; see docs/cpu-inference.md for figures.
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


def burner() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, '-c', 'while True: pass'])


def settings(cores: int) -> dict[str, tuple[dict, list[str]]]:
    return {'old default': ({'OMP_WAIT_POLICY': ''}, ['--threads', str(cores)]),
            'new default': ({}, []),
            '--threads 1': ({}, ['--threads', '1'])}


def run_demo(source: str, driving: str, out: str, env_extra: dict, extra: list[str], precision: str) -> float:
    from demo import EXAMPLE_CHECKPOINT, EXAMPLE_CONFIG
    env = {k: v for k, v in os.environ.items() if k != 'OMP_WAIT_POLICY'}
    env.update(env_extra)
    cmd = [sys.executable, os.path.join(REPO, 'demo.py'), '--config', os.path.join(REPO, EXAMPLE_CONFIG),
           '--checkpoint', os.path.join(REPO, EXAMPLE_CHECKPOINT), '--source_image', source,
           '--driving_video', driving, '--result_video', out, '--precision', precision, '--quiet', *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO)
    found = re.search(r'animation ([0-9.]+) s', proc.stdout + proc.stderr)
    if proc.returncode != 0 or not found:
        sys.exit(f'demo failed ({proc.returncode}): {(proc.stderr or proc.stdout)[-500:]}')
    return float(found.group(1))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--burners', type=int, default=2, help='busy-looping processes competing for the cores')
    p.add_argument('--repeat', type=int, default=3)
    p.add_argument('--frames', type=int, default=32, help='frames of the generated driving clip')
    p.add_argument('--precision', default='fp32', choices=('fp32', 'int8'))
    args = p.parse_args(argv)
    from demo import write_example_inputs
    from modules.cpu_threads import usable_cores
    cores = usable_cores()
    variants = settings(cores)
    times: dict[str, list[float]] = {name: [] for name in variants}
    burners = [burner() for _ in range(args.burners)]
    try:
        with tempfile.TemporaryDirectory() as tmp:
            _, source, driving = write_example_inputs(tmp, args.frames)
            for r in range(args.repeat):
                for name, (env, extra) in variants.items():       # alternating: load drifts between runs
                    sec = run_demo(source, driving, os.path.join(tmp, 'out.mp4'), env, extra, args.precision)
                    times[name].append(sec)
                    print(f'  round {r + 1} {name}: {sec:.2f} s ({args.frames / sec:.1f} frames/s), '
                          f'load {os.getloadavg()[0]:.1f}', flush=True)
    finally:
        for b in burners:
            b.kill()
            b.wait()
    print(f'\n{cores} cores, {args.burners} burner process(es), {args.frames} frames, {args.precision}, '
          f'medians of {args.repeat}:')
    for name, values in times.items():
        med = statistics.median(values)
        print(f'  {name:12s} {med:7.2f} s  {args.frames / med:6.1f} frames/s   (runs: '
              + ', '.join(f'{v:.1f}' for v in values) + ')')
    return 0


if __name__ == '__main__':
    sys.exit(main())
