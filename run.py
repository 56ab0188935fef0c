"""Command line entry for training and evaluation of both families.

    python run.py --config config/fomm/vox-256.yaml --mode train [--checkpoint K] [--log_dir D]
    python run.py --config ... --mode train --device_ids 0,1,2,3      # one process per GPU, as torchrun
    torchrun --nproc_per_node 4 run.py --config ... --mode train        # DDP + SyncBatchNorm
    python run.py --config config/tps/vox-256.yaml --mode train_avd --checkpoint vox.pth.tar
    python run.py --config ... --mode reconstruction --checkpoint K
"""
from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
import time

# Idle OpenMP threads sleep instead of spinning: spinning threads on a shared machine starve the
# thread that has the work (modules/cpu_threads.py). Must be set before torch loads its OpenMP.
os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')

import torch  # noqa: E402

log = logging.getLogger('run')


def whole_number(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f'expected a whole number >= 0, got {text!r}')
    return value


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--config', required=True, help='path to a config yaml (official configs work unchanged)')
    p.add_argument('--mode', default='train', choices=['train', 'train_avd', 'reconstruction', 'animate'])
    p.add_argument('--log_dir', default='log', help='parent folder of the run folder')
    p.add_argument('--checkpoint', default=None, help='checkpoint to resume from / evaluate')
    p.add_argument('--device_ids', default='0', type=lambda s: [int(x) for x in s.split(',')],
                   help='GPUs to train on; several start one process per GPU (DDP + SyncBatchNorm, the same '
                        'as torchrun); ignored under torchrun')
    p.add_argument('--cpu', action='store_true', help='run on the CPU even when CUDA is present')
    p.add_argument('--epochs', type=int, default=None, help='override train_params.num_epochs (for quick runs)')
    p.add_argument('--keep_last', type=whole_number, default=None, metavar='N',
                   help='keep only the newest N numbered checkpoints (<epoch>-checkpoint.pth.tar) of the run folder; '
                        '0: none, last.pth.tar only (default: train_params.keep_last, else all, as the references)')
    p.add_argument('--max_minutes', type=float, default=None,
                   help='stop after the first epoch that ends past this many minutes (fixed-budget runs)')
    p.add_argument('--find_best_frame', action='store_true',
                   help='animate mode, relative motion: the reference frame of each pair is the driving frame whose '
                        'face landmarks best match the source (see --face_backend)')
    p.add_argument('--face_backend', choices=('auto', 'face-alignment', 'dlib'), default='auto',
                   help='faces for --find_best_frame and the reconstruction face metrics (auto: face-alignment when '
                        'its model loads, else dlib)')
    p.add_argument('--precision', choices=('fp32', 'bf16', 'fp16'), default=None,
                   help='train / train_avd / reconstruction precision: autocast with float32 weights (default: '
                        'train_params.precision, else fp32); bf16 runs on CPUs too, fp16 gets a gradient scaler')
    p.add_argument('--compile', action='store_true', help='train: torch.compile each network (slow first steps)')
    p.add_argument('--channels_last', choices=('auto', 'on', 'off'), default='auto',
                   help='train: channels-last networks and batches (auto: on the CPU, and on one GPU in bf16/fp16)')
    p.add_argument('--threads', type=int, default=None,
                   help='CPU threads for torch (default: one per core, fewer when other work keeps cores busy)')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--verbose', action='store_true')
    return p.parse_args(argv)


def setup_distributed(cpu: bool):
    """Join the process group torchrun describes in the environment (WORLD_SIZE, RANK, LOCAL_RANK)."""
    from train import Dist
    world = int(os.environ.get('WORLD_SIZE', '1'))
    if world <= 1:
        return Dist()
    local_rank = int(os.environ.get('LOCAL_RANK', '0'))
    return init_process_group(Dist(rank=int(os.environ.get('RANK', '0')), world_size=world, local_rank=local_rank,
                                   device_index=local_rank), cpu)


def init_process_group(dist, cpu: bool):
    use_cuda = torch.cuda.is_available() and not cpu
    if use_cuda:
        torch.cuda.set_device(dist.device_index)
    torch.distributed.init_process_group('nccl' if use_cuda else 'gloo', rank=dist.rank, world_size=dist.world_size)
    return dist


def launches_per_device(args) -> bool:
    """`--device_ids 0,1,...` in a plain `python run.py --mode train`: one process per GPU.

    The reference ran nn.DataParallel over these GPUs with FOMM's synchronised BatchNorm, so
    BatchNorm saw the whole batch. nn.DataParallel with torch's BatchNorm would normalise each
    GPU's slice alone (and keep only GPU 0's running statistics); one DDP process per GPU with
    SyncBatchNorm normalises over the whole batch again, and is what PyTorch recommends."""
    return (args.mode == 'train' and len(args.device_ids) > 1 and 'WORLD_SIZE' not in os.environ
            and torch.cuda.is_available() and not args.cpu)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def launch(args, device_ids: list[int]) -> int:
    """Start one training process per entry of `device_ids` on this machine and wait for all.
    Each process joins a local process group, as under `torchrun --nproc_per_node len(device_ids)`."""
    import torch.multiprocessing as mp
    master = (os.environ.get('MASTER_ADDR', '127.0.0.1'), os.environ.get('MASTER_PORT') or str(free_port()))
    try:
        mp.spawn(launched_process, args=(args, device_ids, master), nprocs=len(device_ids), join=True)
    except mp.ProcessExitedException as e:
        return e.exit_code or 1
    return 0


