"""int8 inference on the CPU: the per-frame networks' convolutions on PyTorch's quantized kernels.

`Animator(precision='int8')` (animate.py) runs the same code as fp32, with quantized copies of
the networks that run on every driving frame (INT8_NETWORKS: FOMM's generator with its dense
motion network inside, TPSMM's dense motion and inpainting networks). In those copies every
`nn.Conv2d` is a quantized convolution (torch.ao.quantization, eager mode, post-training static):

    input    uint8 per tensor, asymmetric, the range calibration saw
    weights  int8 per output channel, symmetric
    output   uint8 per tensor (calibrated range), dequantized to float32 for what follows

An eval-mode BatchNorm right after a convolution (FOMM's conv-norm-relu blocks, and norm2 of
its residual blocks) is folded into the convolution's weights first, and what follows the
convolution inside its block (the ReLU, a DownBlock's pooling) runs on the uint8 map, so each
block quantizes once and dequantizes once (`quantized_units`). FOMM's decoding (residual
bottleneck, up blocks, final convolution) is one such step from end to end: the residual
stream, its BatchNorm+ReLU and its adds are uint8 too (`quantized_decoder`). Everything else is
the float32 code, unchanged: grid_sample, softmax, InstanceNorm (TPSMM), the keypoint detector
(its keypoints set every motion), the source encoder (once per video), the keypoint maths and
the TPS solve.

Kernels: torch's 'x86' quantized engine, which runs a convolution on oneDNN (AVX512-VNNI or
AMX int8 dot products) or FBGEMM, whichever it expects to be faster; 'qnnpack' on ARM. With
VNNI the activations use all 8 bits; without it 7 (`reduce_range`), as the u8*s8 pair sums of
AVX2 kernels saturate 16 bits otherwise.

Why not ONNX Runtime (this module's predecessor, deploy/quantize.py until 2026-12-06): on one
2-core Xeon with AMX, a 3x3 256->256 convolution at 64x64 ran in 2.0 ms here against 12.0 ms in
ONNX Runtime's QLinearConv (which has no AMX path), and with oneDNN held to VNNI
(ONEDNN_MAX_CPU_ISA=AVX512_CORE_VNNI) in 8.1 ms against 9.1 ms; and there is no graph to
export (10-50 s the first time a model is used) and no second copy of the model's code.

Calibration runs the fp32 networks with min/max observers on the source driven by the first
driving frames. Its result, a pair of floats per convolution, is cached on disk
(<cache_dir>/int8-ranges-<key>.pt, ~50 KB) under a key of the weights, the calibration inputs
and the settings, so a second run on the same inputs skips it; the key is computed from the
input pixels, not from float results, so it does not change with the thread count. The cache
keeps the most recently used files within $KEYPOINT_ANIMATION_CACHE_MB megabytes (default
CACHE_LIMIT_MB).
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
import time
import warnings
import zlib
from typing import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from modules.blocks import DownBlock2d, ResBlock2d, SameBlock2d, UpBlock2d
from modules.generator import FommGenerator

FORMAT_VERSION = 4            # bump when the quantization recipe changes (cached ranges go stale)
CALIBRATION_FRAMES = 8        # default number of driving frames calibration sees
INT8_NETWORKS = {'fomm': ('generator',), 'tps': ('dense_motion_network', 'inpainting_network')}
RANGE_KEYS = ('min_val', 'max_val')     # the observers' buffers: all a calibration produces


CACHE_LIMIT_MB = 100          # default bound of the cache: a calibration's ranges are ~50 KB for vox-256
                              # models, so about 2000 of them (graphs of earlier versions, 45-250 MB, go first)


def cache_limit_bytes() -> int:
    """The cache's bound in bytes: $KEYPOINT_ANIMATION_CACHE_MB megabytes, else CACHE_LIMIT_MB."""
    text = os.environ.get('KEYPOINT_ANIMATION_CACHE_MB')
    try:
        megabytes = float(text) if text else CACHE_LIMIT_MB
    except ValueError:
        warnings.warn(f'KEYPOINT_ANIMATION_CACHE_MB={text!r} is not a number of megabytes; the int8 cache keeps '
                      f'the default {CACHE_LIMIT_MB} MB')
        megabytes = CACHE_LIMIT_MB
    return int(max(0.0, megabytes) * 2 ** 20)


