"""Dense motion networks: from keypoints to a dense backward motion field plus occlusion.

Both families do the same three steps and share the code for each:
  1. candidate motions, one per keypoint (FOMM: local affine, eq. 4) or per TPS group
     (TPSMM: thin-plate splines, eq. 2), plus a background motion (identity, or TPSMM's affine);
  2. an hourglass sees the source warped by each candidate and the keypoint heatmaps, and
     predicts soft masks over the candidates (FOMM eq. 5, TPSMM eq. 6);
  3. the masks' weighted sum of candidates is the dense motion; occlusion map(s) come from the
     same hourglass features.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import AntiAliasInterpolation2d, Hourglass, UpBlock2d, batch_norm, instance_norm
from .geometry import (combine_motions, homogeneous_affine, keypoints_to_gaussian, local_affine_motions,
                       make_coordinate_grid, tps_motions)


def heatmap_difference(kp_driving: torch.Tensor, kp_source: torch.Tensor, spatial_size, kp_variance: float):
    """Gaussian(driving) - Gaussian(source) per keypoint, with a zero map first for the
    background: (B, K, 2) -> (B, K+1, H, W)."""
    heatmap = (keypoints_to_gaussian(kp_driving, spatial_size, kp_variance)
               - keypoints_to_gaussian(kp_source, spatial_size, kp_variance))
    return torch.cat([torch.zeros_like(heatmap[:, :1]), heatmap], dim=1)


def warp_per_motion(image: torch.Tensor, motions: torch.Tensor) -> torch.Tensor:
    """Warp the image once per candidate motion: (B, C, H, W), (B, M, H, W, 2) -> (B, M, C, H, W)."""
    b, m, h, w, _ = motions.shape
    repeated = image.unsqueeze(1).expand(b, m, *image.shape[1:]).reshape(b * m, -1, h, w)
    warped = F.grid_sample(repeated, motions.reshape(b * m, h, w, 2), align_corners=True)
    return warped.view(b, m, -1, h, w)


class FommDenseMotionNetwork(nn.Module):
    """FOMM sec. 3.2. Returns 'sparse_deformed' (B, K+1, C, h, w), 'mask' (B, K+1, h, w),
    'deformation' (B, h, w, 2) and, when estimated, 'occlusion_map' (B, 1, h, w), where (h, w) is
    the input size times `scale_factor`."""

    def __init__(self, block_expansion: int, num_blocks: int, max_features: int, num_kp: int,
                 num_channels: int, estimate_occlusion_map: bool = False, scale_factor: float = 1,
                 kp_variance: float = 0.01):
        super().__init__()
        self.hourglass = Hourglass(block_expansion, in_features=(num_kp + 1) * (num_channels + 1),
                                   max_features=max_features, num_blocks=num_blocks)
        self.mask = nn.Conv2d(self.hourglass.out_filters, num_kp + 1, kernel_size=7, padding=3)
        self.occlusion = (nn.Conv2d(self.hourglass.out_filters, 1, kernel_size=7, padding=3)
                          if estimate_occlusion_map else None)
        self.num_kp = num_kp
        self.scale_factor = scale_factor
        self.kp_variance = kp_variance
        if scale_factor != 1:
            self.down = AntiAliasInterpolation2d(num_channels, scale_factor)

    def forward(self, source_image: torch.Tensor, kp_driving: dict, kp_source: dict) -> dict:
        if self.scale_factor != 1:
            source_image = self.down(source_image)
        b, _, h, w = source_image.shape
        # Heatmaps before motions, as in the reference: the order in which keypoint gradients are
        # accumulated follows the order the ops were created, and parity is checked to the bit.
        heatmap = heatmap_difference(kp_driving['value'], kp_source['value'], (h, w), self.kp_variance)
        grid = make_coordinate_grid((h, w), source_image.dtype, source_image.device)
        identity = grid.view(1, 1, h, w, 2).repeat(b, 1, 1, 1, 1)
        motions = torch.cat([identity, local_affine_motions(grid, kp_driving, kp_source)], dim=1)
        deformed = warp_per_motion(source_image, motions)                    # (B, K+1, C, h, w)
        # Interleaved per candidate: [heatmap_k, warped_k] -- the channel order of FOMM's weights.
        features = self.hourglass(torch.cat([heatmap.unsqueeze(2), deformed], dim=2).view(b, -1, h, w))
        mask = F.softmax(self.mask(features).float(), dim=1)     # float32 under autocast: it weights motions
        out = {'sparse_deformed': deformed, 'mask': mask, 'deformation': combine_motions(motions, mask)}
        if self.occlusion is not None:
            out['occlusion_map'] = torch.sigmoid(self.occlusion(features))
        return out


class TpsDenseMotionNetwork(nn.Module):
    """TPSMM sec. 3.2-3.3. Returns 'deformed_source' (B, K+1, C, h, w), 'contribution_maps'
    (B, K+1, h, w), 'deformation' (B, h, w, 2) and 'occlusion_map', a list of 4 maps from
    coarse to full input resolution (`multi_mask`), or of one map at (h, w)."""

    num_occlusion_maps = 4

    def __init__(self, block_expansion: int, num_blocks: int, max_features: int, num_tps: int,
                 num_channels: int, scale_factor: float = 0.25, bg: bool = False, multi_mask: bool = True,
                 kp_variance: float = 0.01, points_per_tps: int = 5):
        super().__init__()
        self.hourglass = Hourglass(block_expansion, in_features=num_channels * (num_tps + 1) + num_tps * points_per_tps + 1,
                                   max_features=max_features, num_blocks=num_blocks, norm=instance_norm)
        channels = self.hourglass.decoder.out_channels        # per decoder level, coarsest first
        self.maps = nn.Conv2d(channels[-1], num_tps + 1, kernel_size=7, padding=3)
        if multi_mask:
            # Occlusion at the last decoder levels, then upsampled further to the input resolution.
            self.up_nums = int(math.log2(1 / scale_factor))
            from_decoder = self.num_occlusion_maps - self.up_nums
            self.up = nn.ModuleList(UpBlock2d(channels[-1] // 2 ** i, channels[-1] // 2 ** (i + 1), norm=instance_norm)
                                    for i in range(self.up_nums))
            occlusion_in = channels[len(channels) - from_decoder:] + [channels[-1] // 2 ** (i + 1) for i in range(self.up_nums)]
        else:
            occlusion_in = [channels[-1]]
        self.occlusion = nn.ModuleList(nn.Conv2d(c, 1, kernel_size=7, padding=3) for c in occlusion_in)
        self.num_tps = num_tps
        self.points_per_tps = points_per_tps
        self.scale_factor = scale_factor
        self.bg = bg
        self.multi_mask = multi_mask
        self.kp_variance = kp_variance
        if scale_factor != 1:
            self.down = AntiAliasInterpolation2d(num_channels, scale_factor, nearest_resize=True)

    def motions(self, kp_driving: torch.Tensor, kp_source: torch.Tensor, bg_param: torch.Tensor | None,
                size: tuple[int, int], tps: tuple | None = None) -> torch.Tensor:
        """Background (identity or affine `bg_param` (B, 3, 3)) then one TPS per group: (B, K+1, h, w, 2).
        `tps`: the groups' TPS already fitted (`geometry.fit_keypoint_tps`), else fitted here."""
        b = kp_driving.shape[0]
        grid = make_coordinate_grid(size, kp_driving.dtype, kp_driving.device)
        background = grid.view(1, 1, *grid.shape).repeat(b, 1, 1, 1, 1)       # (B, 1, h, w, 2)
        if bg_param is not None:
            background = homogeneous_affine(background, bg_param)
        tps = tps_motions(grid, kp_driving, kp_source, self.points_per_tps, fitted=tps)
        return torch.cat([background, tps], dim=1)

    @staticmethod
    def dropout_softmax(logits: torch.Tensor, p: float, keep: torch.Tensor | None = None) -> torch.Tensor:
        """TPSMM eq. (7)-(8): softmax over K+1 maps with whole TPS maps dropped with probability p.

        logits (B, K+1, h, w); keep (B, K+1) bool, drawn at random when not given; the background
        map (index 0) is always kept. As in the reference, the surviving maps are renormalised by
        their own sum (+1e-6) -- the 1/(1-p) rescaling the paper mentions does not reach the output.
        """
        if keep is None:
            keep = torch.rand(logits.shape[:2], device=logits.device) < (1 - p)
        keep = keep.clone()
        keep[:, 0] = True
        exp = (logits - logits.max(dim=1, keepdim=True).values).exp()
        exp = exp * keep[:, :, None, None].to(exp.dtype)
        return exp / (exp.sum(dim=1, keepdim=True) + 1e-6)

    def forward(self, source_image: torch.Tensor, kp_driving: dict, kp_source: dict,
                bg_param: torch.Tensor | None = None, dropout_flag: bool = False, dropout_p: float = 0,
                tps: tuple | None = None) -> dict:
        if self.scale_factor != 1:
            source_image = self.down(source_image)
        b, _, h, w = source_image.shape
        heatmap = heatmap_difference(kp_driving['fg_kp'], kp_source['fg_kp'], (h, w), self.kp_variance)
        motions = self.motions(kp_driving['fg_kp'], kp_source['fg_kp'], bg_param, (h, w), tps)
        deformed = warp_per_motion(source_image, motions)                    # (B, K+1, C, h, w)
        levels = self.hourglass.pyramid(torch.cat([heatmap, deformed.view(b, -1, h, w)], dim=1))
        logits = self.maps(levels[-1]).float()         # float32 under autocast: the weights of motions
        weights = self.dropout_softmax(logits, dropout_p) if dropout_flag else F.softmax(logits, dim=1)
        out = {'deformed_source': deformed, 'contribution_maps': weights,
               'deformation': combine_motions(motions, weights)}
        if self.multi_mask:
            from_decoder = self.num_occlusion_maps - self.up_nums
            inputs = levels[len(levels) - from_decoder:]
            x = levels[-1]
            for up in self.up:
                x = up(x)
                inputs.append(x)
        else:
            inputs = [levels[-1]]
        out['occlusion_map'] = [torch.sigmoid(conv(x)) for conv, x in zip(self.occlusion, inputs)]
        return out
