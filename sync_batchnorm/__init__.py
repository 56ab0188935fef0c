"""Synchronised BatchNorm for distributed training: a thin layer over torch.

The original FOMM vendored a third-party SynchronizedBatchNorm for nn.DataParallel, so that
BatchNorm saw the whole batch across GPUs. PyTorch has had `torch.nn.SyncBatchNorm` (for
DistributedDataParallel) since 1.1, and run.py trains on several GPUs with one DDP process per GPU
(`--device_ids` or torchrun); this package only keeps the old import names working and converts
a model's BatchNorm layers in place.
State-dict keys are unchanged by the conversion, so checkpoints load either way.
"""
from __future__ import annotations

import torch
from torch import nn

SynchronizedBatchNorm2d = nn.BatchNorm2d     # the layer type used in modules; converted under DDP
# Old name, for code that imports it. Note nn.DataParallel normalises each GPU's slice of the batch
# alone; training here never uses it (see run.launches_per_device).
DataParallelWithCallback = nn.DataParallel


def convert_model(module: nn.Module, process_group=None) -> nn.Module:
    """Replace every BatchNorm*d with SyncBatchNorm when torch.distributed is initialised with
    more than one process; otherwise return the module unchanged (plain BatchNorm is then exact)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized() \
            and torch.distributed.get_world_size() > 1:
        return nn.SyncBatchNorm.convert_sync_batchnorm(module, process_group)
    return module


__all__ = ['SynchronizedBatchNorm2d', 'DataParallelWithCallback', 'convert_model']
