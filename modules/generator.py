"""Image generators: encode the source, warp its features by the dense motion, mask occluded
parts, decode. FOMM's OcclusionAwareGenerator (sec. 3.3) and TPSMM's InpaintingNetwork (sec. 3.4)
share the encoder/decoder blocks and the warping operation."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import DownBlock2d, ResBlock2d, SameBlock2d, UpBlock2d, level_features, instance_norm
from .dense_motion import FommDenseMotionNetwork
from .geometry import warp


def resize_like(mask: torch.Tensor, features: torch.Tensor, align_corners: bool) -> torch.Tensor:
    """Bilinearly resize an occlusion map (B, 1, h, w) to the features' resolution when needed."""
    if mask.shape[2:] != features.shape[2:]:
        mask = F.interpolate(mask, size=features.shape[2:], mode='bilinear', align_corners=align_corners)
    return mask


class FommGenerator(nn.Module):
    """source (B, C, H, W) + keypoints -> {'prediction', 'deformed', 'mask', 'sparse_deformed',
    'occlusion_map' (when estimated)}. The dense motion network lives inside, as in FOMM's
    checkpoints (`generator.dense_motion_network.*`)."""

    def __init__(self, num_channels: int, num_kp: int, block_expansion: int, max_features: int,
                 num_down_blocks: int, num_bottleneck_blocks: int, estimate_occlusion_map: bool = False,
                 dense_motion_params: dict | None = None, estimate_jacobian: bool = False):
        super().__init__()
        self.dense_motion_network = (FommDenseMotionNetwork(num_kp=num_kp, num_channels=num_channels,
                                                            estimate_occlusion_map=estimate_occlusion_map,
                                                            **dense_motion_params)
                                     if dense_motion_params is not None else None)
        feats = lambda level: level_features(block_expansion, max_features, level)  # noqa: E731
        self.first = SameBlock2d(num_channels, block_expansion, kernel_size=7, padding=3)
        self.down_blocks = nn.ModuleList(DownBlock2d(feats(i), feats(i + 1)) for i in range(num_down_blocks))
        self.up_blocks = nn.ModuleList(UpBlock2d(feats(num_down_blocks - i), feats(num_down_blocks - i - 1))
                                       for i in range(num_down_blocks))
        self.bottleneck = nn.Sequential()
        for i in range(num_bottleneck_blocks):
            self.bottleneck.add_module(f'r{i}', ResBlock2d(feats(num_down_blocks)))
        self.final = nn.Conv2d(block_expansion, num_channels, kernel_size=7, padding=3)
        self.estimate_occlusion_map = estimate_occlusion_map
        self.num_channels = num_channels

    def encode(self, source_image: torch.Tensor) -> torch.Tensor:
        """Source features (B, F, H/2^n, W/2^n); independent of the driving frame, so animation
        computes them once per source."""
        out = self.first(source_image)
        for block in self.down_blocks:
            out = block(out)
        return out

    def decode(self, features: torch.Tensor) -> torch.Tensor:
        out = self.bottleneck(features)
        for block in self.up_blocks:
            out = block(out)
        return torch.sigmoid(self.final(out))

    def forward(self, source_image: torch.Tensor, kp_driving: dict, kp_source: dict,
                source_features: torch.Tensor | None = None) -> dict:
        out = self.encode(source_image) if source_features is None else source_features
        result = {}
        if self.dense_motion_network is not None:
            motion = self.dense_motion_network(source_image=source_image, kp_driving=kp_driving, kp_source=kp_source)
            result['mask'] = motion['mask']
            result['sparse_deformed'] = motion['sparse_deformed']
            out = warp(out, motion['deformation'])
            if 'occlusion_map' in motion:
                result['occlusion_map'] = motion['occlusion_map']
                out = out * resize_like(motion['occlusion_map'], out, align_corners=False)
            result['deformed'] = warp(source_image, motion['deformation'])
        result['prediction'] = self.decode(out)
        return result


