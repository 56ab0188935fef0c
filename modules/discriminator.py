"""FOMM's multi-scale patch discriminator (pix2pix-style, used by the *-adv configs)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.spectral_norm import SpectralNorm

from .blocks import level_features
from .geometry import keypoints_to_gaussian


class EagerPowerIteration(SpectralNorm):
    """torch's hook-based spectral norm whose power iteration runs outside torch.compile's graphs.

    torch's hook updates `weight_u` and `weight_v` in place and normalises the weight with copies
    of them. Compiled (train.py --compile; torch 2.14), that update becomes a mutation of graph
    inputs, and the partitioner recomputes u and v in the backward from the buffers, which by
    then hold the updated values: the gradient of `weight_orig` is wrong, and a second call before
    the backward (the discriminator sees generated, then real images) fails with "modified by an
    inplace operation" (size [1]: `weight_u` of the one-channel output convolution). Here the
    update runs eagerly and the graph gets fresh copies that nothing changes before the backward:
    `power_iterations` makes them for a whole network ahead of its forward; a layer called
    without them makes its own (a graph break). The arithmetic, the parameter and buffer names
    and the state-dict hooks are torch's."""

    copies: tuple[torch.Tensor, torch.Tensor] | None = None      # (u, v) for the next training call

    def compute_weight(self, module: nn.Module, do_power_iteration: bool) -> torch.Tensor:
        if do_power_iteration:
            u, v = self.copies if self.copies is not None else self.power_iteration(module)
            self.copies = None
        else:
            u, v = getattr(module, self.name + '_u'), getattr(module, self.name + '_v')
        weight = getattr(module, self.name + '_orig')
        sigma = torch.dot(u, torch.mv(self.reshape_weight_to_matrix(weight), v))
        return weight / sigma

    def power_iteration(self, module: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
        """Update the buffers in place (DataParallel replicas share them) and return copies."""
        weight_mat = self.reshape_weight_to_matrix(getattr(module, self.name + '_orig'))
        u, v = getattr(module, self.name + '_u'), getattr(module, self.name + '_v')
        with torch.no_grad():
            for _ in range(self.n_power_iterations):
                v = F.normalize(torch.mv(weight_mat.t(), u), dim=0, eps=self.eps, out=v)
                u = F.normalize(torch.mv(weight_mat, v), dim=0, eps=self.eps, out=u)
        return u.clone(memory_format=torch.contiguous_format), v.clone(memory_format=torch.contiguous_format)


def spectral_hooks(network: nn.Module):
    """(layer, EagerPowerIteration hook) for every spectrally normalised layer of `network`."""
    for module in network.modules():
        for hook in module._forward_pre_hooks.values():
            if isinstance(hook, EagerPowerIteration):
                yield module, hook


def power_iterations(network: nn.Module) -> None:
    """Run the power iteration of every spectral-norm layer in training mode for its next call,
    eagerly. First thing in a forward, this keeps the compiled rest whole: a graph break inside
    the layers' loops would make Dynamo skip the loop's whole frame and compile each layer alone,
    once per shape."""
    for module, hook in spectral_hooks(network):
        if module.training:
            hook.copies = hook.power_iteration(module)


def run_power_iterations_outside_graphs() -> None:
    """Mark `EagerPowerIteration.power_iteration` and `power_iterations` with
    `torch.compiler.disable`, once, before anything with spectral norm is compiled
    (`MultiScaleDiscriminator.compile` calls it; compiling a layer of `spectral_norm` alone, call
    it first). Not at import: `torch.compiler.disable` imports torch._dynamo, 1.7 s added to the
    start of every process, animation included, that never compiles a discriminator."""
    global power_iterations
    if not getattr(power_iterations, '_outside_graphs', False):
        power_iterations = torch.compiler.disable(power_iterations)
        power_iterations._outside_graphs = True
        EagerPowerIteration.power_iteration = torch.compiler.disable(EagerPowerIteration.power_iteration)


def spectral_norm(module: nn.Module) -> nn.Module:
    """`nn.utils.spectral_norm(module)` (its names, weight_orig, weight_u and weight_v, are those of
    the official checkpoints) with the power iteration of `EagerPowerIteration`."""
    nn.utils.spectral_norm(module)
    hook = next(h for h in module._forward_pre_hooks.values() if isinstance(h, SpectralNorm))
    hook.__class__ = EagerPowerIteration       # the state-dict hooks hold this same object
    return module


def scale_key(scale) -> str:
    """Module-dict key for a pyramid scale: '0.5' -> '0-5' (dots are not allowed in module names)."""
    return str(scale).replace('.', '-')


class DiscriminatorBlock(nn.Module):
    """4x4 conv (optionally spectrally normalised), instance norm, leaky ReLU, optional 2x2 pooling."""

    def __init__(self, in_features: int, out_features: int, norm: bool = False, pool: bool = False,
                 sn: bool = False):
        super().__init__()
        self.conv = nn.Conv2d(in_features, out_features, kernel_size=4)
        if sn:
            self.conv = spectral_norm(self.conv)
        self.norm = nn.InstanceNorm2d(out_features, affine=True) if norm else None
        self.pool = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        if self.norm is not None:
            out = self.norm(out)
        out = F.leaky_relu(out, 0.2)
        return F.avg_pool2d(out, 2) if self.pool else out


class Discriminator(nn.Module):
    """image (B, C, H, W) [+ keypoint heatmaps] -> (list of feature maps, patch logits (B, 1, h, w))."""

    def __init__(self, num_channels: int = 3, block_expansion: int = 64, num_blocks: int = 4,
                 max_features: int = 512, sn: bool = False, use_kp: bool = False, num_kp: int = 10,
                 kp_variance: float = 0.01):
        super().__init__()
        self.down_blocks = nn.ModuleList(
            DiscriminatorBlock(num_channels + num_kp * use_kp if i == 0 else level_features(block_expansion, max_features, i),
                               level_features(block_expansion, max_features, i + 1),
                               norm=i != 0, pool=i != num_blocks - 1, sn=sn)
            for i in range(num_blocks))
        self.conv = nn.Conv2d(level_features(block_expansion, max_features, num_blocks), 1, kernel_size=1)
        if sn:
            self.conv = spectral_norm(self.conv)
        self.use_kp = use_kp
        self.kp_variance = kp_variance

    def forward(self, x: torch.Tensor, kp: dict | None = None):
        out = x
        if self.use_kp:
            out = torch.cat([out, keypoints_to_gaussian(kp['value'], x.shape[2:], self.kp_variance)], dim=1)
        feature_maps = []
        for block in self.down_blocks:
            out = block(out)
            feature_maps.append(out)
        return feature_maps, self.conv(out)


class MultiScaleDiscriminator(nn.Module):
    """One discriminator per pyramid scale; reads `prediction_<scale>` from an image pyramid dict
    and returns `feature_maps_<scale>` and `prediction_map_<scale>`."""

    def __init__(self, scales=(1,), num_channels: int = 3, block_expansion: int = 64, num_blocks: int = 4,
                 max_features: int = 512, sn: bool = False, use_kp: bool = False, num_kp: int = 10,
                 kp_variance: float = 0.01, estimate_jacobian: bool = False):
        super().__init__()
        self.scales = list(scales)
        self.discs = nn.ModuleDict({scale_key(s): Discriminator(num_channels, block_expansion, num_blocks, max_features,
                                                                 sn, use_kp, num_kp, kp_variance)
                                    for s in self.scales})

    def compile(self, *args, **kwargs) -> None:
        run_power_iterations_outside_graphs()
        super().compile(*args, **kwargs)

    def forward(self, pyramid: dict, kp: dict | None = None) -> dict:
        if self.training:
            power_iterations(self)
        out = {}
        for key, disc in self.discs.items():
            scale = key.replace('-', '.')
            feature_maps, prediction = disc(pyramid['prediction_' + scale], kp)
            out['feature_maps_' + scale] = feature_maps
            out['prediction_map_' + scale] = prediction
        return out
