"""Causal temporal smoothing of driving keypoints: the One-Euro filter.

Opt-in (demo.py --smooth, `Animator.animate(smooth=...)`, the app's "Smooth motion" boxes): the
references animate every frame from that frame's keypoints alone, so keypoints that flicker from
frame to frame on a real driving video make the result flicker. The One-Euro filter (Casiez,
Roussel and Vogel, CHI 2012) is an exponential moving average whose cutoff frequency rises with
the signal's speed: a still or slowly moving face, where jitter shows, is smoothed hard; fast
motion is followed with little lag.

Causal: a frame's output depends on that frame and the ones before it only (look-ahead: 0 frames),
so it runs in the streaming loop, one frame at a time in frame order, whatever the batch size.

One step, with dt the time since the previous frame in seconds and
alpha(fc) = 1 / (1 + 1 / (2 pi fc dt)) (an exponential average with cutoff fc Hz at that rate):
    speed = |x - previous x| / dt, averaged with alpha(d_cutoff)
    fc    = min_cutoff + beta * speed
    out   = alpha(fc) * x + (1 - alpha(fc)) * previous output
The speed is taken between consecutive inputs: the paper's form, against the previous output,
overstates a steady speed by the filter's own lag, so its cutoff would depend on the frame rate.
On a steady motion at speed v the output then settles 1 / (2 pi fc(v)) seconds behind the input,
at any frame rate, and never more than 1 / (2 pi min_cutoff) seconds.
Keypoints are filtered in the networks' normalised coordinates ([-1, 1] across the frame, so a
speed of 2 units/s crosses the frame in a second); the speed is that of each keypoint (the norm of
its 2-D velocity; for FOMM's 2x2 jacobians the norm of the 4 entries' rates), so a keypoint's
coordinates are smoothed alike whatever the direction it moves in.

Torch tensors and numpy arrays both work (numpy for ONNX Runtime alone, docs/cpu-inference.md);
torch is imported only when tensors come in.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import numpy as np


@dataclasses.dataclass(frozen=True)
class OneEuroParams:
    """min_cutoff (Hz): the cutoff for a keypoint at rest; lower is smoother and lags more.
    beta (Hz per unit/s): how fast the cutoff rises with speed; higher lags less on fast motion.
    d_cutoff (Hz): the cutoff of the speed estimate itself.

    Defaults chosen on ../shared/samples/face-driving.mp4 (benchmarks/bench_smooth.py, figures
    in docs/smoothing.md): with the bundled model they take 65% of the driving keypoints'
    frame-to-frame jitter out (57% of the output's) and follow a steady motion at the clip's
    median speed about 2 frames late (at most 1 / (2 pi min_cutoff) s, 4 frames at 25 fps)."""
    min_cutoff: float = 1.0
    beta: float = 5.0
    d_cutoff: float = 1.0

    def __post_init__(self):
        for name in ('min_cutoff', 'd_cutoff'):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f'smoothing {name} must be a positive number of Hz, got {value!r}')
        if not (math.isfinite(self.beta) and self.beta >= 0):
            raise ValueError(f'smoothing beta must be >= 0, got {self.beta!r}')


def smoothing_params(smooth) -> OneEuroParams | None:
    """What the API's `smooth` argument may be -> parameters, or None for no smoothing:
    None/False (off), True (the defaults), an OneEuroParams, or a dict of its fields."""
    if smooth is None or smooth is False:
        return None
    if smooth is True:
        return OneEuroParams()
    if isinstance(smooth, OneEuroParams):
        return smooth
    if isinstance(smooth, dict):
        return OneEuroParams(**smooth)
    raise ValueError(f'smooth must be True, False, None, a dict or OneEuroParams, got {type(smooth).__name__}')


def smoothing_factor(cutoff, dt: float):
    """alpha of an exponential average that has cutoff frequency `cutoff` Hz at time step dt s."""
    return 1.0 / (1.0 + 1.0 / (2 * math.pi * cutoff * dt))


class OneEuroFilter:
    """One-Euro filter over a stream of same-shaped tensors (..., *point): the speed that sets the
    cutoff is taken per point, the norm over its last `point_dims` dimensions (1 for (K, 2)
    positions, 2 for (K, 2, 2) jacobians)."""

    def __init__(self, params: OneEuroParams, point_dims: int = 1):
        self.params = params
        self.point_dims = point_dims
        self.previous = None          # last output, (..., *point)
        self.previous_input = None    # last input, (..., *point)
        self.speed = None             # smoothed speed per point, (..., 1) or (..., 1, 1)
        self.time: float | None = None

    def __call__(self, x, t: float):
        """Filtered x (a tensor or an array) at time t (seconds, increasing); the first call
        returns x unchanged."""
        if self.previous is None:
            self.previous, self.previous_input, self.time = _copy(x), _copy(x), t
            self.speed = 0 * self._norm(x)
            return _copy(x)
        dt = t - self.time
        if not dt > 0:
            raise ValueError(f'frame times must increase: {t} after {self.time}')
        p = self.params
        raw_speed = self._norm(x - self.previous_input) / dt
        self.speed = self.speed + smoothing_factor(p.d_cutoff, dt) * (raw_speed - self.speed)
        alpha = smoothing_factor(p.min_cutoff + p.beta * self.speed, dt)
        self.previous = self.previous + alpha * (x - self.previous)
        self.previous_input, self.time = _copy(x), t
        return _copy(self.previous)

    def _norm(self, x):
        """Per-point norm, kept broadcastable against x: (..., 1) or (..., 1, 1)."""
        dims = tuple(range(-self.point_dims, 0))
        if isinstance(x, np.ndarray):
            return np.linalg.norm(x, axis=dims, keepdims=True)
        import torch
        return torch.linalg.vector_norm(x, dim=dims, keepdim=True)


def _copy(x):
    return x.copy() if isinstance(x, np.ndarray) else x.clone()


def _stack(frames: list):
    if isinstance(frames[0], np.ndarray):
        return np.stack(frames)
    import torch
    return torch.stack(frames)


# Keypoint dict entries that are smoothed, with how many trailing dimensions make one point:
# FOMM 'value' (B, K, 2) and 'jacobian' (B, K, 2, 2); TPSMM 'fg_kp' (B, K*5, 2).
KEYPOINT_ENTRIES = {'value': 1, 'jacobian': 2, 'fg_kp': 1}


class KeypointSmoother:
    """Smooths one video's driving keypoints, frame by frame in frame order.

    Call it with each batch of keypoints in turn (dicts of (B, ...) tensors or arrays, B
    consecutive frames);
    frame i of the video is at time i / fps unless `times` gives the frames' own times (the
    app's Live tab: camera frames come when they come). Splitting the video into other batches
    gives the same result. Other entries of the dict pass through unchanged."""

    def __init__(self, params: OneEuroParams, fps: float):
        if not (math.isfinite(fps) and fps > 0):
            raise ValueError(f'smoothing needs the frame rate, got {fps!r} fps')
        self.params, self.fps = params, float(fps)
        self.filters: dict[str, OneEuroFilter] = {}
        self.frames = 0               # frames filtered so far: the next frame's index

    def __call__(self, kp: dict, times: Sequence[float] | None = None) -> dict:
        batch = next(iter(kp.values())).shape[0]
        if times is None:
            times = [(self.frames + i) / self.fps for i in range(batch)]
        elif len(times) != batch:
            raise ValueError(f'{len(times)} frame times for a batch of {batch} frames')
        out = dict(kp)
        for key, point_dims in KEYPOINT_ENTRIES.items():
            if key in kp:
                flt = self.filters.setdefault(key, OneEuroFilter(self.params, point_dims))
                out[key] = _stack([flt(frame, t) for frame, t in zip(kp[key], times)])
        self.frames += batch
        return out
