"""Convolutional building blocks shared by both families.

FOMM normalises with BatchNorm (turned into SyncBatchNorm for distributed training), TPSMM with
affine InstanceNorm; every block therefore takes a `norm` factory and otherwise is the same code.
Parameter names (`conv`, `norm`, `conv1`, ...) are those of the official checkpoints.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

NormFactory = Callable[[int], nn.Module]


def batch_norm(channels: int) -> nn.Module:
    return nn.BatchNorm2d(channels, affine=True)


def instance_norm(channels: int) -> nn.Module:
    return nn.InstanceNorm2d(channels, affine=True)


class ResBlock2d(nn.Module):
    """Pre-activation residual block (norm-relu-conv twice), channels preserved."""

    def __init__(self, in_features: int, kernel_size=3, padding=1, norm: NormFactory = batch_norm):
        super().__init__()
        self.conv1 = nn.Conv2d(in_features, in_features, kernel_size, padding=padding)
        self.conv2 = nn.Conv2d(in_features, in_features, kernel_size, padding=padding)
        self.norm1 = norm(in_features)
        self.norm2 = norm(in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(F.relu(self.norm1(x)))
        out = self.conv2(F.relu(self.norm2(out)))
        return out + x


class SameBlock2d(nn.Module):
    """conv-norm-relu at the same resolution."""

    def __init__(self, in_features: int, out_features: int, kernel_size=3, padding=1,
                 norm: NormFactory = batch_norm):
        super().__init__()
        self.conv = nn.Conv2d(in_features, out_features, kernel_size, padding=padding)
        self.norm = norm(out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.norm(self.conv(x)))


class DownBlock2d(SameBlock2d):
    """conv-norm-relu, then 2x2 average pooling: halves the resolution."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(super().forward(x), kernel_size=2)


class UpBlock2d(SameBlock2d):
    """Nearest 2x upsampling, then conv-norm-relu: doubles the resolution."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.interpolate(x, scale_factor=2))


def level_features(block_expansion: int, max_features: int, level: int) -> int:
    return min(max_features, block_expansion * (2 ** level))


class Encoder(nn.Module):
    """U-Net encoder: returns the input and every downsampled feature map, finest first."""

    def __init__(self, block_expansion: int, in_features: int, num_blocks: int = 3, max_features: int = 256,
                 norm: NormFactory = batch_norm):
        super().__init__()
        self.down_blocks = nn.ModuleList(
            DownBlock2d(in_features if i == 0 else level_features(block_expansion, max_features, i),
                        level_features(block_expansion, max_features, i + 1), norm=norm)
            for i in range(num_blocks))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = [x]
        for block in self.down_blocks:
            outs.append(block(outs[-1]))
        return outs


class Decoder(nn.Module):
    """U-Net decoder with skip concatenation.

    `out_channels[i]` is the channel count of the i-th decoder output (after concatenating the
    skip), coarsest first; `out_filters` the final one.
    """

    def __init__(self, block_expansion: int, in_features: int, num_blocks: int = 3, max_features: int = 256,
                 norm: NormFactory = batch_norm):
        super().__init__()
        blocks, self.out_channels = [], []
        for i in reversed(range(num_blocks)):
            in_filters = (1 if i == num_blocks - 1 else 2) * level_features(block_expansion, max_features, i + 1)
            out_filters = level_features(block_expansion, max_features, i)
            blocks.append(UpBlock2d(in_filters, out_filters, norm=norm))
            skip = in_features if i == 0 else out_filters
            self.out_channels.append(out_filters + skip)
        self.up_blocks = nn.ModuleList(blocks)
        self.out_filters = self.out_channels[-1]

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        """features: the encoder's outputs, finest first. Returns every decoder level, coarsest first."""
        out = features[-1]
        outs = []
        for block, skip in zip(self.up_blocks, reversed(features[:-1])):
            out = torch.cat([block(out), skip], dim=1)
            outs.append(out)
        return outs


class Hourglass(nn.Module):
    """Encoder-decoder (U-Net). `forward` gives the finest output; `pyramid` every decoder level."""

    def __init__(self, block_expansion: int, in_features: int, num_blocks: int = 3, max_features: int = 256,
                 norm: NormFactory = batch_norm):
        super().__init__()
        self.encoder = Encoder(block_expansion, in_features, num_blocks, max_features, norm)
        self.decoder = Decoder(block_expansion, in_features, num_blocks, max_features, norm)
        self.out_filters = self.decoder.out_filters

    def pyramid(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.decoder(self.encoder(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pyramid(x)[-1]


class AntiAliasInterpolation2d(nn.Module):
    """Gaussian blur then subsampling by an integer factor, so downscaling does not alias.

    sigma = (1/scale - 1) / 2 with a kernel of 2*round(4 sigma)+1 taps, as both references. The
    kernel is a registered buffer named `weight` because official checkpoints carry it.

    Subsampling: FOMM slices every 1/scale-th pixel (its current code; its first release called
    `interpolate`); TPSMM calls nearest `interpolate`, which picks the same pixels but rounds the
    output size down instead of up when the size is not a multiple of 1/scale.
    `nearest_resize=True` keeps TPSMM's sizes.
    """

    def __init__(self, channels: int, scale: float, nearest_resize: bool = False):
        super().__init__()
        self.scale = scale
        self.nearest_resize = nearest_resize
        self.groups = channels
        sigma = (1 / scale - 1) / 2
        size = 2 * round(sigma * 4) + 1
        self.ka = size // 2
        self.kb = self.ka - 1 if size % 2 == 0 else self.ka
        self.step = int(1 / scale)
        # Computed on the CPU, then moved: under `torch.device('meta')` (networks built without
        # memory, loading/checkpoint.py) arange runs PyTorch's Python reference, which imports
        # torch._dynamo (1.8 s).
        axis = torch.arange(size, dtype=torch.float32, device='cpu')
        if sigma > 0:
            g = torch.exp(-(axis - (size - 1) / 2) ** 2 / (2 * sigma ** 2))
        else:
            g = torch.ones(1, device='cpu')
        kernel = g.view(-1, 1) * g.view(1, -1)
        kernel = kernel / kernel.sum()
        kernel = kernel.view(1, 1, size, size).repeat(channels, 1, 1, 1)
        self.register_buffer('weight', kernel.to(torch.get_default_device()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.scale == 1.0:
            return x
        out = F.pad(x, (self.ka, self.kb, self.ka, self.kb))
        if abs(self.step * self.scale - 1) < 1e-6:
            # Blur only the pixels that are kept: the strided convolution computes the same sums
            # at the same places as blurring everything and slicing (1/step^2 of the work; the
            # depthwise 13x13 blur of a 256x256 frame took 5.6 ms, this 1.0 ms).
            out = F.conv2d(out, weight=self.weight, groups=self.groups, stride=self.step)
            if self.nearest_resize:     # nearest `interpolate` rounds the size down, slicing up
                return out[:, :, :int(x.shape[2] * self.scale), :int(x.shape[3] * self.scale)]
            return out
        out = F.conv2d(out, weight=self.weight, groups=self.groups)
        if self.nearest_resize:
            return F.interpolate(out, scale_factor=(self.scale, self.scale))
        return out[:, :, ::self.step, ::self.step]
