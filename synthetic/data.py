"""Synthetic talking-figure videos: a data set anyone can train on without downloading VoxCeleb.

Each identity is a fixed appearance: a textured articulated figure (torso, head, two two-segment
arms, two legs) plus one independent textured sprite, over a smooth textured background. The
videos of one identity differ only in motion: the figure translates, leans, scales and
"breathes", its joints swing, and the sprite glides and spins across the frame. All motions are
sums of slow sinusoids, so they are smooth (no teleporting) and mostly keep the figure in frame.

This is exactly the structure the keypoint models are built for: a few rigid or mildly
deformable parts moving independently over a static background, with textures attached to the
parts so that their motion is visible in the pixels. Shapes are defined in normalised
coordinates ([-1, 1] across the frame), so `--size 64` and `--size 256` show the same videos.

    python -m synthetic --out data/synthetic --size 64 --num_ids 8 --videos_per_id 4 \\
        --frames 32 --test_ids 2 --seed 0 [--format png|mp4]

writes OUT/train/id000#000/0000.png ... (held-out identities under OUT/test/), or
OUT/train/id000#000.mp4 with `--format mp4`. Everything is deterministic given `--seed`: each
identity and each video has its own seed derived from it, independent of generation order.
"""
from __future__ import annotations

import argparse
import colorsys
import os
import sys
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from tqdm import tqdm

from media.files import atomic_dir
from media import VideoWriter, write_image

__all__ = [
    'Background',
    'IdentityParams',
    'Texture',
    'generate_dataset',
    'identity_rng',
    'main',
    'make_video',
    'sample_identity',
    'video_rng',
]

PART_NAMES = ('leg_l', 'leg_r', 'torso', 'upper_arm_l', 'upper_arm_r', 'forearm_l', 'forearm_r', 'head', 'sprite')
FPS = 25


# --------------------------------------------------------------------------------------------
# Appearance (one per identity)


@dataclass(frozen=True, eq=False)
class Texture:
    """A two-colour pattern painted in a part's own coordinates, so it moves with the part."""

    kind: str  # 'stripes' or 'checker'
    frequency: float  # cycles per normalised unit
    angle: float  # stripe direction, radians
    phase: float
    color_a: np.ndarray  # (3,) float32 in [0, 1]
    color_b: np.ndarray  # (3,)


@dataclass(frozen=True, eq=False)
class Background:
    """Static background: a base colour plus slow colour waves plus a faint fine pattern."""

    base: np.ndarray  # (3,)
    wave_vectors: np.ndarray  # (K, 2) cycles per normalised unit
    wave_phases: np.ndarray  # (K,)
    wave_amplitudes: np.ndarray  # (K, 3) per-channel amplitude
    texture: Texture
    texture_strength: float


@dataclass(frozen=True, eq=False)
class IdentityParams:
    """Everything that stays fixed across the videos of one identity (sizes in normalised units)."""

    background: Background
    torso_half: tuple[float, float]  # half width, half height
    head_radius: float
    upper_arm: float
    forearm: float
    leg: float
    limb_radius: float
    sprite_shape: str  # 'ellipse' or 'rect'
    sprite_half: tuple[float, float]
    sprite_in_front: bool
    textures: dict[str, Texture]  # one per name in PART_NAMES


def _random_colour(rng: np.random.Generator, saturation: tuple[float, float] = (0.5, 1.0),
                   value: tuple[float, float] = (0.6, 1.0)) -> np.ndarray:
    """A random colour drawn in HSV so it is reliably saturated and bright enough to stand out."""
    rgb = colorsys.hsv_to_rgb(rng.uniform(), rng.uniform(*saturation), rng.uniform(*value))
    return np.asarray(rgb, dtype=np.float32)


def _random_texture(rng: np.random.Generator, frequency: tuple[float, float] = (2.5, 5.0)) -> Texture:
    """A part texture: a bright colour and a clearly darker or different second colour."""
    color_a = _random_colour(rng)
    if rng.uniform() < 0.5:
        color_b = color_a * np.float32(rng.uniform(0.25, 0.55))
    else:
        color_b = _random_colour(rng, value=(0.3, 0.7))
    return Texture(kind=str(rng.choice(['stripes', 'stripes', 'checker'])), frequency=float(rng.uniform(*frequency)),
                   angle=float(rng.uniform(0, np.pi)), phase=float(rng.uniform(0, 2 * np.pi)),
                   color_a=color_a, color_b=color_b.astype(np.float32))


