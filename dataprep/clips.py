"""Clip writers: each clip appears at its path complete, or not at all.

* ``.mp4``: :class:`media.VideoWriter` (H.264, built under a temporary name, renamed at the
  end) with a keyframe every second, so that training, which decodes a sampled frame from the
  keyframe before it, reads a clip about as fast as PNG frames.
* ``.png``: a folder named like the clip (``...#000123.mp4``, as load_videos.py names it) of
  ``0000000.png``, ``0000001.png``... filled under a temporary name and renamed at the end.
"""
from __future__ import annotations

import contextlib
import os
import shutil

import numpy as np

from media.files import atomic_dir
from media import VideoWriter, write_image

FORMATS = ('.mp4', '.png')

# zlib level 3: about 3x faster than Pillow's default 6 for ~7% larger frames.
PNG_COMPRESS_LEVEL = 3


class _Abort(Exception):
    """Raised into the temporary folder's context so that it is removed."""


class PngClipWriter:
    """A folder of 7-digit-numbered PNG frames, renamed onto `path` by close()."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.frames_written = 0
        self._stack = contextlib.ExitStack()
        self._tmp = self._stack.enter_context(atomic_dir(path))

    def write(self, frame: np.ndarray) -> None:
        write_image(os.path.join(self._tmp, f'{self.frames_written:07d}.png'), frame,
                    compress_level=PNG_COMPRESS_LEVEL)
        self.frames_written += 1

    def close(self) -> None:
        self._stack.close()

    def abort(self) -> None:
        self._stack.__exit__(_Abort, _Abort(), None)


class Mp4ClipWriter:
    """An H.264 clip at the source's frame rate with a keyframe every second."""

    def __init__(self, path: str, fps) -> None:
        self.path = path
        self._writer = VideoWriter(path, fps, keyframe_interval=max(1, round(float(fps))))

    @property
    def frames_written(self) -> int:
        return self._writer.frames_written

    def write(self, frame: np.ndarray) -> None:
        self._writer.write(frame)

    def close(self) -> None:
        self._writer.close()

    def abort(self) -> None:
        self._writer.abort()


def open_clip(path: str, fmt: str, fps) -> PngClipWriter | Mp4ClipWriter:
    """A writer for one clip in `fmt` ('.mp4' or '.png')."""
    return Mp4ClipWriter(path, fps) if fmt == '.mp4' else PngClipWriter(path)


def clip_done(path: str, fmt: str) -> bool:
    """True when the clip is already there in `fmt` (a finished earlier run)."""
    return os.path.isfile(path) if fmt == '.mp4' else os.path.isdir(path)


def remove_leftovers(folder: str) -> int:
    """Delete the temporaries a killed run left in `folder` (hidden '.<clip>.*.part*' entries).

    Called once per partition before a run starts; returns how many were removed.
    """
    removed = 0
    with contextlib.suppress(FileNotFoundError):
        for entry in os.listdir(folder):
            if not (entry.startswith('.') and '.part' in entry):
                continue
            full = os.path.join(folder, entry)
            if os.path.isdir(full):
                shutil.rmtree(full, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    os.remove(full)
            removed += 1
    return removed
