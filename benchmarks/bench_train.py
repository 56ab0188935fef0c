"""Training speed: seconds per iteration, samples/s and peak memory for a config and batch size.

    python benchmarks/bench_train.py --config config/synthetic/fomm-64.yaml --batch_size 8 --iters 20
    python benchmarks/bench_train.py --config config/fomm/vox-256.yaml --random_data --batch_size 4

`--random_data` feeds random frames at the config's size (no data set needed: the model cost
alone); otherwise batches come from the config's data set (or `--root_dir`) through the real
DataLoader, and the time spent waiting for the next batch is counted and reported separately, so a
slow format shows. `--data_only` times the loader alone (no model), which is how to compare PNG
folders with mp4 files:

    python benchmarks/bench_train.py --config config/fomm/vox-256.yaml --root_dir data/vox-png --data_only
    python benchmarks/bench_train.py --config config/fomm/vox-256.yaml --root_dir data/vox-mp4 --data_only

`--compare_formats` does that comparison in one run: it makes the same clips (the real sample
face clip, resized to the config's frame shape and played back and forth to each `--lengths`) as
PNG folders, as mp4 with x264's default keyframe interval (250 frames) and as mp4 with a keyframe
every 25 frames, then times the loader on each in turn, `--rounds` times, alternating, and prints
the medians and each format's speed relative to PNG folders:

    python benchmarks/bench_train.py --config config/fomm/vox-256.yaml --compare_formats --batch_size 8 --workers 1

The first `--warmup` iterations are not timed. Prints medians over the timed iterations.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import resource
import statistics
import sys
import tempfile
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
    p.add_argument('--root_dir', default=None, help='data set folder (default: the config\'s root_dir)')
    p.add_argument('--data_only', action='store_true', help='time the data loader alone')
    p.add_argument('--size', type=int, default=None, help='frame size for --random_data (default: config)')
    p.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    p.add_argument('--workers', type=int, default=None)
    p.add_argument('--nchw', action='store_true', help='keep the NCHW layout on the CPU (train.py uses channels-last)')
    p.add_argument('--compare_formats', action='store_true', help='loader speed: PNG folders vs mp4, alternating')
    p.add_argument('--lengths', default='100,1000', help='--compare_formats: clip lengths in frames')
    p.add_argument('--clips', type=int, default=4, help='--compare_formats: training clips per data set')
    p.add_argument('--rounds', type=int, default=5, help='--compare_formats: alternating rounds')
    p.add_argument('--data_dir', default=None, help='--compare_formats: keep (and reuse) the data sets here')
    args = p.parse_args(argv)

    import train
    from modules import build_models
    from loading import load_config
    config = load_config(args.config)
    params = config['train_params']
    params.setdefault('vgg19_weights', 'random')
    if args.root_dir:
        config['dataset_params']['root_dir'] = args.root_dir
    if args.batch_size:
        params['batch_size'] = args.batch_size
    if args.workers is not None:
        params['dataloader_workers'] = args.workers
    device = torch.device(args.device)
    b = params['batch_size']
    if args.compare_formats:
        return compare_formats(config, params, args)
    if args.data_only:
        return time_loader(config, params, args)
    models = {k: m.to(device).train() for k, m in build_models(config).items()}
    optimizers = train.build_optimizers(models, params)
    phases = train.build_phases(models, params, optimizers, 0, device, train.Dist())
    channels_last = not args.nchw and train.use_channels_last(models, phases, device, train.Dist())
    if args.random_data:
        shape = config['dataset_params'].get('frame_shape') or [256, 256, 3]
        h = w = args.size or shape[0]
        batches = iter(lambda: {'source': torch.rand(b, 3, h, w), 'driving': torch.rand(b, 3, h, w)}, None)
    else:
        batches = training_batches(config, params)
    times, waits = [], []
    for i in range(args.warmup + args.iters):
        start = time.perf_counter()
        batch = train.to_device(next(batches), device, channels_last)   # waiting: the loader is the bottleneck
        waited = time.perf_counter() - start
        generated = None
        for phase in phases:
            _, generated = train.step_phase(phase, batch, 0, models, params, generated)
        if device.type == 'cuda':
            torch.cuda.synchronize()
        if i >= args.warmup:
            times.append(time.perf_counter() - start)
            waits.append(waited)
    sec = statistics.median(times)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    gpu = f', peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB' if device.type == 'cuda' else ''
    data = '' if args.random_data else f' (of which waiting for data {statistics.median(waits):.3f} s)'
    layout = ', channels-last' if channels_last else ''
    print(f'{args.config} batch {b} on {device} ({torch.get_num_threads()} threads{layout}): {sec:.3f} s/iter{data}, '
          f'{b / sec:.1f} samples/s, peak RSS {rss:.0f} MiB{gpu}')
    return 0


def training_batches(config: dict, params: dict):
    """An endless iterator over the training DataLoader, as train.py builds it."""
    import train
    from frames_dataset import DatasetRepeater, build_dataset
    dataset = DatasetRepeater(build_dataset(config['dataset_params'], is_train=True), 1000)
    return iter(train.make_loader(dataset, params, train.Dist()))


def loader_seconds_per_batch(config: dict, params: dict, args) -> float:
    """Mean seconds per batch of a fresh training DataLoader, after `--warmup` batches."""
    batches = training_batches(config, params)
    for _ in range(args.warmup):
        next(batches)
    start = time.perf_counter()   # workers prefetch, so the mean over many batches is the honest rate
    for _ in range(args.iters):
        next(batches)
    seconds = (time.perf_counter() - start) / args.iters
    del batches   # stops the workers before the next measurement starts its own
    return seconds


def time_loader(config: dict, params: dict, args) -> int:
    """Batches per second of the training DataLoader alone (decode + augment + collate)."""
    sec = loader_seconds_per_batch(config, params, args)
    b = params['batch_size']
    root = config['dataset_params']['root_dir']
    print(f'{root}: data loader alone, batch {b}, {params.get("dataloader_workers", 0)} workers: '
          f'{sec:.3f} s/batch, {b / sec:.1f} samples/s')
    return 0


# Formats compared: name -> VideoWriter destination suffix and options.
FORMATS = {'png': ('/', {}), 'mp4': ('.mp4', {}), 'mp4-key25': ('.mp4', {'keyframe_interval': 25})}
SAMPLE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), '..', 'shared', 'samples',
                      'face-driving.mp4')


def make_format_sets(root: str, length: int, clips: int, shape) -> dict[str, str]:
    """The same `clips` training clips of `length` frames in every format: {format: data set root}.

    Frames are the sample clip resized to `shape`, played forwards then backwards (each clip starts
    elsewhere); a set already under `root` (a `.done` marker) is reused.
    """
    from media import VideoReader, VideoWriter, resize_frame
    sets = {name: os.path.join(root, f'{length}-frames', name) for name in FORMATS}
    if all(os.path.exists(os.path.join(path, '.done')) for path in sets.values()):
        return sets
    if not os.path.exists(SAMPLE):
        sys.exit(f'--compare_formats needs the sample clip {os.path.normpath(SAMPLE)} (../shared/samples)')
    reader = VideoReader(SAMPLE)
    frames = [(resize_frame(f, shape) * 255).round().astype('uint8') for f in reader]
    loop = frames + frames[-2:0:-1]
    for name, (suffix, options) in FORMATS.items():
        for split, count, n in (('train', clips, length), ('test', 1, 2)):
            for k in range(count):
                clip = [loop[(k * 37 + i) % len(loop)] for i in range(n)]
                with VideoWriter(os.path.join(sets[name], split, f'id{k}#clip{suffix}'), reader.frame_rate,
                                 **options) as writer:
                    writer.write(clip)
        open(os.path.join(sets[name], '.done'), 'w').close()
    return sets


def compare_formats(config: dict, params: dict, args) -> int:
    """Loader samples/s on PNG folders and mp4 files of the same clips, measured alternately."""
    shape = (config['dataset_params'].get('frame_shape') or [256, 256])[:2]
    b, workers = params['batch_size'], params.get('dataloader_workers', 0)
    with contextlib.ExitStack() as stack:
        root = args.data_dir or stack.enter_context(tempfile.TemporaryDirectory(prefix='bench_formats.'))
        for length in (int(v) for v in args.lengths.split(',')):
            sets = make_format_sets(root, length, args.clips, shape)
            rates: dict[str, list[float]] = {name: [] for name in sets}
            for _ in range(args.rounds):
                for name, path in sets.items():
                    config['dataset_params']['root_dir'] = path
                    rates[name].append(b / loader_seconds_per_batch(config, params, args))
            print(f'{length}-frame clips {shape[0]}x{shape[1]}, batch {b}, {workers} loader workers, '
                  f'{args.rounds} alternating rounds of {args.iters} batches (median samples/s):', flush=True)
            for name, values in rates.items():
                ratio = statistics.median(v / p for v, p in zip(values, rates['png']))
                print(f'  {name:10s} {statistics.median(values):6.1f} samples/s   {ratio:.2f}x PNG folders   '
                      f'[{", ".join(f"{v:.1f}" for v in values)}]', flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
