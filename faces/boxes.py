"""Box geometry shared by the crop tool, the demo's --crop and the metrics.

Boxes are float arrays (x0, y0, x1, y1) in pixels, x1/y1 exclusive. A crop is a square box:
the face box's longer side enlarged by `increase` on each side, as FOMM's crop-video and the
video-preprocessing scripts make training crops (side = (1 + 2 increase) max(w, h)).
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

EDGE_MODES = ('pad', 'shift', 'clip')


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two boxes (0 when either is empty)."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(0.0, w) * max(0.0, h)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def union_box(boxes: np.ndarray) -> np.ndarray:
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.array([boxes[:, 0].min(), boxes[:, 1].min(), boxes[:, 2].max(), boxes[:, 3].max()])


def square_box(box: Sequence[float], increase: float) -> np.ndarray:
    """The square around `box`'s centre with side (1 + 2 increase) * its longer side."""
    x0, y0, x1, y1 = (float(v) for v in box)
    side = (1 + 2 * increase) * max(x1 - x0, y1 - y0)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    return np.array([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2])


def scale_box(box: Sequence[float], factor: float) -> np.ndarray:
    return np.asarray(box, dtype=np.float64) * factor


def fit_box(box: Sequence[float], width: int, height: int, edge: str = 'pad') -> np.ndarray:
    """Integer box for cropping a (height, width) frame.

    'pad': keep the square where it is (the part outside the frame is padded when cropping);
    'shift': move it inside the frame (shrunk to the frame's shorter side if larger), as the
    video-preprocessing scripts do; 'clip': cut it at the frame edge (no longer square: the
    resize stretches it, as FOMM's crop-video does)."""
    if edge not in EDGE_MODES:
        raise ValueError(f'edge must be one of {EDGE_MODES}, got {edge!r}')
    x0, y0, x1, y1 = (float(v) for v in box)
    side = max(1, int(round(max(x1 - x0, y1 - y0))))
    left, top = int(math.floor((x0 + x1) / 2 - side / 2)), int(math.floor((y0 + y1) / 2 - side / 2))
    right, bottom = left + side, top + side
    if edge == 'shift':
        side = min(side, width, height)
        left = min(max(0, int(round((x0 + x1) / 2 - side / 2))), width - side)
        top = min(max(0, int(round((y0 + y1) / 2 - side / 2))), height - side)
        right, bottom = left + side, top + side
    elif edge == 'clip':
        left, top = max(0, left), max(0, top)
        right, bottom = min(width, right), min(height, bottom)
        if right <= left or bottom <= top:
            raise ValueError(f'box {list(box)} lies outside the {width}x{height} frame')
    return np.array([left, top, right, bottom], dtype=np.int64)


def fomm_box(box: Sequence[float], increase: float, width: int, height: int) -> np.ndarray:
    """FOMM crop-video's crop of a tube's union box: the shorter side widened to the longer, both
    enlarged by `increase` per side (a square of side (1 + 2 increase) * the longer side), each
    edge truncated to an integer, then cut at the frame edge (no longer square there: the resize
    stretches it). Integer (4,) box."""
    x0, y0, x1, y1 = (float(v) for v in box)
    w, h = x1 - x0, y1 - y0
    grow_x = max(increase, ((1 + 2 * increase) * h - w) / (2 * w))
    grow_y = max(increase, ((1 + 2 * increase) * w - h) / (2 * h))
    left, top = int(x0 - grow_x * w), int(y0 - grow_y * h)          # int(): toward zero, as the reference
    right, bottom = int(x1 + grow_x * w), int(y1 + grow_y * h)
    left, top, right, bottom = max(0, left), max(0, top), min(right, width), min(bottom, height)
    if right <= left or bottom <= top:
        raise ValueError(f'box {list(box)} lies outside the {width}x{height} frame')
    return np.array([left, top, right, bottom], dtype=np.int64)


def outside_fraction(box: Sequence[int], width: int, height: int) -> float:
    """Share of the box's area that lies outside the frame (the padded part)."""
    x0, y0, x1, y1 = box
    inside = max(0, min(x1, width) - max(x0, 0)) * max(0, min(y1, height) - max(y0, 0))
    area = (x1 - x0) * (y1 - y0)
    return 1.0 - inside / area if area > 0 else 1.0