def launched_process(index: int, args, device_ids: list[int], master: tuple[str, str]) -> None:
    from train import Dist
    os.environ['MASTER_ADDR'], os.environ['MASTER_PORT'] = master
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // len(device_ids)))   # CPU threads split between ranks
    dist = init_process_group(Dist(rank=index, world_size=len(device_ids), local_rank=index,
                                   device_index=device_ids[index]), args.cpu)
    code = execute(args, dist)
    if code:
        sys.exit(code)


def pick_device(args, dist) -> torch.device:
    if torch.cuda.is_available() and not args.cpu:
        return torch.device('cuda', dist.device_index if dist.enabled else args.device_ids[0])
    return torch.device('cpu')


def run_dir(args, config_path: str) -> str:
    if args.checkpoint and args.mode == 'train':
        return os.path.dirname(os.path.abspath(args.checkpoint))   # resume into the same folder
    name = os.path.splitext(os.path.basename(config_path))[0] + time.strftime('_%Y-%m-%d_%H-%M-%S')
    return os.path.join(args.log_dir, name)


def missing_gpus(args) -> str | None:
    """A message when --device_ids names a GPU this machine does not have (else None)."""
    if 'WORLD_SIZE' in os.environ or args.cpu or not torch.cuda.is_available():
        return None
    count = torch.cuda.device_count()
    wanted = args.device_ids if args.mode == 'train' else args.device_ids[:1]
    bad = [i for i in wanted if not 0 <= i < count]
    if bad:
        return (f'--device_ids {",".join(map(str, args.device_ids))}: no CUDA device {",".join(map(str, bad))}; '
                f'this machine shows {count} (0..{count - 1}, after CUDA_VISIBLE_DEVICES)')
    return None


PRECISION_PARAMS = {'train': 'train_params', 'train_avd': 'train_avd_params', 'reconstruction': 'reconstruction_params'}


def run_precision(args, config: dict, device: torch.device) -> str:
    """--precision, else the mode's `<mode>_params.precision`, else fp32; checked before any work
    (fp16 on a CPU is refused in one line)."""
    from modules.precision import resolve
    return resolve(args.precision, config.get(PRECISION_PARAMS.get(args.mode, '')) or {}, device)


def main(argv=None) -> int:
    args = parse_args(argv)
    problem = missing_gpus(args)
    if problem:
        print(f'error: {problem}', file=sys.stderr)
        return 2
    if launches_per_device(args):
        return launch(args, args.device_ids)
    from media.files import Terminated, sigterm_as_interrupt
    try:
        with sigterm_as_interrupt():     # SIGTERM unwinds as Ctrl-C does: temporary .part files are removed
            return execute(args, setup_distributed(args.cpu))
    except KeyboardInterrupt as stop:
        terminated = isinstance(stop, Terminated)
        print(f"{'terminated' if terminated else 'interrupted'}; files being written were not kept", file=sys.stderr)
        return 143 if terminated else 130


def execute(args, dist) -> int:
    """Run `args.mode` in this process (one rank of a process group when `dist.enabled`)."""
    from frames_dataset import DatasetRepeater, build_dataset
    from modules import build_models
    from loading import load_config
    from loading.checkpoint import CheckpointError
    from modules.config import ConfigError
    from faces.backend import FaceModelError

    logging.basicConfig(level=logging.INFO if dist.is_main else logging.WARNING,
                        format='%(asctime)s %(name)s: %(message)s', datefmt='%H:%M:%S')
    torch.manual_seed(args.seed + dist.rank)
    try:
        if not dist.enabled:      # ranks of one machine share its cores (launched_process)
            from modules import cpu_threads
            cpu_threads.configure(args.threads)
        config = load_config(args.config)
        section = {'train': 'train_params', 'train_avd': 'train_avd_params'}.get(args.mode)
        if args.keep_last is not None and section in config:
            config[section]['keep_last'] = args.keep_last
        device = pick_device(args, dist)
        log.info('device: %s%s', device, f' ({torch.cuda.get_device_name(device)})' if device.type == 'cuda' else '')
        precision = run_precision(args, config, device)
        models = build_models(config)
        log_dir = run_dir(args, args.config)
        log.info('run folder: %s', log_dir)
        if args.mode == 'train':
            import train
            params = config['train_params']
            dataset = build_dataset(config['dataset_params'], is_train=True)
            if params.get('num_repeats', 1) != 1:
                dataset = DatasetRepeater(dataset, params['num_repeats'])
            train.train(config, models, dataset, log_dir, device, args.checkpoint, dist,
                        max_epochs=args.epochs, max_minutes=args.max_minutes, precision=precision,
                        compile=args.compile, channels_last={'on': True, 'off': False}.get(args.channels_last))
        elif args.mode == 'train_avd':
            import train_avd
            if not args.checkpoint:
                raise ConfigError('--mode train_avd needs --checkpoint: the AVD network is trained on a trained '
                                  'TPSMM model')
            dataset = build_dataset(config['dataset_params'], is_train=True)
            train_avd.train_avd(config, models, dataset, log_dir, device, args.checkpoint, max_epochs=args.epochs,
                                precision=precision)
        elif args.mode == 'reconstruction':
            import reconstruction
            dataset = build_dataset(config['dataset_params'], is_train=False)
            reconstruction.reconstruction(config, models, dataset, log_dir, device, args.checkpoint,
                                          face_backend=args.face_backend, precision=precision)
        else:
            import animate
            animate.animate_dataset(config, models, log_dir, device, args.checkpoint,
                                    find_best_frame=args.find_best_frame, face_backend=args.face_backend)
    except (ConfigError, CheckpointError, FileNotFoundError, ValueError, FaceModelError) as e:
        if dist.is_main:     # every rank meets the same bad input; one message is enough
            print(f'error: {e}', file=sys.stderr)
        return 2
    finally:
        if dist.enabled:
            torch.distributed.destroy_process_group()
    return 0


if __name__ == '__main__':
    sys.exit(main())
