"""Replace a checkpoint's BatchNorm running statistics by exact averages over many training batches.

    python scripts/precise_bn.py --config config/synthetic/fomm-64.yaml \\
        --checkpoint log/<run>/last.pth.tar --out log/<run>/last-precise-bn.pth.tar [--batches 150]

Training keeps BatchNorm's running statistics as an exponential average (momentum 0.1), so a
checkpoint's statistics mostly reflect its last ten or so batches. Where batch statistics vary a
lot, as in FOMM on the synthetic set (each frame's colour depends on its batch companions; see
scripts/diagnose_model.py), eval-mode results then swing from checkpoint to checkpoint even when
the weights hardly change. This pass (PyTorch's `torch.optim.swa_utils.update_bn`) runs the
animation networks in train mode without gradients on --batches training batches and stores the
equal-weight average of their batch statistics instead.

Only BatchNorm buffers change: weights, optimizer states, epoch and every other entry are copied
as they are, in their stored dtype. The networks recalibrated are those reconstruction uses
(FOMM's keypoint detector and generator; TPSMM's keypoint detector, dense motion, inpainting and
background networks); TPSMM's AVD network keeps its statistics.
"""
from __future__ import annotations

import argparse
import itertools
import os
import sys
from typing import Iterator

import torch
from torch import nn
from torch.utils.data import DataLoader

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from diagnose_model import load_reconstruction_models, predict  # noqa: E402
from media.files import atomic_path  # noqa: E402
from frames_dataset import build_dataset  # noqa: E402
from loading import load_config  # noqa: E402
from loading.checkpoint import CheckpointError, ConfigError, _strip_prefix  # noqa: E402

BN_BUFFERS = ('running_mean', 'running_var', 'num_batches_tracked')


class AnimationPass(nn.Module):
    """The animation networks as one module whose forward takes a training batch (update_bn's input)."""

    def __init__(self, models: dict[str, nn.Module]):
        super().__init__()
        self.nets = nn.ModuleDict(models)

    def forward(self, batch: dict) -> None:
        predict(dict(self.nets), batch['source'], batch['driving'])


def training_batches(dataset, batch_size: int, count: int, seed: int) -> Iterator[dict]:
    """`count` shuffled batches, passing over the data set again when it runs out."""
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=True,
                        generator=torch.Generator().manual_seed(seed))
    if len(loader) == 0:
        raise ValueError(f'the training set has {len(dataset)} videos, fewer than one batch of {batch_size}')
    return itertools.islice(itertools.chain.from_iterable(itertools.repeat(loader)), count)


def recalibrate(models: dict[str, nn.Module], batches) -> None:
    """Recompute every BatchNorm's running statistics of `models` from `batches`, in place."""
    with torch.no_grad():
        torch.optim.swa_utils.update_bn(batches, AnimationPass(models))
    for m in models.values():
        m.eval()


def with_new_statistics(ckpt: dict, models: dict[str, nn.Module]) -> dict:
    """A copy of `ckpt` whose BatchNorm buffers of `models` are replaced, keys and dtypes kept."""
    out = dict(ckpt)
    for key, model in models.items():
        fresh = model.state_dict()
        stored = dict(ckpt[key])
        # Same order, names as load_models reads them (a DataParallel 'module.' prefix removed).
        for (name, value), plain in zip(list(stored.items()), _strip_prefix(stored)):
            if plain.rsplit('.', 1)[-1] in BN_BUFFERS and plain in fresh:
                stored[name] = fresh[plain].to(value.dtype)
        out[key] = stored
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--config', required=True)
    p.add_argument('--checkpoint', required=True)
    p.add_argument('--out', required=True, help='where to write the recalibrated checkpoint (may be --checkpoint)')
    p.add_argument('--batches', type=int, default=150)
    p.add_argument('--batch_size', type=int, default=None, help='default: train_params.batch_size')
    p.add_argument('--seed', type=int, default=0)
    args = p.parse_args(argv)
    try:
        config = load_config(args.config)
        models, ckpt = load_reconstruction_models(args.checkpoint, config)
        dataset = build_dataset(config['dataset_params'], is_train=True)
        batch_size = args.batch_size or config['train_params']['batch_size']
        recalibrate(models, training_batches(dataset, batch_size, args.batches, args.seed))
        with atomic_path(args.out) as tmp:
            torch.save(with_new_statistics(ckpt, models), tmp)
    except (ConfigError, CheckpointError, FileNotFoundError, ValueError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    print(f'{args.out}: BatchNorm statistics of {", ".join(models)} averaged over {args.batches} batches '
          f'of {batch_size}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