def sample_identity(rng: np.random.Generator) -> IdentityParams:
    """Draw one identity's appearance (colours, textures, body proportions, background)."""
    num_waves = 4
    background = Background(
        base=_random_colour(rng, saturation=(0.1, 0.5), value=(0.35, 0.75)),
        wave_vectors=rng.uniform(-0.8, 0.8, size=(num_waves, 2)).astype(np.float32),
        wave_phases=rng.uniform(0, 2 * np.pi, size=num_waves).astype(np.float32),
        wave_amplitudes=rng.uniform(0.03, 0.12, size=(num_waves, 3)).astype(np.float32),
        texture=_random_texture(rng, frequency=(4.0, 8.0)),
        texture_strength=float(rng.uniform(0.05, 0.15)),
    )
    textures = {name: _random_texture(rng) for name in PART_NAMES}
    return IdentityParams(
        background=background,
        torso_half=(float(rng.uniform(0.14, 0.2)), float(rng.uniform(0.22, 0.3))),
        head_radius=float(rng.uniform(0.11, 0.15)),
        upper_arm=float(rng.uniform(0.2, 0.26)),
        forearm=float(rng.uniform(0.18, 0.24)),
        leg=float(rng.uniform(0.26, 0.34)),
        limb_radius=float(rng.uniform(0.06, 0.08)),
        sprite_shape=str(rng.choice(['ellipse', 'rect'])),
        sprite_half=(float(rng.uniform(0.12, 0.2)), float(rng.uniform(0.08, 0.14))),
        sprite_in_front=bool(rng.uniform() < 0.5),
        textures=textures,
    )


# --------------------------------------------------------------------------------------------
# Motion (one per video)


def _smooth_signal(rng: np.random.Generator, num_frames: int, amplitude: float,
                   periods: tuple[float, float] = (24.0, 80.0), components: int = 3) -> np.ndarray:
    """A (T,) sum of slow sinusoids bounded by `amplitude`.

    Periods are in frames, so the speed per frame is bounded by amplitude * 2 pi / min period
    whatever the clip length: smooth, never teleporting.
    """
    t = np.arange(num_frames, dtype=np.float64)[:, None]
    frequencies = 1.0 / rng.uniform(*periods, size=components)
    phases = rng.uniform(0, 2 * np.pi, size=components)
    weights = rng.uniform(0.5, 1.0, size=components)
    weights /= weights.sum()
    return (amplitude * (weights * np.sin(2 * np.pi * frequencies * t + phases)).sum(axis=1)).astype(np.float32)


@dataclass(frozen=True)
class _Part:
    """One drawable part with per-frame pose; all arrays are (T,)."""

    name: str
    kind: str  # 'ellipse' | 'rect' | 'capsule'
    cx: np.ndarray
    cy: np.ndarray
    angle: np.ndarray
    size_a: np.ndarray  # half width (ellipse/rect) or length (capsule)
    size_b: np.ndarray  # half height (ellipse/rect) or radius (capsule)
    scale: np.ndarray  # texture scale, so patterns stretch with the part


