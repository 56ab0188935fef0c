"""TPSMM's two auxiliary networks: the background motion predictor (sec. 3.2) and the
Advanced/disentangling AVD network used for animation across identities (sec. 3.5)."""
from __future__ import annotations

import torch
from torch import nn

from .precision import full_precision


class BackgroundMotionPredictor(nn.Module):
    """(source, driving) images -> (B, 3, 3) affine background transform, initialised to identity."""

    def __init__(self, num_channels: int = 3):
        super().__init__()
        import torchvision      # here: importing it costs 1.5 s of start-up (see keypoint_detector)
        self.bg_encoder = torchvision.models.resnet18(weights=None)
        self.bg_encoder.conv1 = nn.Conv2d(2 * num_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bg_encoder.fc = nn.Linear(self.bg_encoder.fc.in_features, 6)
        nn.init.zeros_(self.bg_encoder.fc.weight)
        with torch.no_grad():
            self.bg_encoder.fc.bias.copy_(torch.tensor([1., 0., 0., 0., 1., 0.]))

    @full_precision      # float32 under autocast: a ResNet with BatchNorm over few values (see keypoint_detector)
    def forward(self, source_image: torch.Tensor, driving_image: torch.Tensor) -> torch.Tensor:
        b = source_image.shape[0]
        affine = self.bg_encoder(torch.cat([source_image, driving_image], dim=1)).view(b, 2, 3)
        last_row = torch.tensor([0., 0., 1.], dtype=affine.dtype, device=affine.device).expand(b, 1, 3)
        return torch.cat([affine, last_row], dim=1)


def _mlp(sizes: list[int], inplace: bool) -> nn.Sequential:
    """Linear-BatchNorm1d-ReLU stack with a plain Linear at the end (indices match the checkpoints)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers += [nn.BatchNorm1d(b), nn.ReLU(inplace=inplace)]
    return nn.Sequential(*layers)


class AVDNetwork(nn.Module):
    """Re-targets driving keypoints onto the source identity: an identity code from the source
    keypoints and a pose code from the driving keypoints are decoded into new keypoints
    {'fg_kp': (B, 5*num_tps, 2)}."""

    def __init__(self, num_tps: int, id_bottle_size: int = 64, pose_bottle_size: int = 64, points_per_tps: int = 5):
        super().__init__()
        size = points_per_tps * 2 * num_tps
        self.num_tps = num_tps
        self.points_per_tps = points_per_tps
        self.id_encoder = _mlp([size, 256, 512, 1024, id_bottle_size], inplace=True)
        self.pose_encoder = _mlp([size, 256, 512, 1024, pose_bottle_size], inplace=True)
        self.decoder = _mlp([pose_bottle_size + id_bottle_size, 1024, 512, 256, size], inplace=False)

    @full_precision      # float32 under autocast: keypoints in, keypoints out, BatchNorm1d over a small batch
    def forward(self, kp_source: dict, kp_random: dict) -> dict:
        b = kp_source['fg_kp'].shape[0]
        pose = self.pose_encoder(kp_random['fg_kp'].reshape(b, -1))
        identity = self.id_encoder(kp_source['fg_kp'].reshape(b, -1))
        rec = self.decoder(torch.cat([pose, identity], dim=1))
        return {'fg_kp': rec.view(b, self.num_tps * self.points_per_tps, 2)}