class TpsInpaintingNetwork(nn.Module):
    """source (B, C, H, W) + dense motion dict -> {'prediction', 'deformed', 'warped_encoder_maps',
    'occlusion_map', 'contribution_maps', 'deformed_source'}.

    Every encoder level is warped and masked by the occlusion map of its resolution; decoder levels
    concatenate them (skip connections) and the output is blended with the warped source where
    the finest occlusion map says the source is visible (TPSMM eq. 9).
    """

    def __init__(self, num_channels: int, block_expansion: int, max_features: int, num_down_blocks: int,
                 multi_mask: bool = True, **unused):
        super().__init__()
        self.num_down_blocks = num_down_blocks
        self.multi_mask = multi_mask
        feats = lambda level: level_features(block_expansion, max_features, level)  # noqa: E731
        self.first = SameBlock2d(num_channels, block_expansion, kernel_size=7, padding=3, norm=instance_norm)
        down, up, res = [], [], []
        for i in range(num_down_blocks):
            decoder_in = feats(i + 1) * (1 if i == num_down_blocks - 1 else 2)
            down.append(DownBlock2d(feats(i), feats(i + 1), norm=instance_norm))
            up.append(UpBlock2d(decoder_in, feats(i), norm=instance_norm))
            res += [ResBlock2d(decoder_in, norm=instance_norm), ResBlock2d(decoder_in, norm=instance_norm)]
        self.down_blocks = nn.ModuleList(down)
        self.up_blocks = nn.ModuleList(up[::-1])          # coarsest level first
        self.resblock = nn.ModuleList(res[::-1])
        self.final = nn.Conv2d(block_expansion, num_channels, kernel_size=7, padding=3)
        self.num_channels = num_channels

    def encode(self, source_image: torch.Tensor) -> list[torch.Tensor]:
        """Encoder maps, finest first: [first, down_1, ..., down_n]. Computed once per source."""
        maps = [self.first(source_image)]
        for block in self.down_blocks:
            maps.append(block(maps[-1]))
        return maps

    def occlude(self, features: torch.Tensor, occlusion: torch.Tensor) -> torch.Tensor:
        if not self.multi_mask:
            occlusion = resize_like(occlusion, features, align_corners=True)
        return features * occlusion

    def forward(self, source_image: torch.Tensor, dense_motion: dict,
                encoder_maps: list[torch.Tensor] | None = None) -> dict:
        encoder_maps = self.encode(source_image) if encoder_maps is None else encoder_maps
        deformation = dense_motion['deformation']
        occlusion = dense_motion['occlusion_map']
        # Warp-loss inputs: the same warped maps computed from detached features, so that loss
        # trains only the motion. Without autograd both are the same numbers: no extra work.
        warped_maps = []

        def warp_level(features: torch.Tensor, level: int) -> torch.Tensor:
            mask = occlusion[level if self.multi_mask else 0]
            if not torch.is_grad_enabled():
                warped = self.occlude(warp(features, deformation, True), mask)
                warped_maps.append(warped)
                return warped
            # Same op order as the reference (detached first): gradients reaching `deformation`
            # from several uses are summed in graph order, which the parity fixtures pin down.
            warped_detached = warp(features.detach(), deformation, True)
            warped = warp(features, deformation, True)
            warped_maps.append(self.occlude(warped_detached, mask.detach()))
            return self.occlude(warped, mask)

        out = warp_level(encoder_maps[-1], 0)
        skip = out
        for i in range(self.num_down_blocks):
            out = self.resblock[2 * i + 1](self.resblock[2 * i](out))
            out = self.up_blocks[i](out)
            skip = warp_level(encoder_maps[-(i + 2)], i + 1)
            if i < self.num_down_blocks - 1:
                out = torch.cat([out, skip], dim=1)

        deformed = warp(source_image, deformation, True)
        visible = occlusion[-1]
        if not self.multi_mask:
            visible = resize_like(visible, out, align_corners=True)
        out = out * (1 - visible) + skip
        out = torch.sigmoid(self.final(out))
        prediction = out * (1 - visible) + deformed * visible
        return {'contribution_maps': dense_motion['contribution_maps'],
                'deformed_source': dense_motion['deformed_source'],
                'occlusion_map': occlusion, 'deformed': deformed, 'prediction': prediction,
                'warped_encoder_maps': warped_maps}

    def encode_driving(self, driving_image: torch.Tensor, occlusion: list[torch.Tensor]) -> list[torch.Tensor]:
        """Target of TPSMM's warp loss (eq. 11): the driving frame's own encoder maps, masked by
        the occlusion maps and detached, finest first (so it pairs with warped maps reversed)."""
        out = self.first(driving_image)
        maps = [self.occlude(out.detach(), occlusion[-1].detach())]
        for i, block in enumerate(self.down_blocks):
            out = block(out.detach())
            mask = occlusion[len(occlusion) - 2 - i] if self.multi_mask else occlusion[0]
            maps.append(self.occlude(out.detach(), mask.detach()))
        return maps