def _rotate(angle: np.ndarray, x: float | np.ndarray, y: float | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rotate the local vector (x, y) by `angle` (image axes: x right, y down)."""
    c, s = np.cos(angle), np.sin(angle)
    return c * x - s * y, s * x + c * y


def _figure_parts(rng: np.random.Generator, ident: IdentityParams, num_frames: int) -> list[_Part]:
    """Draw one video's motion and return the parts in back-to-front order."""
    T = num_frames
    px = rng.uniform(-0.1, 0.1) + _smooth_signal(rng, T, 0.18)
    py = rng.uniform(-0.05, 0.05) + _smooth_signal(rng, T, 0.1)
    lean = _smooth_signal(rng, T, 0.35)
    scale = rng.uniform(1.05, 1.2) + _smooth_signal(rng, T, 0.1)
    breath = _smooth_signal(rng, T, 0.08, periods=(16.0, 40.0))
    nod = _smooth_signal(rng, T, 0.5)
    tw, th = ident.torso_half
    r = ident.limb_radius
    parts: list[_Part] = []

    # Legs hang from the hips, behind the torso.
    for side, name in ((-1.0, 'leg_l'), (1.0, 'leg_r')):
        hx, hy = _rotate(lean, side * tw * 0.5 * scale, th * 0.75 * scale)
        angle = np.pi / 2 - side * 0.25 + lean + _smooth_signal(rng, T, 0.35)
        parts.append(_Part(name, 'capsule', px + hx, py + hy, angle, ident.leg * scale, r * 1.2 * scale, scale))

    parts.append(_Part('torso', 'ellipse', px, py, lean, tw * scale * (1 + breath), th * scale * (1 - 0.5 * breath),
                       scale))

    # Arms: shoulder -> elbow -> wrist, each joint swinging on its own slow signal.
    arms = []
    for side, suffix in ((-1.0, 'l'), (1.0, 'r')):
        sx, sy = _rotate(lean, side * tw * 0.85 * scale, -th * 0.55 * scale)
        upper = np.pi / 2 - side * 0.6 + lean + _smooth_signal(rng, T, 1.0)
        ex, ey = px + sx + ident.upper_arm * scale * np.cos(upper), py + sy + ident.upper_arm * scale * np.sin(upper)
        fore = upper - side * (0.6 + _smooth_signal(rng, T, 0.6))
        arms.append((_Part(f'upper_arm_{suffix}', 'capsule', px + sx, py + sy, upper, ident.upper_arm * scale,
                           r * scale, scale),
                     _Part(f'forearm_{suffix}', 'capsule', ex, ey, fore, ident.forearm * scale, r * 0.9 * scale,
                           scale)))
    parts += [upper for upper, _ in arms] + [fore for _, fore in arms]

    hx, hy = _rotate(lean, 0.0, -(th + ident.head_radius * 0.85) * scale)
    parts.append(_Part('head', 'ellipse', px + hx, py + hy, lean + nod, ident.head_radius * scale,
                       ident.head_radius * 1.1 * scale, scale))

    # The sprite glides over a wide region and spins steadily, independent of the figure.
    spin = rng.choice([-1.0, 1.0]) * rng.uniform(0.03, 0.08)
    sprite_scale = 1.0 + _smooth_signal(rng, T, 0.15)
    sprite = _Part('sprite', ident.sprite_shape,
                   _smooth_signal(rng, T, 0.6, periods=(40.0, 100.0)) + rng.uniform(-0.1, 0.1),
                   _smooth_signal(rng, T, 0.55, periods=(40.0, 100.0)) + rng.uniform(-0.1, 0.1),
                   rng.uniform(0, 2 * np.pi) + spin * np.arange(T, dtype=np.float32) + _smooth_signal(rng, T, 0.3),
                   ident.sprite_half[0] * sprite_scale, ident.sprite_half[1] * sprite_scale, sprite_scale)
    return parts + [sprite] if ident.sprite_in_front else [sprite] + parts


# --------------------------------------------------------------------------------------------
# Rendering


def _pattern(texture: Texture, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Texture weights in [0, 1] at local coordinates (u, v); smooth so nothing aliases."""
    f = 2 * np.pi * texture.frequency
    if texture.kind == 'checker':
        return 0.5 + 0.5 * np.sin(f * u + texture.phase) * np.sin(f * v)
    along = np.cos(texture.angle) * u + np.sin(texture.angle) * v
    return 0.5 + 0.5 * np.sin(f * along + texture.phase)


def _paint(texture: Texture, weights: np.ndarray) -> np.ndarray:
    """Mix the texture's two colours by `weights` (...,) -> (..., 3)."""
    return texture.color_a + (texture.color_b - texture.color_a) * weights[..., None]


def _render_background(background: Background, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(H, W, 3) background from normalised pixel coordinates x (1, W) and y (H, 1)."""
    image = np.broadcast_to(background.base, y.shape[:1] + x.shape[1:] + (3,)).astype(np.float32)
    for (kx, ky), phase, amplitude in zip(background.wave_vectors, background.wave_phases,
                                          background.wave_amplitudes):
        image = image + amplitude * np.sin(2 * np.pi * (kx * x + ky * y) + phase)[..., None]
    pattern = _paint(background.texture, _pattern(background.texture, x + 0 * y, y + 0 * x))
    image = (1 - background.texture_strength) * image + background.texture_strength * pattern
    return image.astype(np.float32)


def _render_part(part: _Part, texture: Texture, x: np.ndarray, y: np.ndarray,
                 pixel: float) -> tuple[np.ndarray, np.ndarray]:
    """Anti-aliased coverage (T, H, W, 1) and colour (T, H, W, 3) of one part."""
    def per_frame(a: np.ndarray | float) -> np.ndarray:
        return np.asarray(a, dtype=np.float32).reshape(-1, 1, 1)  # (T, 1, 1) for broadcasting

    cx, cy, angle = per_frame(part.cx), per_frame(part.cy), per_frame(part.angle)
    a, b, scale = per_frame(part.size_a), per_frame(part.size_b), per_frame(part.scale)
    dx, dy = x[None] - cx, y[None] - cy  # (T, H, W)
    c, s = np.cos(angle), np.sin(angle)
    u, v = c * dx + s * dy, -s * dx + c * dy  # part-local coordinates
    if part.kind == 'ellipse':
        distance = (np.sqrt((u / a) ** 2 + (v / b) ** 2) - 1) * np.minimum(a, b)
    elif part.kind == 'rect':
        distance = np.maximum(np.abs(u) - a, np.abs(v) - b)
    elif part.kind == 'capsule':  # segment from the joint (u = 0) to u = length, radius b
        distance = np.sqrt((u - np.clip(u, 0, a)) ** 2 + v ** 2) - b
    else:
        raise ValueError(f'unknown part kind {part.kind!r}')
    coverage = np.clip(0.5 - distance / pixel, 0.0, 1.0)[..., None]
    colour = _paint(texture, _pattern(texture, u / scale, v / scale))
    return coverage.astype(np.float32), colour.astype(np.float32)


def _part_window(part: _Part, size: int) -> tuple[slice, slice] | None:
    """Pixel rows and columns that the part can touch in any frame, or None if it never shows.

    Rendering only this window (the union over time of the part's extent) instead of the whole
    frame makes small parts such as limbs several times cheaper at large frame sizes.
    """
    if part.kind == 'capsule':
        xs = np.stack([part.cx, part.cx + part.size_a * np.cos(part.angle)])
        ys = np.stack([part.cy, part.cy + part.size_a * np.sin(part.angle)])
        reach = part.size_b
    else:
        xs, ys = part.cx[None], part.cy[None]
        reach = np.hypot(part.size_a, part.size_b)  # bounding circle of the ellipse / rectangle

    def pixel_range(lo: float, hi: float) -> slice:
        # Normalised coordinate c lies at pixel (c + 1) / 2 * size - 0.5; add a pixel for the soft edge.
        start = int(np.floor((lo + 1) / 2 * size - 0.5)) - 1
        stop = int(np.ceil((hi + 1) / 2 * size - 0.5)) + 2
        return slice(max(0, start), min(size, stop))

    rows = pixel_range(float((ys - reach).min()), float((ys + reach).max()))
    cols = pixel_range(float((xs - reach).min()), float((xs + reach).max()))
    if rows.start >= rows.stop or cols.start >= cols.stop:
        return None
    return rows, cols


def make_video(rng: np.random.Generator, identity_params: IdentityParams, num_frames: int, size: int) -> np.ndarray:
    """Render one video of `identity_params` with motion drawn from `rng`: uint8 (T, H, W, 3).

    Same rng state and identity give the same pixels; frames are `size` x `size`.
    """
    if num_frames < 1 or size < 8:
        raise ValueError(f'need num_frames >= 1 and size >= 8, got num_frames={num_frames}, size={size}')
    coords = ((np.arange(size, dtype=np.float32) + 0.5) / size * 2 - 1)
    x, y = coords[None, :], coords[:, None]  # (1, W), (H, 1)
    pixel = 2.0 / size
    video = np.broadcast_to(_render_background(identity_params.background, x, y),
                            (num_frames, size, size, 3)).copy()  # (T, H, W, 3)
    for part in _figure_parts(rng, identity_params, num_frames):
        window = _part_window(part, size)
        if window is None:
            continue
        rows, cols = window
        coverage, colour = _render_part(part, identity_params.textures[part.name], x[:, cols], y[rows], pixel)
        region = video[:, rows, cols]  # a view: (T, h, w, 3)
        region += coverage * (colour - region)
    return np.round(np.clip(video, 0.0, 1.0) * 255).astype(np.uint8)


# --------------------------------------------------------------------------------------------
# Data set on disk


def identity_rng(seed: int, identity: int) -> np.random.Generator:
    """Generator for identity `identity`'s appearance; independent of how many ids are made."""
    return np.random.default_rng([seed, 0, identity])


def video_rng(seed: int, identity: int, video: int) -> np.random.Generator:
    """Generator for the motion of video `video` of identity `identity`."""
    return np.random.default_rng([seed, 1, identity, video])


def _write_video(frames: np.ndarray, path: str, fmt: str) -> None:
    """Write (T, H, W, 3) uint8 frames atomically as a folder of PNGs or an mp4 file."""
    if fmt == 'png':
        digits = max(4, len(str(len(frames) - 1)))
        with atomic_dir(path) as tmp:
            for t, frame in enumerate(frames):
                # Level 3 is ~2.5x faster to write than the default for ~10% larger files.
                write_image(os.path.join(tmp, f'{t:0{digits}d}.png'), frame, compress_level=3)
    else:
        # crf 10: nearly lossless, so decoded frames stay close to the render; a keyframe every
        # second keeps training's random access as cheap as PNG folders (docs/media.md).
        with VideoWriter(path, FPS, crf=10, keyframe_interval=25) as writer:
            writer.write(frames)


def generate_dataset(out: str, size: int = 64, num_ids: int = 8, videos_per_id: int = 4, frames: int = 32,
                     test_ids: int = 2, seed: int = 0, fmt: str = 'png', progress: bool = True) -> list[str]:
    """Write the synthetic data set under `out` (train/ and test/) and return the video paths.

    The last `test_ids` identities go to test/, so test identities are never seen in training.
    Existing videos of the same names are replaced atomically.
    """
    if fmt not in ('png', 'mp4'):
        raise ValueError(f'format must be "png" or "mp4", got {fmt!r}')
    if not 1 <= test_ids < num_ids:
        raise ValueError(f'need 1 <= test_ids < num_ids (both splits non-empty), got test_ids={test_ids}, '
                         f'num_ids={num_ids}')
    if videos_per_id < 1 or frames < 2:
        raise ValueError(f'need videos_per_id >= 1 and frames >= 2, got {videos_per_id} and {frames}')
    if fmt == 'mp4' and size % 2:
        raise ValueError(f'mp4 (yuv420p) needs an even frame size, got {size}')
    if seed < 0:
        raise ValueError(f'seed must be >= 0, got {seed}')
    jobs = [(i, k) for i in range(num_ids) for k in range(videos_per_id)]
    paths = []
    identities: dict[int, IdentityParams] = {}
    for i, k in tqdm(jobs, desc='synthetic videos', unit='video', disable=not progress):
        if i not in identities:
            identities[i] = sample_identity(identity_rng(seed, i))
        split = 'test' if i >= num_ids - test_ids else 'train'
        name = f'id{i:03d}#{k:03d}' + ('.mp4' if fmt == 'mp4' else '')
        path = os.path.join(out, split, name)
        _write_video(make_video(video_rng(seed, i, k), identities[i], frames, size), path, fmt)
        paths.append(path)
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('--out', default='data/synthetic', help='output folder (train/ and test/ are created)')
    parser.add_argument('--size', type=int, default=64, help='frame height and width in pixels')
    parser.add_argument('--num_ids', type=int, default=8, help='number of identities (appearances)')
    parser.add_argument('--videos_per_id', type=int, default=4, help='videos per identity')
    parser.add_argument('--frames', type=int, default=32, help='frames per video')
    parser.add_argument('--test_ids', type=int, default=2, help='identities held out for test/')
    parser.add_argument('--seed', type=int, default=0, help='random seed')
    parser.add_argument('--format', choices=('png', 'mp4'), default='png',
                        help='folders of PNG frames (fast to train on) or mp4 files')
    args = parser.parse_args(argv)
    try:
        paths = generate_dataset(args.out, args.size, args.num_ids, args.videos_per_id, args.frames, args.test_ids,
                                 args.seed, args.format)
    except ValueError as err:
        parser.error(str(err))
    print(f'wrote {len(paths)} videos to {args.out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
