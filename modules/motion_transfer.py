"""Keypoint normalisation for animation: relative motion transfer with adaptive scale.

Shared by both families: FOMM keypoints are {'value', 'jacobian'}, TPSMM keypoints {'fg_kp'}.
"""
from __future__ import annotations

import warnings

import numpy as np
import torch
from scipy.spatial import ConvexHull, QhullError


def keypoint_key(kp: dict) -> str:
    return 'value' if 'value' in kp else 'fg_kp'


def convex_hull_area(points: np.ndarray) -> float:
    """Area of the 2-D convex hull of (K, 2) points; 0 for degenerate (collinear) sets.

    Nearly collinear points (area below 1e-6 of the squared extent, e.g. float32 rounding on a
    line) count as degenerate too: their "area" is noise and its square root would blow the
    movement scale up by orders of magnitude.
    """
    try:
        area = float(ConvexHull(points).volume)   # 'volume' of a 2-D hull is its area
    except (QhullError, ValueError):
        return 0.0
    extent = float(np.ptp(points, axis=0).max()) ** 2
    return area if area > 1e-6 * extent else 0.0


def movement_scale(kp_source: torch.Tensor, kp_driving_initial: torch.Tensor) -> torch.Tensor:
    """sqrt(area(source hull) / area(initial driving hull)) per sample: (B, K, 2) x2 -> (B,).

    Scales driving motion to the size of the source object (FOMM sec. 4 'adapt_movement_scale').
    The references read only batch element 0; here every sample gets its own scale. A degenerate
    hull (all keypoints on a line) gives scale 1 with a warning rather than a crash or inf.
    """
    src = kp_source.detach().cpu().double().numpy()
    drv = kp_driving_initial.detach().cpu().double().numpy()
    scales = []
    for s, d in zip(src, drv):
        a_s, a_d = convex_hull_area(s), convex_hull_area(d)
        if a_s <= 0 or a_d <= 0:
            warnings.warn('keypoints are degenerate (collinear); using movement scale 1')
            scales.append(1.0)
        else:
            scales.append(np.sqrt(a_s) / np.sqrt(a_d))
    return torch.tensor(scales, dtype=kp_source.dtype, device=kp_source.device)


def normalize_kp(kp_source: dict, kp_driving: dict, kp_driving_initial: dict, adapt_movement_scale=False,
                 use_relative_movement: bool = False, use_relative_jacobian: bool = False) -> dict:
    """Driving keypoints re-expressed for the source (FOMM sec. 3.4 / TPSMM 'relative' mode).

    Relative movement: kp = kp_source + scale * (kp_driving - kp_driving_initial), i.e. the
    driving frame's displacement from the first driving frame is applied to the source pose.
    Relative jacobian (FOMM): J = J_D J_D0^-1 J_S.
    `adapt_movement_scale` may be a bool (compute per sample) or a precomputed (B,) tensor, so
    animation can compute it once per video rather than per frame.
    """
    key = keypoint_key(kp_driving)
    out = dict(kp_driving)
    if not use_relative_movement:
        return out
    if isinstance(adapt_movement_scale, torch.Tensor):
        scale = adapt_movement_scale
    elif adapt_movement_scale:
        scale = movement_scale(kp_source[key], kp_driving_initial[key])
    else:
        scale = None
    diff = kp_driving[key] - kp_driving_initial[key]
    if scale is not None:
        diff = diff * scale.view(-1, *([1] * (diff.dim() - 1)))
    out[key] = diff + kp_source[key]
    if use_relative_jacobian and 'jacobian' in kp_driving:
        jacobian_diff = kp_driving['jacobian'] @ torch.inverse(kp_driving_initial['jacobian'])
        out['jacobian'] = jacobian_diff @ kp_source['jacobian']
    return out
