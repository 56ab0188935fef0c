"""The papers' equations on coordinates, each in one place and named after what it computes.

Conventions shared by both families:
  * coordinates are (x, y) in [-1, 1], x along the width, matching `F.grid_sample`;
  * a "grid" or "motion field" is (..., H, W, 2) and maps a pixel of the *driving* frame to the
    position in the *source* frame it is sampled from (backward warping);
  * keypoints are (B, K, 2); jacobians are (B, K, 2, 2).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .precision import full_precision


def make_coordinate_grid(spatial_size: tuple[int, int], dtype: torch.dtype = torch.float32,
                         device: torch.device | str | None = None) -> torch.Tensor:
    """(H, W, 2) grid of pixel centres spread over [-1, 1] corner to corner (align_corners=True)."""
    h, w = int(spatial_size[0]), int(spatial_size[1])
    x = torch.arange(w, dtype=dtype, device=device)
    y = torch.arange(h, dtype=dtype, device=device)
    # Written as 2 * (i / (n - 1)) - 1, the same float operations as the reference implementations.
    x = 2 * (x / (w - 1)) - 1
    y = 2 * (y / (h - 1)) - 1
    return torch.stack([x.view(1, w).expand(h, w), y.view(h, 1).expand(h, w)], dim=-1)


def keypoints_to_gaussian(kp: torch.Tensor, spatial_size: tuple[int, int], kp_variance: float) -> torch.Tensor:
    """Gaussian heatmap around each keypoint: (B, K, 2) -> (B, K, H, W).

    exp(-|z - kp|^2 / (2 * variance)), the keypoint encoding fed to dense motion and the
    discriminator (FOMM eq. 6 input, TPSMM sec. 3.2).
    """
    grid = make_coordinate_grid(spatial_size, kp.dtype, kp.device)           # (H, W, 2)
    diff = grid.view(1, 1, *grid.shape) - kp.view(*kp.shape[:-1], 1, 1, 2)   # (B, K, H, W, 2)
    return torch.exp(-0.5 * (diff ** 2).sum(-1) / kp_variance)


def heatmap_to_keypoints(heatmap: torch.Tensor) -> torch.Tensor:
    """Soft-argmax: expected coordinate under each normalised heatmap, (B, K, H, W) -> (B, K, 2)."""
    grid = make_coordinate_grid(heatmap.shape[2:], heatmap.dtype, heatmap.device)  # (H, W, 2)
    return (heatmap.unsqueeze(-1) * grid).sum(dim=(2, 3))


def inverse(matrices: torch.Tensor) -> torch.Tensor:
    """Batched matrix inverse (..., N, N). Inside an ONNX export it becomes ONNX Runtime's
    `com.microsoft.Inverse`, since standard ONNX has no inverse (deploy/onnx_export.py)."""
    if torch.onnx.is_in_onnx_export():
        return torch.onnx.ops.symbolic('com.microsoft::Inverse', (matrices,), dtype=matrices.dtype,
                                       shape=matrices.shape, version=1)
    return torch.inverse(matrices)


@full_precision
def local_affine_motions(grid: torch.Tensor, kp_driving: dict, kp_source: dict) -> torch.Tensor:
    """FOMM eq. (4): per-keypoint first-order motion, T_k(z) = kp_S + J_S J_D^-1 (z - kp_D).

    grid (H, W, 2); keypoint values (B, K, 2) and optional jacobians (B, K, 2, 2).
    Returns (B, K, H, W, 2). Without jacobians this is the zero-order (translation) model.
    The jacobian is materialised per pixel before the matmul, as in the reference: the gradient
    statistics the parity fixtures hold depend on this exact reduction order.
    """
    b, k = kp_driving['value'].shape[:2]
    h, w = grid.shape[:2]
    offset = grid.view(1, 1, h, w, 2) - kp_driving['value'].view(b, k, 1, 1, 2)    # (B, K, H, W, 2)
    if 'jacobian' in kp_driving:
        jacobian = kp_source['jacobian'] @ inverse(kp_driving['jacobian'])   # (B, K, 2, 2)
        jacobian = jacobian.view(b, k, 1, 1, 2, 2).repeat(1, 1, h, w, 1, 1)
        offset = (jacobian @ offset.unsqueeze(-1)).squeeze(-1)
    return offset + kp_source['value'].view(b, k, 1, 1, 2)


def combine_motions(motions: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Dense motion as a soft-mask weighted sum of candidate motions (FOMM eq. 5, TPSMM eq. 6).

    motions (B, K+1, H, W, 2), weights (B, K+1, H, W) summing to 1 over K+1 -> (B, H, W, 2).
    """
    weighted = motions.permute(0, 1, 4, 2, 3) * weights.unsqueeze(2)       # (B, K+1, 2, H, W)
    return weighted.sum(dim=1).permute(0, 2, 3, 1)