def prune_cache(keep: Iterable[str] = (), limit: int | None = None, folder: str | None = None) -> list[str]:
    """Remove the least recently used files (oldest access time: `Int8Networks.build` marks
    the ranges it uses) until the cache holds at most `limit` bytes (default
    `cache_limit_bytes()`); the `keep` paths stay whatever their size. Folders left empty go too
    (those of earlier versions held ONNX graphs).
    Returns the removed paths. Another process removing a file at the same time is fine."""
    folder = folder or cache_dir()
    limit = cache_limit_bytes() if limit is None else limit
    kept = {os.path.realpath(p) for p in keep}
    files = []
    for parent, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(parent, name)
            try:
                info = os.stat(path)
            except FileNotFoundError:
                continue
            files.append((info.st_atime, info.st_size, path))
    total = sum(size for _, size, _ in files)
    removed = []
    for _, size, path in sorted(files):          # oldest first
        if total <= limit:
            break
        if os.path.realpath(path) in kept:
            continue
        try:
            os.remove(path)
        except FileNotFoundError:
            pass
        total -= size
        removed.append(path)
    for parent in {os.path.dirname(p) for p in removed}:
        if parent != folder:
            try:
                os.rmdir(parent)          # only when empty
            except OSError:
                pass
    return removed


def _touch(path: str) -> None:
    """Mark a cached file as just used: its access time (set here whatever the mount's atime
    policy) orders `prune_cache`; the modification time stays that of its making."""
    try:
        os.utime(path, ns=(time.time_ns(), os.stat(path).st_mtime_ns))
    except OSError:
        pass


def cache_dir() -> str:
    """Where calibrated ranges are kept: $KEYPOINT_ANIMATION_CACHE, else
    $XDG_CACHE_HOME/keypoint-animation, else ~/.cache/keypoint-animation."""
    explicit = os.environ.get('KEYPOINT_ANIMATION_CACHE')
    if explicit:
        return explicit
    base = os.environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache')
    return os.path.join(base, 'keypoint-animation')


def cpu_has_vnni() -> bool:
    """Whether this CPU has int8 dot-product instructions (x86 VNNI); ARM's qnnpack needs no
    reduced range either."""
    try:
        return bool(torch.cpu._is_vnni_supported())
    except AttributeError:     # a private helper of torch.cpu; without it, read the flags
        try:
            with open('/proc/cpuinfo') as f:
                flags = next((line for line in f if line.startswith('flags')), '').split()
        except OSError:
            return False
        return 'avx512_vnni' in flags or 'avx_vnni' in flags


def quantized_engine() -> str:
    """The quantized kernels to use: 'x86' (oneDNN + FBGEMM), else what this build has."""
    engines = torch.backends.quantized.supported_engines
    return next((e for e in ('x86', 'fbgemm', 'onednn', 'qnnpack') if e in engines), engines[0])


def settings() -> dict:
    """The quantization recipe's knobs that this CPU decides; part of the cache key."""
    engine = quantized_engine()
    return {'format': FORMAT_VERSION, 'torch': torch.__version__, 'engine': engine,
            'reduce_range': engine != 'qnnpack' and not cpu_has_vnni()}


class Int8Unavailable(RuntimeError):
    """This torch build cannot run int8 convolutions on the CPU; one line for the user."""


def check_int8_kernels(engine: str) -> None:
    """Run one tiny quantized convolution, so that a torch without the eager int8 kernels (they
    are deprecated since torch 2.14) fails here with a sentence, not deep inside a network."""
    try:
        torch.backends.quantized.engine = engine
        conv = torch.ao.nn.quantized.Conv2d(1, 1, 1)
        conv(torch.quantize_per_tensor(torch.zeros(1, 1, 2, 2), 1.0, 0, torch.quint8))
    except (AttributeError, RuntimeError, NotImplementedError) as e:
        raise Int8Unavailable(f'--precision int8 needs PyTorch\'s quantized CPU kernels, which torch '
                              f'{torch.__version__} does not provide ({type(e).__name__}: {e}); use torch<=2.14 '
                              f'for int8, or --precision bf16/fp32') from None


