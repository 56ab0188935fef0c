"""Training speed: seconds per iteration, samples/s and peak memory for a config and batch size.

    python benchmarks/bench_train.py --config config/synthetic/fomm-64.yaml --batch_size 8 --iters 20
    python benchmarks/bench_train.py --config config/fomm/vox-256.yaml --random_data --batch_size 4

`--random_data` feeds random frames at the config's size (no data set needed: the model cost
alone); otherwise batches come from the config's data set through the real DataLoader, so the
decode cost of PNG folders vs mp4 shows. The first `--warmup` iterations are not timed.
Prints the median over the timed iterations.
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--config', required=True)
    p.add_argument('--batch_size', type=int, default=None)
    p.add_argument('--iters', type=int, default=20)
    p.add_argument('--warmup', type=int, default=3)
    p.add_argument('--random_data', action='store_true')
    p.add_argument('--size', type=int, default=None, help='frame size for --random_data (default: config)')
    p.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    p.add_argument('--workers', type=int, default=None)
    args = p.parse_args(argv)

    import train
    from frames_dataset import DatasetRepeater, build_dataset
    from modules import build_models, load_config
    config = load_config(args.config)
    params = config['train_params']
    params.setdefault('vgg19_weights', 'random')
    if args.batch_size:
        params['batch_size'] = args.batch_size
    if args.workers is not None:
        params['dataloader_workers'] = args.workers
    device = torch.device(args.device)
    models = {k: m.to(device).train() for k, m in build_models(config).items()}
    optimizers = train.build_optimizers(models, params)
    phases = train.build_phases(models, params, optimizers, 0, device, train.Dist(), None)
    b = params['batch_size']
    if args.random_data:
        shape = config['dataset_params'].get('frame_shape') or [256, 256, 3]
        h = w = args.size or shape[0]
        batches = iter(lambda: {'source': torch.rand(b, 3, h, w), 'driving': torch.rand(b, 3, h, w)}, None)
    else:
        dataset = DatasetRepeater(build_dataset(config['dataset_params'], is_train=True), 1000)
        batches = iter(train.make_loader(dataset, params, train.Dist()))
    times = []
    for i in range(args.warmup + args.iters):
        batch = train.to_device(next(batches), device)
        if device.type == 'cuda':
            torch.cuda.synchronize()
        start = time.perf_counter()
        generated = None
        for phase in phases:
            _, generated = train.step_phase(phase, batch, 0, models, params, generated)
        if device.type == 'cuda':
            torch.cuda.synchronize()
        if i >= args.warmup:
            times.append(time.perf_counter() - start)
    # Data time is included when reading from disk: next(batches) is outside the timer, but a
    # loader with workers prefetches, so a slow format shows as waiting there; report both.
    sec = statistics.median(times)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    gpu = f', peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB' if device.type == 'cuda' else ''
    print(f'{args.config} batch {b} on {device} ({torch.get_num_threads()} threads): {sec:.3f} s/iter, '
          f'{b / sec:.1f} samples/s, peak RSS {rss:.0f} MiB{gpu}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