@full_precision
def homogeneous_affine(grid: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """Apply a (B, 3, 3) projective/affine matrix to a (B, ..., 2) grid (TPSMM background motion)."""
    points = torch.cat([grid, torch.ones_like(grid[..., :1])], dim=-1)      # (B, ..., 3)
    shape = (matrix.shape[0],) + (1,) * (grid.dim() - 2) + (3, 3)
    out = (matrix.view(shape) @ points.unsqueeze(-1)).squeeze(-1)
    return out[..., :2] / out[..., 2:3]


def tps_radial_l2(sq_dist: torch.Tensor) -> torch.Tensor:
    """TPS kernel U(r) = r^2 log r^2 on squared L2 distances (TPSMM, keypoint and random TPS)."""
    return sq_dist * torch.log(sq_dist + 1e-9)


def random_tps_kernel_fomm(diff: torch.Tensor) -> torch.Tensor:
    """FOMM's equivariance-TPS kernel on offsets (..., 2): r^2 log(r) with r the L1 distance."""
    r = diff.abs().sum(-1)
    return r ** 2 * torch.log(r + 1e-6)


def random_tps_kernel_tpsmm(diff: torch.Tensor) -> torch.Tensor:
    """TPSMM's equivariance-TPS kernel on offsets (..., 2): r2 log(r2), r2 the squared L2 distance."""
    return tps_radial_l2((diff ** 2).sum(-1))


@full_precision
def fit_tps(kp_from: torch.Tensor, kp_to: torch.Tensor, regularization: float = 0.01):
    """TPSMM eq. (1)-(2): thin-plate spline that maps `kp_from` onto `kp_to`, per group.

    kp_from, kp_to: (B, G, N, 2) (G groups of N=5 keypoints). Solves the (N+3) linear system
    [[U(|c_i - c_j|^2), P], [P^T, 0]] + reg*I  [w; a] = [kp_to; 0], with the reference's ridge
    of 0.01 on the whole diagonal. Returns (affine (B, G, 2, 3), weights (B, G, N, 2)).
    The explicit inverse (rather than `solve`) mirrors the reference op for op; the system is
    8x8, so the cost is nil and gradients match the parity fixtures to the last bits.
    """
    b, g, n, _ = kp_from.shape
    sq_dist = torch.norm(kp_from.unsqueeze(3) - kp_from.unsqueeze(2), dim=4, p=2) ** 2   # (B, G, N, N)
    kernel = tps_radial_l2(sq_dist)
    p = torch.cat([kp_from, torch.ones_like(kp_from[..., :1])], dim=3)                    # (B, G, N, 3)
    top_bottom_left = torch.cat([kernel, p.permute(0, 1, 3, 2)], dim=2)                   # (B, G, N+3, N)
    right = torch.cat([p, kp_from.new_zeros(b, g, 3, 3)], dim=2)                          # (B, G, N+3, 3)
    system = torch.cat([top_bottom_left, right], dim=3)                                   # (B, G, N+3, N+3)
    system = system + torch.eye(n + 3, dtype=system.dtype, device=system.device).expand(system.shape) * regularization
    rhs = torch.cat([kp_to, kp_to.new_zeros(b, g, 3, 2)], dim=2)                          # (B, G, N+3, 2)
    params = inverse(system) @ rhs
    return params[:, :, n:, :].permute(0, 1, 3, 2), params[:, :, :n, :]


@full_precision
def apply_tps(points: torch.Tensor, control_points: torch.Tensor, affine: torch.Tensor,
              weights: torch.Tensor) -> torch.Tensor:
    """Evaluate fitted TPS transforms at points: T(p) = A [p; 1] + sum_i w_i U(|p - c_i|^2).

    points (P, 2) shared by all; control_points (B, G, N, 2); affine (B, G, 2, 3);
    weights (B, G, N, 2). Returns (B, G, P, 2).
    """
    b, g, n, _ = control_points.shape
    linear = affine[..., :2] @ points.t() + affine[..., 2:]                               # (B, G, 2, P)
    sq_dist = ((points.view(1, 1, 1, -1, 2) - control_points.view(b, g, n, 1, 2)) ** 2).sum(-1)  # (B, G, N, P)
    radial = tps_radial_l2(sq_dist).permute(0, 1, 3, 2) @ weights                       # (B, G, P, 2)
    return linear.permute(0, 1, 3, 2) + radial


def fit_keypoint_tps(kp_driving: torch.Tensor, kp_source: torch.Tensor, points_per_tps: int = 5):
    """TPSMM's per-group TPS from driving to source keypoints (B, G*N, 2): see `fit_tps`."""
    b = kp_driving.shape[0]
    return fit_tps(kp_driving.view(b, -1, points_per_tps, 2), kp_source.view(b, -1, points_per_tps, 2))


def tps_motions(grid: torch.Tensor, kp_driving: torch.Tensor, kp_source: torch.Tensor,
                points_per_tps: int = 5, fitted: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """TPSMM: one TPS per keypoint group mapping driving-frame pixels to source positions.

    grid (H, W, 2); keypoints (B, G*N, 2). Returns (B, G, H, W, 2). `fitted`: the
    `fit_keypoint_tps` result when already solved (exported graphs take it as inputs).
    """
    b = kp_driving.shape[0]
    h, w = grid.shape[:2]
    kp_d = kp_driving.view(b, -1, points_per_tps, 2)
    affine, weights = fit_keypoint_tps(kp_driving, kp_source, points_per_tps) if fitted is None else fitted
    return apply_tps(grid.reshape(-1, 2), kp_d, affine, weights).view(b, -1, h, w, 2)


@full_precision
def warp(inp: torch.Tensor, deformation: torch.Tensor, resize_align_corners: bool = False) -> torch.Tensor:
    """Backward-warp `inp` (B, C, H, W) by a (B, h, w, 2) motion field, resizing the field first
    when its resolution differs from the input's.

    Sampling is always align_corners=True: FOMM's checkpoints were trained with PyTorch 1.0, whose
    grid_sample behaved so, and TPSMM passes it explicitly. Resizing the field is bilinear with
    `resize_align_corners` (False for FOMM, PyTorch 1.0's interpolate default; True for TPSMM).
    """
    h, w = inp.shape[2:]
    if deformation.shape[1:3] != (h, w):
        deformation = F.interpolate(deformation.permute(0, 3, 1, 2), size=(h, w), mode='bilinear',
                                    align_corners=resize_align_corners).permute(0, 2, 3, 1)
    out = F.grid_sample(inp, deformation, align_corners=True)
    if inp.dim() == 4 and not inp.is_contiguous() and inp.is_contiguous(memory_format=torch.channels_last):
        # grid_sample writes NCHW whatever its input; CPU inference keeps its maps channels-last
        # (animate.py), and an add or cat of the two layouts runs on a slow strided path
        # (TPSMM's int8 decoding: 22 ms against 4 ms for one 256x128x128 residual add).
        out = out.contiguous(memory_format=torch.channels_last)
    return out
