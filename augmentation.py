"""Joint data augmentation for the frames of one training item.

Keypoint-animation training reconstructs a driving frame from a source frame of the same video,
so the two frames must be augmented *together*: one random draw per item, applied identically to
every frame. Per-frame independent augmentation would invent motion that does not exist (a
flipped source and an unflipped driving frame), which the motion networks would then try to
explain.

`AllAugmentationTransform` applies, in the references' order and each only when its parameters
are given:

1. flip     (`horizontal_flip`, `time_flip`)  a time flip with probability 1/2; only without one,
                               a horizontal flip with probability 1/2 (so 1/4 of items), never both;
2. rotation (`degrees`)        rotation about the frame centre, black corners;
3. resize   (`ratio`, `interpolation`)  isotropic rescale by one random factor, nearest neighbour
                               by default, the new size truncated as the references do;
4. crop     (`size`, `offsets`)  random crop, edge padding when the frame is smaller;
5. jitter   (`brightness`, `contrast`, `saturation`, `hue`)  colour jitter.

Each stage follows the references' `augmentation.py` (FOMM and TPSMM share it), so the defaults
train on the same data distribution; where the reference has a quirk worth avoiding, the cleaner
behaviour is an option (documented on the class), never the default.

Every random number comes from a `numpy.random.Generator` passed in by the caller, so a seeded
generator reproduces the same augmentation exactly (the data set owns one per worker process).
Frames go in and come out as float32 (H, W, 3) arrays in [0, 1].
"""
from __future__ import annotations

import difflib
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from skimage.transform import resize as sk_resize
from skimage.transform import rotate as sk_rotate

__all__ = [
    'AllAugmentationTransform',
    'ColorJitter',
    'RandomCrop',
    'RandomFlip',
    'RandomResize',
    'RandomRotation',
    'UnknownKeyError',
    'check_param_keys',
]

Frames = list[np.ndarray]  # each float32 (H, W, 3) in [0, 1]


class UnknownKeyError(ValueError, TypeError):
    """A configuration dictionary holds a key nobody reads.

    Silently ignoring a misspelt key ("horizontal_flp") would train a different model from the
    one the config describes, so unknown keys are errors. It is a ValueError (a bad config value)
    and a TypeError (what Python raises for an unexpected keyword argument), so callers catching
    either kind see it.
    """


def check_param_keys(params: Mapping[str, Any] | None, valid: Iterable[str], where: str) -> dict[str, Any]:
    """Return `params` as a dict after checking that every key is one of `valid`.

    The error names the offending key, the closest valid key (difflib) and all valid keys, so a
    typo in a YAML config is fixed from the message alone.
    """
    if params is None:
        return {}
    if not isinstance(params, Mapping):
        raise TypeError(f'{where} must be a mapping of parameter names to values, got {type(params).__name__}')
    valid = sorted(valid)
    for key in params:
        if key not in valid:
            close = difflib.get_close_matches(str(key), valid, n=1)
            hint = f'; did you mean {close[0]!r}?' if close else ''
            raise UnknownKeyError(f'unknown key {key!r} in {where}{hint} (valid keys: {", ".join(valid)})')
    return dict(params)


def _as_range(value: Any, name: str, center: float, lowest: float = -np.inf) -> tuple[float, float]:
    """Turn a scalar spread `s` into (center - s, center + s), or accept an explicit (lo, hi) pair.

    Both forms appear in configs: the reference resize uses a (lo, hi) pair, jitter uses scalars.
    """
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value < 0:
            raise ValueError(f'{name} must be >= 0, got {value}')
        lo, hi = center - float(value), center + float(value)
    elif isinstance(value, Sequence) and len(value) == 2:
        lo, hi = float(value[0]), float(value[1])
        if lo > hi:
            raise ValueError(f'{name} range must be (low, high) with low <= high, got {tuple(value)}')
    else:
        raise TypeError(f'{name} must be a number or a (low, high) pair, got {value!r}')
    return max(lo, lowest), max(hi, lowest)