def quiet_deprecations() -> None:
    """Hide the warnings torch 2.14 prints for what int8 uses: torch.ao.quantization's eager
    modules and the quantized tensor types (pytorch/pytorch#184982) are deprecated, with no
    replacement yet for int8 convolutions outside torch.compile (torchao's are Inductor passes).
    They still run; a torch without them fails in `Int8Networks.build` with one line that says so.
    Process-wide, for these two messages only: the quantize steps warn on every first call site."""
    warnings.filterwarnings('ignore', category=DeprecationWarning, message='torch.ao.quantization is deprecated')
    warnings.filterwarnings('ignore', category=UserWarning,
                            message='torch.quantize_per_tensor, torch.quantize_per_channel')


def qconfig(reduce_range: bool):
    from torch.ao.quantization import MinMaxObserver, PerChannelMinMaxObserver, QConfig
    return QConfig(activation=MinMaxObserver.with_args(dtype=torch.quint8, qscheme=torch.per_tensor_affine,
                                                       reduce_range=reduce_range),
                   weight=PerChannelMinMaxObserver.with_args(dtype=torch.qint8, qscheme=torch.per_channel_symmetric))


def fold_batch_norms(model: nn.Module) -> None:
    """Fold every eval-mode BatchNorm that directly follows a convolution (SameBlock2d and its
    Down/Up variants: conv -> norm -> relu) into that convolution, in place."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval
    for module in model.modules():
        if isinstance(module, SameBlock2d) and isinstance(module.norm, nn.BatchNorm2d):
            module.conv, module.norm = fuse_conv_bn_eval(module.conv, module.norm), nn.Identity()


def instance_norms_as_group_norms(model: nn.Module) -> None:
    """Replace every affine InstanceNorm2d (no running statistics) by the GroupNorm with one
    group per channel, in place: the same normalisation (outputs within 3e-5), but PyTorch's CPU
    InstanceNorm copies channels-last input to NCHW and back (43.7 ms against 2.3 ms for a
    64x256x256 map, one thread)."""
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.InstanceNorm2d and child.affine and not child.track_running_stats:
                group = nn.GroupNorm(child.num_features, child.num_features, eps=child.eps, affine=True)
                group.load_state_dict(child.state_dict())
                setattr(parent, name, group)


class QuantizedUnit(SameBlock2d):
    """A conv-norm-relu block (SameBlock2d, DownBlock2d or UpBlock2d) whose BatchNorm is folded,
    run as one quantized step: `conv` holds the upsampling, the convolution with its ReLU and
    the pooling, between one quantize and one dequantize."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class QuantizedResidual(ResBlock2d):
    """ResBlock2d (norm1-relu-conv1-norm2-relu-conv2, plus the input) with norm2 folded into
    conv1: `conv1` holds conv1 with its ReLU and conv2, one quantized step, so the map between
    the two convolutions stays uint8."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv1(F.relu(self.norm1(x))) + x


class QuantizedResidualStep(ResBlock2d):
    """ResBlock2d on uint8 maps, for a chain of quantized steps: norm1 with its ReLU, conv1 with
    its ReLU (norm2 folded in), conv2 and the residual add all take and give quantized tensors."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.skip.add(self.conv1(self.norm1(x)), x)


class ChainedDecodeGenerator(FommGenerator):
    """FommGenerator whose decoding (the residual bottleneck, the up blocks and the final
    convolution) is one quantized step, `chain`: quantized once, dequantized once."""

    def decode(self, features: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.chain(features))


class ChannelsLast(nn.Module):
    """The map in channels-last memory order, as the quantized convolutions give theirs: the
    residual adds then pair maps of one layout (mixed, quantized::add took 1.3 ms on a
    256x64x64 map, against 0.35). Placed after the quantize step: a uint8 map moves a quarter
    of the bytes (0.7 ms against 1.8)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last)


def block_steps(block: SameBlock2d) -> list[nn.Module]:
    """What a conv-norm-relu block (SameBlock2d, DownBlock2d, UpBlock2d) runs on uint8 maps: the
    upsampling (UpBlock2d), the convolution, with its ReLU fused where the norm is folded
    (Identity), and then a DownBlock2d's pooling. An unfolded norm and its ReLU stay outside."""
    from torch.ao.nn.intrinsic import ConvReLU2d
    folded = isinstance(block.norm, nn.Identity)
    steps = [ConvReLU2d(block.conv, nn.ReLU()) if folded else block.conv]
    if isinstance(block, UpBlock2d):
        steps.insert(0, nn.Upsample(scale_factor=2, mode='nearest'))
    if isinstance(block, DownBlock2d) and folded:
        steps.append(nn.AvgPool2d(2))
    return steps


