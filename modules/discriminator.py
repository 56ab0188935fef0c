"""FOMM's multi-scale patch discriminator (pix2pix-style, used by the *-adv configs)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import level_features
from .geometry import keypoints_to_gaussian


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
            # The classic hook-based spectral norm: its parameter names (weight_orig, weight_u,
            # weight_v) are those of the official checkpoints.
            self.conv = nn.utils.spectral_norm(self.conv)
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
            self.conv = nn.utils.spectral_norm(self.conv)
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

    def forward(self, pyramid: dict, kp: dict | None = None) -> dict:
        out = {}
        for key, disc in self.discs.items():
            scale = key.replace('-', '.')
            feature_maps, prediction = disc(pyramid['prediction_' + scale], kp)
            out['feature_maps_' + scale] = feature_maps
            out['prediction_map_' + scale] = prediction
        return out
