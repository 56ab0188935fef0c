"""Pixel formats: uint8, uint16 and float frames converted to one another."""
from __future__ import annotations

import numpy as np


def _to_float01(arr: np.ndarray) -> np.ndarray:
    """uint8 / uint16 / float array -> float32 in [0, 1] (integers divided by their dtype max)."""
    if arr.dtype == np.uint8:
        return np.divide(arr, np.float32(255.0), dtype=np.float32)
    if arr.dtype == np.uint16:
        return np.divide(arr, np.float32(65535.0), dtype=np.float32)
    if np.issubdtype(arr.dtype, np.floating):
        return arr.astype(np.float32, copy=False)
    raise TypeError(f'expected a uint8, uint16 or float image, got dtype {arr.dtype}')


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    """uint8 / uint16 / float-in-[0,1] array -> uint8 (rounded, clipped)."""
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.uint16:
        return ((arr.astype(np.uint32) + 128) // 257).astype(np.uint8)
    if np.issubdtype(arr.dtype, np.floating):
        return np.clip(np.rint(arr * 255.0), 0, 255).astype(np.uint8)
    raise TypeError(f'expected uint8, uint16 or float frames, got dtype {arr.dtype}')