def residual_convs(block: ResBlock2d) -> list[nn.Module]:
    """A BatchNorm ResBlock2d's two convolutions as uint8 steps, in place: norm2 folded into
    conv1 with the ReLU fused, then conv2; the block's own conv2 and norm2 become Identity."""
    from torch.ao.nn.intrinsic import ConvReLU2d
    from torch.nn.utils.fusion import fuse_conv_bn_eval
    steps = [ConvReLU2d(fuse_conv_bn_eval(block.conv1, block.norm2), nn.ReLU()), block.conv2]
    block.conv2, block.norm2 = nn.Identity(), nn.Identity()
    return steps


def quantized_decoder(model: nn.Module, config, keep_fp32: tuple[str, ...] = ()) -> None:
    """FOMM's generator, in place: its decoding runs on uint8 maps from the bottleneck's input
    to the final convolution's output. Block by block (`quantized_units`), each residual block
    dequantized its result, added its input, normalised and quantized again in float32, and
    each up block's output was dequantized for the next to quantize: 25 ms of a 95 ms frame
    (vox-256, two threads). The residual stream is then uint8 too, as in torchvision's
    quantized ResNets. Only with BatchNorm everywhere (folded into the up blocks already) and no
    `keep_fp32` entry naming one of its convolutions; otherwise the blocks go one by one."""
    from torch.ao.nn.intrinsic import BNReLU2d
    from torch.ao.nn.quantized import FloatFunctional
    from torch.ao.quantization import QuantWrapper
    if not isinstance(model, FommGenerator):
        return
    convs = [f'bottleneck.{name}.conv{i}' for name in model.bottleneck._modules for i in (1, 2)]
    convs += [f'up_blocks.{i}.conv' for i in range(len(model.up_blocks))] + ['final']
    if (any(k in path for k in keep_fp32 for path in convs)
            or not all(isinstance(b.norm1, nn.BatchNorm2d) and isinstance(b.norm2, nn.BatchNorm2d)
                       for b in model.bottleneck)
            or not all(isinstance(b.norm, nn.Identity) for b in model.up_blocks)):
        return
    steps = []
    for block in model.bottleneck:
        block.norm1 = BNReLU2d(block.norm1, nn.ReLU())
        block.conv1, block.skip = nn.Sequential(*residual_convs(block)), FloatFunctional()
        block.__class__ = QuantizedResidualStep
        steps.append(block)
    for block in model.up_blocks:
        block.conv = nn.Sequential(*block_steps(block))
        block.__class__ = QuantizedUnit
        steps.append(block)
    model.chain = QuantWrapper(nn.Sequential(ChannelsLast(), *steps, model.final))
    model.chain.qconfig = config
    del model.bottleneck, model.up_blocks, model.final
    model.__class__ = ChainedDecodeGenerator


