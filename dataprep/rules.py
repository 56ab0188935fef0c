"""The frame and box rules of video-preprocessing's load_videos.py, computed once per segment.

load_videos.py tests every decoded frame ``i`` of a source against every segment with
``i * fps_meta >= start * fps_file and i * fps_meta < end * fps_file`` and crops it with the
segment's box scaled from the metadata's frame size to the file's, each side truncated by
``int(side / (meta_size / file_size))``. Both are monotonic, so a segment is a contiguous frame
range, found here with the same floating-point expressions (same results at the boundaries).
"""
from __future__ import annotations

import math
from fractions import Fraction


def file_fps(rate: Fraction | float) -> float:
    """The file's frame rate as load_videos.py sees it.

    It reads imageio-ffmpeg's ``fps``, parsed from the rate the ffmpeg program prints: the
    average rate rounded to 2 decimals (``29.97`` for 30000/1001). Using the exact rate would move
    a segment's first frame by one whenever the metadata says ``29.97`` for such a file.
    """
    return round(float(rate) * 100) / 100


def _first_at_or_after(bound: float, meta_fps: float, fps: float) -> int:
    """Smallest i >= 0 with ``i * meta_fps >= bound * fps`` (the reference's comparison, exactly)."""
    target = bound * fps
    i = max(0, math.floor(target / meta_fps) - 1)
    while not i * meta_fps >= target:
        i += 1
    return i


def frame_range(start: int, end: int, meta_fps: float, fps: float) -> range:
    """Indices of the file's frames that belong to the segment [start, end) given at `meta_fps`."""
    return range(_first_at_or_after(start, meta_fps, fps), _first_at_or_after(end, meta_fps, fps))


def scale_box(box: tuple[int, int, int, int], meta_size: tuple[int, int],
              frame_size: tuple[int, int]) -> tuple[int, int, int, int]:
    """Box from metadata pixels (meta_size = (width, height)) to file pixels, truncated as the reference."""
    left, top, right, bottom = box
    meta_w, meta_h = meta_size
    w, h = frame_size
    return (int(left / (meta_w / w)), int(top / (meta_h / h)),
            int(right / (meta_w / w)), int(bottom / (meta_h / h)))


def crop_window(box: tuple[int, int, int, int], frame_size: tuple[int, int]) -> tuple[slice, slice] | None:
    """(rows, cols) slices that ``frame[top:bottom, left:right]`` takes, or None if that is empty.

    Boxes of the official CSVs do reach past the frame (VoxCeleb boxes below a 720-pixel frame's
    bottom): slicing keeps the part inside, as in the reference. Only a box with nothing inside is
    refused. Sides are non-negative (the CSV format cannot write a minus sign).
    """
    left, top, right, bottom = box
    w, h = frame_size
    if min(right, w) <= left or min(bottom, h) <= top:
        return None
    return slice(top, min(bottom, h)), slice(left, min(right, w))