class RandomResize:
    """Rescale all frames by one random factor (isotropic, so the aspect ratio is kept).

    `ratio` is either a spread r (factor drawn from [1 - r, 1 + r]) or a (low, high) pair as in
    the reference's RandomResize, e.g. (0.75, 1.33). As in the reference, the new size is
    truncated (`int(h * factor)`) and the frames go through scikit-image's `resize` with
    `interpolation` 'nearest' (order 0, the reference's default) or 'bilinear' (order 1), always
    with `anti_aliasing=True` and `mode='constant'`. The output size changes, so follow it with a
    crop of fixed size when items are batched.
    """

    ORDERS = {'nearest': 0, 'bilinear': 1}

    def __init__(self, ratio: float | Sequence[float] = (3.0 / 4.0, 4.0 / 3.0), interpolation: str = 'nearest') -> None:
        self.low, self.high = _as_range(ratio, 'resize_param.ratio', center=1.0, lowest=1e-3)
        if interpolation not in self.ORDERS:
            raise ValueError(f'resize_param.interpolation must be one of {sorted(self.ORDERS)}, got {interpolation!r}')
        self.order = self.ORDERS[interpolation]

    def __call__(self, frames: Frames, rng: np.random.Generator) -> Frames:
        factor = rng.uniform(self.low, self.high)
        h, w = frames[0].shape[:2]
        new_shape = (max(1, int(h * factor)), max(1, int(w * factor)))
        return [sk_resize(f, new_shape, order=self.order, preserve_range=True, mode='constant',
                          anti_aliasing=True).astype(np.float32) for f in frames]


class RandomRotation:
    """Rotate all frames by one random angle in degrees about the centre (corners become black).

    `degrees` is a spread d (angle drawn from [-d, d]) or a (low, high) pair.
    """

    def __init__(self, degrees: float | Sequence[float]) -> None:
        self.low, self.high = _as_range(degrees, 'rotation_param.degrees', center=0.0)

    def __call__(self, frames: Frames, rng: np.random.Generator) -> Frames:
        angle = rng.uniform(self.low, self.high)
        return [sk_rotate(f, angle, order=1, mode='constant', cval=0.0, preserve_range=True).astype(np.float32)
                for f in frames]


class RandomFlip:
    """Reverse the frames' order or mirror them left-right, as the references draw it.

    A time flip comes first, with probability 1/2. Only when there is none, a horizontal flip is
    drawn, with probability 1/2. With both enabled, 1/2 of items are reversed in time, 1/4 are
    mirrored, never both at once; with one enabled it happens to 1/2 of items. Reversing time
    swaps the roles of source and driving frames, a free way to make the model symmetric in them.
    """

    def __init__(self, horizontal_flip: bool = False, time_flip: bool = False) -> None:
        self.horizontal_flip = bool(horizontal_flip)
        self.time_flip = bool(time_flip)

    def __call__(self, frames: Frames, rng: np.random.Generator) -> Frames:
        # One number per test, drawn whether or not that flip is enabled, as in the reference.
        if rng.random() < 0.5 and self.time_flip:
            return list(frames[::-1])
        if rng.random() < 0.5 and self.horizontal_flip:
            # Contiguous copy: negative strides break torch.from_numpy further down the pipeline.
            return [np.ascontiguousarray(f[:, ::-1]) for f in frames]
        return list(frames)


class RandomCrop:
    """Crop all frames at one random position to `size` = (h, w) (or an int for a square).

    Frames smaller than `size` are first padded by repeating their edge pixels (numpy's 'edge'
    mode; the extra pixel of an odd padding goes after), as the references do, so a white
    background stays white and the output always has exactly `size`.

    `offsets`: 'reference' (default) draws the position as the references do, where the column
    stays 0 whenever the frame's height equals the crop's, and the row whenever the widths are
    equal (the two conditions are crossed; for square frames and crops this never matters).
    'independent' draws each axis unless that axis fits exactly.
    """

    def __init__(self, size: int | Sequence[int], offsets: str = 'reference') -> None:
        if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
            size = (int(size), int(size))
        if not (isinstance(size, Sequence) and len(size) == 2 and all(int(s) > 0 for s in size)):
            raise ValueError(f'crop_param.size must be a positive int or (height, width), got {size!r}')
        if offsets not in ('reference', 'independent'):
            raise ValueError(f"crop_param.offsets must be 'reference' or 'independent', got {offsets!r}")
        self.size = (int(size[0]), int(size[1]))
        self.offsets = offsets

    def __call__(self, frames: Frames, rng: np.random.Generator) -> Frames:
        ch, cw = self.size
        h, w = frames[0].shape[:2]
        pad_h, pad_w = max(0, ch - h), max(0, cw - w)
        if pad_h or pad_w:
            pad = ((pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2), (0, 0))
            frames = [np.pad(f, pad, mode='edge') for f in frames]
            h, w = frames[0].shape[:2]
        if self.offsets == 'reference':
            left = 0 if ch == h else int(rng.integers(0, w - cw + 1))
            top = 0 if cw == w else int(rng.integers(0, h - ch + 1))
        else:
            top = 0 if ch == h else int(rng.integers(0, h - ch + 1))
            left = 0 if cw == w else int(rng.integers(0, w - cw + 1))
        return [np.ascontiguousarray(f[top:top + ch, left:left + cw]) for f in frames]