def quantized_units(model: nn.Module, config, keep_fp32: tuple[str, ...] = ()) -> None:
    """Put each block's quantized work in one QuantWrapper, in place, so that what runs between
    its convolutions stays in uint8 (the float32 steps between them took a third of FOMM's int8
    generator: dequantize, ReLU, quantize, BatchNorm):

    - conv-norm-relu blocks: an UpBlock2d quantizes before its nearest upsampling rather than
      after (the upsampling then moves a quarter of the bytes, in uint8: 0.5 ms against 15 ms
      for a 128x128x128 map, one thread, channels-last). Where the norm was folded (BatchNorm),
      the ReLU runs inside the quantized convolution and a DownBlock2d pools in uint8 before
      dequantizing (a quarter of the bytes again); an InstanceNorm (TPSMM) stays float32
      between the convolution and the ReLU.
    - ResBlock2d with BatchNorm: norm2 folds into conv1, and conv1 (with its ReLU) feeds conv2
      in uint8; norm1 and the ReLU before conv1 stay float32 (the residual input is unnormalised).
    Blocks whose convolution a `keep_fp32` entry names are left alone."""
    from torch.ao.quantization import QuantWrapper

    def wrap(*steps: nn.Module) -> nn.Module:
        wrapper = QuantWrapper(steps[0] if len(steps) == 1 else nn.Sequential(*steps))
        wrapper.qconfig = config
        return wrapper

    wrapped = {id(m) for w in model.modules() if isinstance(w, QuantWrapper) for m in w.modules()}
    for path, block in list(model.named_modules()):
        conv_path = f'{path}.conv' if path else 'conv'
        if id(block) in wrapped:
            continue
        if isinstance(block, SameBlock2d) and not any(k in conv_path for k in keep_fp32):
            block.conv = wrap(*block_steps(block))
            if isinstance(block.norm, nn.Identity):
                block.__class__ = QuantizedUnit
            elif isinstance(block, UpBlock2d):
                block.__class__ = SameBlock2d     # its forward without the upsampling: conv -> norm -> relu
        elif (isinstance(block, ResBlock2d) and isinstance(block.norm2, nn.BatchNorm2d)
              and not any(k in f'{path}.conv{i}' for k in keep_fp32 for i in (1, 2))):
            block.conv1 = wrap(*residual_convs(block))
            block.__class__ = QuantizedResidual


def observed_copy(model: nn.Module, reduce_range: bool, keep_fp32: tuple[str, ...] = ()) -> nn.Module:
    """An eval-mode copy of `model` with BatchNorms folded and every Conv2d between a quantize
    and a dequantize step, observers in place: run it in fp32 on calibration inputs, then
    `torch.ao.quantization.convert` it. Convolutions whose qualified name (e.g. 'final',
    'dense_motion_network.occlusion.0') contains a `keep_fp32` entry stay float32."""
    from torch.ao.quantization import QuantWrapper, prepare
    quiet_deprecations()
    model = copy.deepcopy(model).eval()
    for conv in model.modules():
        if isinstance(conv, nn.Conv2d):      # quantization reads weights per output channel: NCHW
            conv.weight.data = conv.weight.data.contiguous()
    fold_batch_norms(model)
    instance_norms_as_group_norms(model)
    config = qconfig(reduce_range)
    quantized_decoder(model, config, keep_fp32)
    quantized_units(model, config, keep_fp32)
    wrapped = {id(m) for w in model.modules() if isinstance(w, QuantWrapper) for m in w.modules()}
    for path, parent in list(model.named_modules()):
        if id(parent) in wrapped:
            continue
        for name, child in list(parent.named_children()):
            qualified = f'{path}.{name}' if path else name
            if type(child) is nn.Conv2d and not any(k in qualified for k in keep_fp32):
                wrapper = QuantWrapper(child)
                wrapper.qconfig = config
                setattr(parent, name, wrapper)
    model.eval()          # the new containers start in training mode (and BNReLU2d sets its BatchNorm's)
    return prepare(model, inplace=True)      # `model` is already this function's own copy


def keep_unobserved_in_fp32(model: nn.Module) -> None:
    """Leave in float32 the convolutions calibration never ran (FOMM's encoder, which runs once
    per video from the fp32 networks): `convert` swaps only modules that have a qconfig."""
    from torch.ao.quantization import QuantWrapper
    for wrapper in model.modules():
        if isinstance(wrapper, QuantWrapper) and torch.isinf(wrapper.quant.activation_post_process.min_val).all():
            for module in wrapper.modules():
                module.qconfig = None


def ranges_of(observed: dict[str, nn.Module]) -> dict[str, torch.Tensor]:
    """The calibrated ranges of observed copies, as a flat state dict."""
    return {f'{name}.{key}': value.clone() for name, model in observed.items()
            for key, value in model.state_dict().items() if key.rsplit('.', 1)[-1] in RANGE_KEYS}


