"""Media errors and warnings: one line naming the file and the problem."""
from __future__ import annotations

import math
import os
import warnings
from fractions import Fraction
from typing import Union

PathLike = Union[str, 'os.PathLike[str]']

ASPECT_NOTE_TOLERANCE = 0.01


class MediaError(Exception):
    """A media file could not be read or written; the message names the file and the problem.

    ``path`` and ``reason`` hold the file and the problem on their own (for callers that word the
    message differently); both may be None for errors raised outside this module.
    """

    def __init__(self, message: str, *, path: str | None = None, reason: str | None = None) -> None:
        super().__init__(message)
        self.path, self.reason = path, reason


class MediaWarning(UserWarning):
    """Non-fatal note about a media file (missing audio track, undecodable tail, ...)."""


def _show(path: PathLike) -> str:
    """The path as the user gave it, quoted, for messages."""
    return repr(os.fspath(path))


def _error(what: str, path: PathLike, reason: str, verb: str = 'read') -> MediaError:
    """``MediaError('cannot read video 'x.mp4': reason')`` with its parts attached."""
    return MediaError(f'cannot {verb} {what} {_show(path)}: {reason}', path=os.fspath(path), reason=reason)


def _check_input_file(path: PathLike, what: str) -> str:
    """Return ``path`` as str after checking it is an existing, readable, non-empty file."""
    p = os.fspath(path)
    if not os.path.exists(p):
        raise _error(what, p, 'no such file')
    if os.path.isdir(p):
        raise _error(what, p, 'it is a folder, not a file')
    if not os.access(p, os.R_OK):
        raise _error(what, p, 'permission denied')
    if os.path.getsize(p) == 0:
        raise _error(what, p, 'the file is empty (0 bytes)')
    return p


def _check_fps(fps: float | Fraction) -> float | Fraction:
    try:
        ok = math.isfinite(float(fps)) and float(fps) > 0
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f'fps must be a positive finite number, got {fps!r}')
    return fps


def _exact_rate(fps: float | Fraction) -> Fraction:
    """``fps`` as a fraction; floats such as 29.97002997 become 30000/1001."""
    return Fraction(fps).limit_denominator(1_001_000)


def _note_resize(path: PathLike, what: str, old: tuple[int, int], new: tuple[int, int]) -> None:
    """A MediaWarning when resizing ``old`` = (h, w) to ``new`` changes the aspect ratio."""
    (h0, w0), (h1, w1) = old, new
    if abs((w1 / h1) / (w0 / h0) - 1) > ASPECT_NOTE_TOLERANCE:
        warnings.warn(f'{what} {_show(path)} was resized from {w0}x{h0} to the animation size {w1}x{h1}: '
                      f'its aspect ratio changed (crop it to {w1}:{h1} first to avoid distortion)',
                      MediaWarning, stacklevel=3)