class ColorJitter:
    """Random brightness, contrast, saturation and hue, one draw per item, in a random order.

    Factors follow torchvision's convention: brightness/contrast/saturation b -> factor in
    [max(0, 1 - b), 1 + b]; hue h -> shift in [-h, h] with h <= 0.5. Each also accepts an
    explicit (low, high) pair. A zero (the default) disables that adjustment.
    """

    def __init__(self, brightness: float | Sequence[float] = 0.0, contrast: float | Sequence[float] = 0.0,
                 saturation: float | Sequence[float] = 0.0, hue: float | Sequence[float] = 0.0) -> None:
        self.ranges = {
            'brightness': _as_range(brightness, 'jitter_param.brightness', center=1.0, lowest=0.0),
            'contrast': _as_range(contrast, 'jitter_param.contrast', center=1.0, lowest=0.0),
            'saturation': _as_range(saturation, 'jitter_param.saturation', center=1.0, lowest=0.0),
            'hue': _as_range(hue, 'jitter_param.hue', center=0.0),
        }
        lo, hi = self.ranges['hue']
        if lo < -0.5 or hi > 0.5:
            raise ValueError(f'jitter_param.hue must lie within [-0.5, 0.5], got ({lo}, {hi})')

    _ADJUST = {
        'brightness': TF.adjust_brightness,
        'contrast': TF.adjust_contrast,
        'saturation': TF.adjust_saturation,
        'hue': TF.adjust_hue,
    }
    _IDENTITY = {'brightness': 1.0, 'contrast': 1.0, 'saturation': 1.0, 'hue': 0.0}

    def __call__(self, frames: Frames, rng: np.random.Generator) -> Frames:
        names = list(self.ranges)
        factors = {name: rng.uniform(*self.ranges[name]) for name in names}
        order = [names[i] for i in rng.permutation(len(names))]
        video = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2)  # (T, 3, H, W)
        for name in order:
            if self.ranges[name] != (self._IDENTITY[name], self._IDENTITY[name]):
                video = self._ADJUST[name](video, float(factors[name]))
        video = video.clamp(0.0, 1.0).permute(0, 2, 3, 1).contiguous().numpy()  # (T, H, W, 3)
        return list(video)


class AllAugmentationTransform:
    """Compose the augmentations configured by `augmentation_params` (see module docstring).

    Each `*_param` is a dict of keyword arguments for its transform, or None to skip it. Unknown
    keys raise `UnknownKeyError` naming the closest valid key.
    """

    _STAGES: tuple[tuple[str, type], ...] = (     # the references' order
        ('flip_param', RandomFlip),
        ('rotation_param', RandomRotation),
        ('resize_param', RandomResize),
        ('crop_param', RandomCrop),
        ('jitter_param', ColorJitter),
    )
    _KEYS = {
        'resize_param': ('ratio', 'interpolation'),
        'rotation_param': ('degrees',),
        'flip_param': ('horizontal_flip', 'time_flip'),
        'crop_param': ('size', 'offsets'),
        'jitter_param': ('brightness', 'contrast', 'saturation', 'hue'),
    }

    def __init__(self, resize_param: Mapping[str, Any] | None = None, rotation_param: Mapping[str, Any] | None = None,
                 flip_param: Mapping[str, Any] | None = None, crop_param: Mapping[str, Any] | None = None,
                 jitter_param: Mapping[str, Any] | None = None) -> None:
        given = {'resize_param': resize_param, 'rotation_param': rotation_param, 'flip_param': flip_param,
                 'crop_param': crop_param, 'jitter_param': jitter_param}
        self.transforms: list[Any] = []
        for name, cls in self._STAGES:
            if given[name] is None:
                continue
            params = check_param_keys(given[name], self._KEYS[name], f'augmentation_params.{name}')
            self.transforms.append(cls(**params))

    @classmethod
    def from_params(cls, augmentation_params: Mapping[str, Any] | None) -> 'AllAugmentationTransform':
        """Build from a config's `augmentation_params` dict, rejecting unknown top-level keys."""
        params = check_param_keys(augmentation_params, cls._KEYS, 'augmentation_params')
        return cls(**params)

    def __call__(self, frames: Sequence[np.ndarray], rng: np.random.Generator | int | None = None) -> Frames:
        """Augment `frames` (a list of float32 (H, W, 3) arrays) jointly with one random draw.

        `rng` may be a Generator (normal use), an int seed, or None for fresh OS entropy.
        """
        if not isinstance(rng, np.random.Generator):
            rng = np.random.default_rng(rng)
        out: Frames = [np.asarray(f, dtype=np.float32) for f in frames]
        if not out:
            return out
        for transform in self.transforms:
            out = transform(out, rng)
        return [np.clip(f, 0.0, 1.0).astype(np.float32, copy=False) for f in out]

    def __repr__(self) -> str:
        return f'{type(self).__name__}({", ".join(type(t).__name__ for t in self.transforms)})'