def load_ranges(observed: dict[str, nn.Module], ranges: dict[str, torch.Tensor]) -> None:
    for name, model in observed.items():
        mine = {k[len(name) + 1:]: v for k, v in ranges.items() if k.startswith(name + '.')}
        expected = {k for k in model.state_dict() if k.rsplit('.', 1)[-1] in RANGE_KEYS}
        if set(mine) != expected:
            raise ValueError(f'cached int8 ranges do not match the {name} network')
        model.load_state_dict(mine, strict=False)


def weights_digest(models: dict[str, nn.Module]) -> bytes:
    """A digest of every weight and buffer of `models`: names, shapes and a CRC-32 of each
    tensor's bytes. CRC-32 reads 3.7 GB/s here against SHA-256's 1.3 (FOMM vox-256's networks
    are 240 MB: 0.06 s against 0.19 s on every int8 run); a cache key needs no protection
    against forgery, and a model that changes leaves the CRC of a changed tensor unchanged once
    in 4 billion."""
    digest = hashlib.sha256()
    for name in sorted(models):
        for key, value in sorted(models[name].state_dict().items()):
            value = value.detach().cpu()
            if value.dim() == 4 and value.is_contiguous(memory_format=torch.channels_last):
                value = value.permute(0, 2, 3, 1)      # channels-last weights in memory order: no copy
            crc = zlib.crc32(memoryview(value.contiguous().view(-1).view(torch.uint8).numpy()))
            digest.update(f'{name}.{key}{tuple(value.shape)}{value.dtype}:{crc:08x};'.encode())
    return digest.digest()


def calibration_key(models: dict[str, nn.Module], inputs: Iterable[torch.Tensor | None], options: dict) -> str:
    """A short hash of what a calibration's ranges depend on: every network that runs in it (the
    keypoint detector too), the recipe, the calibration's options and its input pixels."""
    digest = hashlib.sha256(weights_digest(models))
    digest.update(json.dumps({**settings(), **options}, sort_keys=True, default=str).encode())
    for item in inputs:           # tensors made from pixels (or None)
        if item is None:
            digest.update(b'none')
            continue
        digest.update(f'{tuple(item.shape)}'.encode())
        digest.update(item.detach().cpu().float().contiguous().numpy().tobytes())
    return digest.hexdigest()[:24]


class Int8Networks:
    """Quantized copies of one model's per-frame networks.

    `build(key, calibrate)` makes observed copies, fills their ranges from the cache or by
    calling `calibrate(observed)` (which runs them in fp32 on calibration inputs), then converts
    them; afterwards `networks` maps each name of INT8_NETWORKS[family] to its quantized copy,
    and `timings` says what the set-up cost."""

    def __init__(self, models: dict[str, nn.Module], family: str, keep_fp32: tuple[str, ...] = ()):
        self.models, self.family, self.keep_fp32 = models, family, tuple(keep_fp32)
        self.names = INT8_NETWORKS[family]
        self.networks: dict[str, nn.Module] | None = None
        self.timings: dict = {}

    def observed_copies(self) -> dict[str, nn.Module]:
        quiet_deprecations()
        reduce_range = settings()['reduce_range']
        return {name: observed_copy(self.models[name], reduce_range, self.keep_fp32) for name in self.names}

    def build(self, key: str, calibrate: Callable[[dict[str, nn.Module]], None]) -> None:
        from torch.ao.quantization import convert

        from media.files import atomic_path
        quiet_deprecations()
        recipe = settings()
        start = time.perf_counter()
        check_int8_kernels(recipe['engine'])
        observed = self.observed_copies()
        path = os.path.join(cache_dir(), f'int8-ranges-{key}.pt')
        ranges = None
        if os.path.exists(path):
            try:
                ranges = torch.load(path, map_location='cpu', weights_only=True)
                load_ranges(observed, ranges)
            except Exception:       # unreadable or stale: calibrate fresh copies and replace it
                ranges, observed = None, self.observed_copies()
        cached = ranges is not None
        if not cached:
            calibrate(observed)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with atomic_path(path) as tmp:
                torch.save(ranges_of(observed), tmp)
        for model in observed.values():
            keep_unobserved_in_fp32(model)
        self.networks = {name: convert(model, inplace=True) for name, model in observed.items()}
        _touch(path)
        self.timings = {'calibrate_s': time.perf_counter() - start, 'cached': cached, 'path': path,
                        'pruned': prune_cache(keep=(path,))}
