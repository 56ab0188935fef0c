"""Keypoint detectors of both families.

FOMM: an hourglass predicts one heatmap per keypoint; the keypoint is the heatmap's soft-argmax
and, with `estimate_jacobian`, a 2x2 local affine jacobian is the heatmap-weighted average of
four predicted maps (paper sec. 3.1).
TPSMM: a ResNet-18 regresses num_tps groups of 5 keypoints directly (paper sec. 3.1). Other
torchvision classifiers ending in an `fc` layer can stand in (`kp_detector_params.backbone`),
for models smaller than the paper's.

Both run in float32 under autocast (`full_precision`, modules/precision.py): every motion is
computed from the keypoints, and in bf16 the BatchNorm layers amplify rounding where they
normalise few values (TPSMM's backbone ends at 2x2 maps on 64x64 frames): measured on
tps-64-small in train mode, bf16 moved the keypoints by up to 0.15 of the [-1, 1] frame.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import AntiAliasInterpolation2d, Hourglass
from .geometry import heatmap_to_keypoints
from .precision import full_precision


class FommKeypointDetector(nn.Module):
    """image (B, C, H, W) -> {'value': (B, K, 2), 'jacobian': (B, K, 2, 2) when estimated}."""

    def __init__(self, block_expansion: int, num_kp: int, num_channels: int, max_features: int,
                 num_blocks: int, temperature: float, estimate_jacobian: bool = False,
                 scale_factor: float = 1, single_jacobian_map: bool = False, pad: int = 0):
        super().__init__()
        self.predictor = Hourglass(block_expansion, in_features=num_channels, max_features=max_features,
                                   num_blocks=num_blocks)
        # padding=0 by default, as the reference: heatmaps are (H-6, W-6) and the soft-argmax grid
        # spans them, a detail its checkpoints depend on.
        self.kp = nn.Conv2d(self.predictor.out_filters, num_kp, kernel_size=7, padding=pad)
        if estimate_jacobian:
            self.num_jacobian_maps = 1 if single_jacobian_map else num_kp
            self.jacobian = nn.Conv2d(self.predictor.out_filters, 4 * self.num_jacobian_maps,
                                      kernel_size=7, padding=pad)
            # Start at the identity jacobian so early training is the zero-order model.
            nn.init.zeros_(self.jacobian.weight)
            with torch.no_grad():
                self.jacobian.bias.copy_(torch.tensor([1., 0., 0., 1.] * self.num_jacobian_maps))
        else:
            self.jacobian = None
        self.temperature = temperature
        self.scale_factor = scale_factor
        if scale_factor != 1:
            self.down = AntiAliasInterpolation2d(num_channels, scale_factor)

    @full_precision
    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.scale_factor != 1:
            image = self.down(image)
        features = self.predictor(image)
        logits = self.kp(features)                                          # (B, K, h, w)
        b, k, h, w = logits.shape
        heatmap = F.softmax(logits.view(b, k, -1) / self.temperature, dim=2).view(b, k, h, w)
        out = {'value': heatmap_to_keypoints(heatmap)}
        if self.jacobian is not None:
            maps = self.jacobian(features).view(b, self.num_jacobian_maps, 4, h, w)
            jacobian = (heatmap.unsqueeze(2) * maps).view(b, k, 4, -1).sum(dim=-1)   # (B, K, 4)
            out['jacobian'] = jacobian.view(b, k, 2, 2)
        return out


def classifier_backbone(name: str, num_outputs: int) -> nn.Module:
    """An untrained torchvision classifier `name` whose final `fc` layer regresses `num_outputs`."""
    import torchvision      # here, not at the top: importing it costs FOMM's start-up 1.5 s (it loads torch._dynamo)
    try:
        net = torchvision.models.get_model(name, weights=None)
    except ValueError:
        raise ValueError(f'unknown torchvision model {name!r}') from None
    if not isinstance(getattr(net, 'fc', None), nn.Linear):
        raise ValueError(f'torchvision model {name!r} does not end in an `fc` layer; use e.g. resnet18, '
                         f'resnet34, shufflenet_v2_x0_5, shufflenet_v2_x1_0, regnet_x_400mf')
    net.fc = nn.Linear(net.fc.in_features, num_outputs)
    return net


class TpsKeypointDetector(nn.Module):
    """image (B, 3, H, W) -> {'fg_kp': (B, 5*num_tps, 2)} in [-1, 1]."""

    def __init__(self, num_tps: int, points_per_tps: int = 5, backbone: str = 'resnet18'):
        super().__init__()
        self.num_tps = num_tps
        self.points_per_tps = points_per_tps
        self.fg_encoder = classifier_backbone(backbone, num_tps * points_per_tps * 2)

    @full_precision
    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        kp = torch.sigmoid(self.fg_encoder(image)) * 2 - 1
        return {'fg_kp': kp.view(image.shape[0], self.num_tps * self.points_per_tps, 2)}