def crop(frame: np.ndarray, box: Sequence[int]) -> np.ndarray:
    """frame[y0:y1, x0:x1] for an integer box, with edge pixels repeated where it leaves the frame."""
    x0, y0, x1, y1 = (int(v) for v in box)
    h, w = frame.shape[:2]
    inner = frame[max(0, y0):max(0, min(h, y1)), max(0, x0):max(0, min(w, x1))]
    pads = ((max(0, -y0), max(0, y1 - h)), (max(0, -x0), max(0, x1 - w))) + ((0, 0),) * (frame.ndim - 2)
    if not any(p for pair in pads for p in pair):
        return inner
    if inner.size == 0:
        raise ValueError(f'box {list(box)} lies outside the {w}x{h} frame')
    return np.pad(inner, pads, mode='edge')


def crop_resized(frame: np.ndarray, box: Sequence[int], size: Sequence[int]) -> np.ndarray:
    """The box's pixels resized (anti-aliased, as the project resizes) to `size` = (h, w): float32."""
    from media import resize_frame
    return resize_frame(crop(frame, box), size)


def smooth_track(boxes: np.ndarray, sigma: float) -> np.ndarray:
    """(T, 4) per-frame face boxes with NaN rows where no face was found -> (T, 4) boxes.

    Missing frames take the box linearly interpolated between their neighbours; before the first
    and after the last face the first / last box is held. Then centre and size are smoothed with
    a Gaussian of `sigma` frames (0: none), so the crop follows the face without shaking."""
    from scipy.ndimage import gaussian_filter1d
    boxes = np.asarray(boxes, dtype=np.float64)
    found = ~np.isnan(boxes).any(axis=1)
    if not found.any():
        raise ValueError('no face box to track')
    t = np.arange(len(boxes))
    filled = np.stack([np.interp(t, t[found], boxes[found, k]) for k in range(4)], axis=1)
    centre = (filled[:, :2] + filled[:, 2:]) / 2
    size = filled[:, 2:] - filled[:, :2]
    if sigma > 0 and len(boxes) > 1:
        centre = gaussian_filter1d(centre, sigma, axis=0, mode='nearest')
        size = gaussian_filter1d(size, sigma, axis=0, mode='nearest')
    return np.concatenate([centre - size / 2, centre + size / 2], axis=1)


def feather_mask(height: int, width: int, feather: int) -> np.ndarray:
    """float32 (h, w, 1) weights: 1 inside, a linear ramp to ~0 over `feather` pixels at the edge."""
    if feather <= 0:
        return np.ones((height, width, 1), np.float32)
    ramp_y = np.minimum(np.arange(height) + 0.5, height - np.arange(height) - 0.5) / feather
    ramp_x = np.minimum(np.arange(width) + 0.5, width - np.arange(width) - 0.5) / feather
    mask = np.clip(np.minimum(ramp_y[:, None], ramp_x[None, :]), 0, 1)
    return mask[:, :, None].astype(np.float32)


def paste(photo: np.ndarray, patch: np.ndarray, box: Sequence[int], feather: int) -> np.ndarray:
    """Blend `patch` (float (s, s, 3) in [0, 1], any size: resized to the box) into a copy of the
    uint8 `photo` at the integer `box`, with a feathered edge. Pixels outside the box (and the
    part of the box outside the photo) are the photo's, unchanged."""
    from media import resize_frame
    x0, y0, x1, y1 = (int(v) for v in box)
    h, w = photo.shape[:2]
    out = photo.copy()
    patch = resize_frame(patch, (y1 - y0, x1 - x0)) if patch.shape[:2] != (y1 - y0, x1 - x0) else patch
    mask = feather_mask(y1 - y0, x1 - x0, feather)
    # the part of the box inside the photo
    cy0, cx0, cy1, cx1 = max(0, y0), max(0, x0), min(h, y1), min(w, x1)
    if cy1 <= cy0 or cx1 <= cx0:
        return out
    sub = (slice(cy0 - y0, cy1 - y0), slice(cx0 - x0, cx1 - x0))
    region = out[cy0:cy1, cx0:cx1].astype(np.float32) / 255.0
    alpha = mask[sub]
    blended = alpha * patch[sub] + (1 - alpha) * region
    out[cy0:cy1, cx0:cx1] = np.clip(np.rint(blended * 255.0), 0, 255).astype(np.uint8)
    return out
