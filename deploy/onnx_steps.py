"""The small steps of animation that stay outside the exported ONNX graphs, in NumPy alone.

`scripts/export_onnx.py` writes the networks as ONNX graphs (deploy/onnx_export.py). Two steps
are not in them, both a few hundred numbers per frame:
  * TPSMM's TPS solve: one (N+3)x(N+3) linear system per keypoint group (8x8 for 5 points),
    `fit_tps` below; the generator graph takes its result as `tps_affine`, `tps_weights`.
    (Inside ONNX Runtime its float inverse differed from PyTorch's by 2.6e-4 in the output.)
  * relative motion (`relative_keypoints`): the driving keypoints' displacement from the first
    driving frame applied to the source's, scaled by the keypoint hulls' size ratio.
This file imports NumPy (and SciPy for the hull) only, so ONNX Runtime can animate without
PyTorch; docs/cpu-inference.md shows the whole loop.
"""
from __future__ import annotations

import numpy as np


def fit_tps(kp_driving: np.ndarray, kp_source: np.ndarray, points_per_tps: int = 5,
            regularization: float = 0.01) -> tuple[np.ndarray, np.ndarray]:
    """TPS per keypoint group mapping the driving keypoints onto the source's (TPSMM eq. 1-2).

    kp_driving, kp_source: (B, G*N, 2) float32. Returns float32 (tps_affine (B, G, 2, 3),
    tps_weights (B, G, N, 2)), as `modules.geometry.fit_keypoint_tps`.
    """
    b, n = kp_driving.shape[0], points_per_tps
    src = kp_driving.reshape(b, -1, n, 2).astype(np.float32)
    dst = kp_source.reshape(b, -1, n, 2).astype(np.float32)
    g = src.shape[1]
    sq_dist = ((src[:, :, :, None] - src[:, :, None, :]) ** 2).sum(-1)                  # (B, G, N, N)
    kernel = sq_dist * np.log(sq_dist + np.float32(1e-9))
    p = np.concatenate([src, np.ones_like(src[..., :1])], axis=-1)                      # (B, G, N, 3)
    system = np.zeros((b, g, n + 3, n + 3), np.float32)
    system[..., :n, :n] = kernel
    system[..., :n, n:] = p
    system[..., n:, :n] = p.transpose(0, 1, 3, 2)
    system += np.eye(n + 3, dtype=np.float32) * np.float32(regularization)
    rhs = np.concatenate([dst, np.zeros((b, g, 3, 2), np.float32)], axis=2)             # (B, G, N+3, 2)
    params = np.linalg.inv(system) @ rhs
    return (np.ascontiguousarray(params[:, :, n:].transpose(0, 1, 3, 2)),
            np.ascontiguousarray(params[:, :, :n]))


def hull_scale(kp_source: np.ndarray, kp_initial: np.ndarray) -> float:
    """sqrt(area of the source keypoints' convex hull / the first driving frame's), (K, 2) each."""
    from scipy.spatial import ConvexHull
    return float(np.sqrt(ConvexHull(kp_source).volume / ConvexHull(kp_initial).volume))


def relative_keypoints(kp_source: np.ndarray, kp_driving: np.ndarray, kp_initial: np.ndarray,
                       scale: float = 1.0) -> np.ndarray:
    """Relative motion: kp_source + scale * (kp_driving - kp_initial), (B, K, 2) each. FOMM's
    jacobians become J_driving J_initial^-1 J_source (`relative_jacobians`)."""
    return kp_source + scale * (kp_driving - kp_initial)


def relative_jacobians(jac_source: np.ndarray, jac_driving: np.ndarray, jac_initial: np.ndarray) -> np.ndarray:
    return jac_driving @ np.linalg.inv(jac_initial) @ jac_source
