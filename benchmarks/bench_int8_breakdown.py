"""Where the time of one `demo.py --precision int8` process goes.

    python benchmarks/bench_int8_breakdown.py --config config/fomm/vox-256.yaml [--frames 40] \\
        [--precision int8] [-- --relative --adapt_scale]

Runs demo.py's main in this process (random weights, the first `--frames` frames of the sample
clip, its first frame the source, as bench_demo.py) with timers wrapped around its parts, and prints one table:
  start-up        interpreter start to demo's main (imports of torch, onnxruntime, ...)
  model load      config, networks, checkpoint (Animator.from_files, int8 set-up excluded)
  int8 set-up     quantized copies of the per-frame networks, calibrated (fp32 passes with
                  observers) or with ranges from the cache (Int8Networks.build)
  decoding        the driving video's frames (VideoReader.iter_batches)
  keypoints       the keypoint detector on every frame (Animator.keypoints)
  encoder         the source encoder (once)
  per-frame networks  FOMM's generator, TPSMM's dense motion + inpainting (Animator.generate):
                  the int8 copies, or fp32 with --precision fp32
  encoding        writing the result (VideoWriter.write)
  other           the rest of the wall time (resizing, tensors to numpy, progress, exit)
Timers nest: a part's time is its own (a keypoint call inside calibration counts as keypoints
and is taken out of the set-up). On a machine shared with other work the figures move by tens
of percent between runs: compare shares, and run it several times.
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import os
import sys
import tempfile
import time

STARTED = time.perf_counter()
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, 'benchmarks'))
SAMPLE_CLIP = os.path.join(os.path.dirname(REPO), 'shared', 'samples', 'face-driving.mp4')

TOTALS: dict[str, float] = {}
STACK: list[list] = []          # [name, start, time spent in nested timers]


@contextlib.contextmanager
def timer(name: str):
    STACK.append([name, time.perf_counter(), 0.0])
    try:
        yield
    finally:
        name, start, nested = STACK.pop()
        spent = time.perf_counter() - start
        TOTALS[name] = TOTALS.get(name, 0.0) + spent - nested
        if STACK:
            STACK[-1][2] += spent


def wrap(owner, attribute: str, name: str, not_inside: str | None = None) -> None:
    """Time calls of owner.attribute as `name`, except those made inside the `not_inside` part."""
    original = getattr(owner, attribute)

    @functools.wraps(original)
    def timed(*args, **kwargs):
        if not_inside and any(frame[0] == not_inside for frame in STACK):
            return original(*args, **kwargs)
        with timer(name):
            return original(*args, **kwargs)
    setattr(owner, attribute, timed)


def wrap_iterator(owner, attribute: str, name: str) -> None:
    """Time each `next()` of the iterator a method returns (decoding happens lazily there)."""
    original = getattr(owner, attribute)

    @functools.wraps(original)
    def timed(*args, **kwargs):
        iterator = iter(original(*args, **kwargs))
        while True:
            with timer(name):
                try:
                    item = next(iterator)
                except StopIteration:
                    return
            yield item
    setattr(owner, attribute, timed)


def instrument() -> None:
    import animate
    import media
    from deploy import int8
    from modules import generator
    wrap(animate.Animator, 'from_files', 'model load')
    wrap(animate.Animator, 'keypoints', 'keypoints')
    wrap(generator.FommGenerator, 'encode', 'encoder')
    wrap(generator.TpsInpaintingNetwork, 'encode', 'encoder')
    wrap(int8.Int8Networks, 'build', 'int8 set-up')
    # The per-frame networks (int8 copies, or fp32); calibration's fp32 passes count as set-up.
    wrap(animate.Animator, 'generate', 'per-frame networks', not_inside='int8 set-up')
    wrap_iterator(media.VideoReader, 'iter_batches', 'decoding')
    wrap(media.VideoWriter, 'write', 'encoding')


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--config', required=True)
    p.add_argument('--frames', type=int, default=40)
    p.add_argument('--precision', default='int8', choices=('fp32', 'int8'))
    p.add_argument('--threads', type=int, default=None)
    p.add_argument('extra', nargs='*', help='more demo.py options after --')
    args = p.parse_args(argv)
    import torch

    import demo
    from bench_demo import prepare_inputs
    startup = time.perf_counter() - STARTED
    with tempfile.TemporaryDirectory() as tmp:
        inputs = argparse.Namespace(config=args.config, checkpoint=None, random_weights=True, frames=args.frames,
                                    driving_video=SAMPLE_CLIP, source_image=None)
        checkpoint, driving, source = prepare_inputs(inputs, tmp)     # outside the timers
        instrument()
        begin = time.perf_counter()
        code = demo.main(['--config', args.config, '--checkpoint', checkpoint, '--source_image', source,
                          '--driving_video', driving, '--result_video', os.path.join(tmp, 'out.mp4'), '--cpu',
                          '--precision', args.precision, '--quiet']
                         + (['--threads', str(args.threads)] if args.threads else []) + args.extra)
        wall = time.perf_counter() - begin
    TOTALS['start-up'] = startup
    if code:
        return code
    print(f'\n{args.config} {args.precision}, {args.frames} frames, demo.main {wall:.2f} s '
          f'(+ start-up measured separately), {torch.get_num_threads()} threads')
    parts = dict(TOTALS)
    parts['other'] = wall - sum(v for k, v in parts.items() if k != 'start-up')
    total = wall + parts.get('start-up', 0.0)
    print('| part | seconds | share |\n|---|---|---|')
    for name, sec in sorted(parts.items(), key=lambda kv: -kv[1]):
        print(f'| {name} | {sec:.2f} | {100 * sec / total:.0f}% |')
    print(f'| whole process | {total:.2f} | 100% |')
    return 0


if __name__ == '__main__':
    sys.exit(main())
