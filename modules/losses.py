"""Training objectives of both papers, one function per equation."""
from __future__ import annotations

from typing import Callable, Sequence

import torch

from .precision import full_precision


def perceptual_pyramid_loss(features: Callable[[torch.Tensor], list[torch.Tensor]], real: dict, generated: dict,
                            scales: Sequence, weights: Sequence[float]) -> torch.Tensor:
    """FOMM eq. (7) / TPSMM eq. (10): sum over pyramid scales and VGG-19 layers of the weighted
    L1 distance between features of the generated and the real frame (the real side is a target)."""
    total = 0
    for scale in scales:
        key = f'prediction_{scale}'
        fake_features = features(generated[key])
        with torch.no_grad():
            real_features = features(real[key])
        for weight, fake, target in zip(weights, fake_features, real_features):
            total = total + weight * (fake - target).abs().mean()
    return total


def lsgan_generator_loss(fake_maps: dict, scales: Sequence, weight: float) -> torch.Tensor:
    """Least-squares GAN, generator side: mean (1 - D(fake))^2 per discriminator scale."""
    return sum(weight * ((1 - fake_maps[f'prediction_map_{s}']) ** 2).mean() for s in scales)


def lsgan_discriminator_loss(real_maps: dict, fake_maps: dict, scales: Sequence, weight: float) -> torch.Tensor:
    """Least-squares GAN, discriminator side: mean (1 - D(real))^2 + D(fake)^2 per scale."""
    return sum(weight * ((1 - real_maps[f'prediction_map_{s}']) ** 2
                         + fake_maps[f'prediction_map_{s}'] ** 2).mean() for s in scales)


def feature_matching_loss(real_maps: dict, fake_maps: dict, scales: Sequence, weights: Sequence[float]) -> torch.Tensor:
    """pix2pixHD feature matching: weighted L1 between discriminator features of real and fake."""
    total = 0
    for s in scales:
        for weight, real, fake in zip(weights, real_maps[f'feature_maps_{s}'], fake_maps[f'feature_maps_{s}']):
            if weight != 0:
                total = total + weight * (real - fake).abs().mean()
    return total


def equivariance_value_loss(kp_driving: torch.Tensor, kp_transformed_back: torch.Tensor) -> torch.Tensor:
    """FOMM eq. (9) / TPSMM eq. (12): keypoints of a randomly warped frame, mapped back through the
    warp, must equal the keypoints of the original frame (mean L1)."""
    return (kp_driving - kp_transformed_back).abs().mean()


@full_precision
def equivariance_jacobian_loss(jacobian_driving: torch.Tensor, jacobian_transformed_back: torch.Tensor) -> torch.Tensor:
    """FOMM eq. (10): J_D^-1 (dT/dz J_T) must be the identity (mean L1 over entries)."""
    product = torch.inverse(jacobian_driving) @ jacobian_transformed_back
    eye = torch.eye(2, dtype=product.dtype, device=product.device)
    return (eye - product).abs().mean()


def warp_consistency_loss(driving_maps: Sequence[torch.Tensor], warped_source_maps: Sequence[torch.Tensor]) -> torch.Tensor:
    """TPSMM eq. (11): warped source encoder maps must match the driving frame's own encoder maps,
    both occlusion-masked. `driving_maps` finest first; `warped_source_maps` coarsest first."""
    return sum((d - w).abs().mean() for d, w in zip(driving_maps, reversed(list(warped_source_maps))))


def background_cycle_loss(bg_forward: torch.Tensor, bg_backward: torch.Tensor) -> torch.Tensor:
    """TPSMM eq. (13): source->driving and driving->source background affines must compose to
    the identity (mean L1 of A_sd A_ds - I)."""
    product = bg_forward @ bg_backward
    eye = torch.eye(3, dtype=product.dtype, device=product.device)
    return (eye - product).abs().mean()
