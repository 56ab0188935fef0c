"""Mixed-precision training: which precision a run uses, the autocast region around networks and
losses, the gradient scaler, and the guard that keeps numerically delicate code in float32.

Weights, gradients and optimizer state always stay float32 (autocast only changes the dtype in
which listed ops such as convolutions and matmuls compute), so checkpoints are float32 whatever
the precision and load into fp32 runs unchanged.

`full_precision` marks the code that must not run in bf16/fp16 (it disables autocast and
computes in float32 inside; without autocast it is a plain call, so fp32 runs are bit-identical
to before and parity holds):
  * the keypoint detectors, whole (modules/keypoint_detector.py), TPSMM's background predictor
    and AVD network (modules/tps_extras.py): every motion is computed from their outputs. bf16
    keeps 8 significant bits, a step of 1/128 in [-1, 1] (half a pixel at 256x256), and in
    train mode BatchNorm over few values (a ResNet's last 2x2 maps at 64x64, batch 2) divides
    the rounding by a tiny standard deviation: bf16 moved tps-64-small's initial keypoints by up
    to 0.15, and its losses by 10%, before these networks were kept in float32;
  * the jacobian inverses (`geometry.local_affine_motions`, `losses.equivariance_jacobian_loss`):
    inverting a near-singular 2x2 amplifies the input's rounding by its condition number;
  * the TPS solve and evaluation (`geometry.fit_tps`, `apply_tps`): an 8x8 system with a 0.01
    ridge and r^2 log r^2 kernels whose values cancel near the control points;
  * motion fields and warping (`local_affine_motions`, `homogeneous_affine`, `warp`): sampling
    positions rounded to bf16 would move pixels by up to half a pixel;
  * the equivariance transforms (`model.RandomTps`: the random TPS warp, its jacobian by
    autograd, the warped frame), for the reasons above and because their gradients are
    second-order (create_graph);
  * the dense-motion softmax over candidate motions (modules/dense_motion.py): its weights
    multiply coordinates.
BatchNorm elsewhere (FOMM's generator and dense motion, over 64x64 maps and more) runs under
autocast: its statistics are accumulated in float32 by PyTorch's kernels on both devices and its
running mean/variance stay float32 buffers. Losses are summed in float32 (`train.step_phase`).
"""
from __future__ import annotations

import contextlib
import functools
import logging

import torch

log = logging.getLogger(__name__)

DTYPES = {'fp32': torch.float32, 'bf16': torch.bfloat16, 'fp16': torch.float16}


class PrecisionError(ValueError):
    """A precision the run cannot use; one line for the user."""


def cpu_has_native_bf16() -> bool | None:
    """Whether this CPU computes in bf16 natively (AVX512-BF16 or AMX), None when torch cannot tell."""
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:       # private helpers of torch.cpu, present since torch 2.1
        return None


def resolve(flag: str | None, train_params: dict | None, device: torch.device) -> str:
    """The run's precision: `--precision` wins over `train_params.precision`, default fp32.
    Says (log) when the CPU has to emulate the low precision."""
    precision = flag or (train_params or {}).get('precision') or 'fp32'
    if precision not in DTYPES:
        raise PrecisionError(f'precision must be one of {", ".join(DTYPES)}, got {precision!r}')
    if device.type == 'cpu' and precision == 'bf16' and cpu_has_native_bf16() is False:
        log.warning('this CPU has no native bf16 arithmetic (neither AVX512-BF16 nor AMX): bf16 training is '
                    'emulated and usually slower than fp32 here')
    if device.type == 'cpu' and precision == 'fp16':
        # It would run (CPU autocast and GradScaler support fp16), but CPUs have no fast fp16
        # convolutions: 6 iterations of tps-64-small took 10 min against 1 min in fp32 here.
        raise PrecisionError('precision fp16 needs a CUDA GPU (on the CPU it runs about 10x slower than fp32); '
                             'use bf16 on the CPU')
    return precision


def autocast(precision: str, device: torch.device):
    """The autocast region for networks and losses (a no-op context for fp32)."""
    if precision == 'fp32':
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=DTYPES[precision])


def grad_scaler(precision: str, device: torch.device) -> torch.amp.GradScaler:
    """fp16 gradients underflow without loss scaling; bf16 has fp32's exponent range and needs none.
    A disabled scaler passes everything through, so the training step has one code path."""
    return torch.amp.GradScaler(device.type, enabled=precision == 'fp16')


def autocast_active() -> bool:
    return torch.is_autocast_enabled('cpu') or (torch.cuda.is_available() and torch.is_autocast_enabled('cuda'))


def to_float(x):
    """Floating tensors (also inside dicts, lists and tuples) as float32; anything else unchanged."""
    if torch.is_tensor(x):
        return x.float() if x.is_floating_point() else x
    if isinstance(x, dict):
        return {k: to_float(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(to_float(v) for v in x)
    return x


def full_precision(fn):
    """Run `fn` in float32 when called inside an autocast region: autocast off, floating tensor
    arguments cast up. Outside autocast it is a direct call (same ops, same bits)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if not autocast_active():
            return fn(*args, **kwargs)
        with torch.autocast('cpu', enabled=False), _cuda_autocast_off():
            return fn(*to_float(args), **to_float(kwargs))
    return wrapper


def _cuda_autocast_off():
    return torch.autocast('cuda', enabled=False) if torch.cuda.is_available() else contextlib.nullcontext()


def has_grads(optimizer: torch.optim.Optimizer) -> bool:
    return any(p.grad is not None for group in optimizer.param_groups for p in group['params'])


class MixedPrecision:
    """A training run's precision on its device: the autocast region and the gradient scaler.

    With fp32 (and bf16) the scaler is disabled and every call below is the plain one
    (`loss.backward()`, `optimizer.step()`), so fp32 training is the same as without this class.
    The scaler's state is not checkpointed: it starts at 2**16 and finds its level within a few
    steps of a resumed run."""

    def __init__(self, precision: str = 'fp32', device: torch.device | str = 'cpu'):
        self.precision = precision
        self.device = torch.device(device)
        self.scaler = grad_scaler(precision, self.device)

    def autocast(self):
        return autocast(self.precision, self.device)

    def backward(self, loss: torch.Tensor) -> None:
        self.scaler.scale(loss).backward()

    def unscale(self, optimizers) -> None:
        """True gradients before clipping (a no-op without a scaler)."""
        for opt in optimizers:
            if self.scaler.is_enabled() and has_grads(opt):
                self.scaler.unscale_(opt)

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        """optimizer.step(); with fp16, skipped when the scaled gradients overflowed."""
        if self.scaler.is_enabled() and not has_grads(optimizer):
            return      # nothing to step, and the scaler refuses an optimizer it never saw gradients of
        self.scaler.step(optimizer)

    def update(self) -> None:
        """Once per iteration, after every phase stepped."""
        self.scaler.update()
