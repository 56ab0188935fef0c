"""Reading: frames folders, random access to chosen frames, and the streaming VideoReader."""
from __future__ import annotations

import contextlib
import functools
import math
import os
import re
import warnings
import weakref
from fractions import Fraction
from typing import Iterable, Iterator, Sequence

import numpy as np

from .decoding import _Decoding, _decode_at, _frame_array, _frame_rate, _video_index
from .errors import MediaError, MediaWarning, PathLike, _check_fps, _error, _exact_rate, _note_resize, _show
from .images import IMAGE_EXTENSIONS, read_image
from .pixels import _to_float01, _to_uint8
from .resize import ResizeMethod, _check_size, resize_frame

#: Frame rate reported for a folder of frames that does not record one (and no ``fps`` was given).
DEFAULT_FOLDER_FPS = 25.0

def _natural_key(name: str) -> list:
    """Sort key putting 'frame2.png' before 'frame10.png'."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r'(\d+)', name)]


# ----------------------------------------------------------------------------------------------
# Folders of frames
# ----------------------------------------------------------------------------------------------

_DIGITS_TO_ZERO = str.maketrans('123456789', '000000000')


def list_frame_files(folder: PathLike) -> list[str]:
    """Image files of a frames folder in natural order (``2.png`` before ``10.png``), hidden ones skipped."""
    folder = os.fspath(folder)
    with os.scandir(folder) as entries:   # no stat per file: a training sample lists its folder
        names = [e.name for e in entries
                 if e.name.lower().endswith(IMAGE_EXTENSIONS) and not e.name.startswith('.') and e.is_file()]
    if len({name.translate(_DIGITS_TO_ZERO) for name in names}) > 1:
        names.sort(key=_natural_key)   # names of one shape (zero-padded numbers) sort right as they are
    else:
        names.sort()
    return [os.path.join(folder, n) for n in names]


def _folder_fps_tag(first_frame: str) -> float | None:
    """The frame rate VideoWriter records in its PNG frames (text chunk 'fps'), if present."""
    from PIL import Image

    with contextlib.suppress(Exception):
        with Image.open(first_frame) as im:
            value = float(getattr(im, 'text', {}).get('fps', 'nan'))
            if math.isfinite(value) and value > 0:
                return value
    return None


def read_frames(path: PathLike, indices: Iterable[int]) -> dict[int, np.ndarray]:
    """Frames ``indices`` of a video file or frames folder, decoding only what they need.

    Returns ``{index: frame}``: uint8 ``(H, W, 3)`` RGB for videos (upright), for folders what
    :func:`read_image` gives (uint8, or uint16 for 16-bit files). A video frame costs decoding from
    the keyframe before it: clips with keyframes every second are read at about the speed of PNG
    folders (see docs/media.md). Raises IndexError for an index past the end and MediaError for
    unreadable files.
    """
    p = os.fspath(path)
    if not os.path.isdir(p):
        return _decode_at(p, indices)
    files = list_frame_files(p)
    out = {}
    for i in set(int(i) for i in indices):
        if not 0 <= i < len(files):
            raise IndexError(f'frame {i} out of range: {_show(p)} has {len(files)} frames')
        out[i] = read_image(files[i])
    return out


# ----------------------------------------------------------------------------------------------
# Reading videos
# ----------------------------------------------------------------------------------------------

class VideoReader:
    """Stream the frames of a video file (anything FFmpeg decodes) or of a folder of image frames.

    ``fps`` overrides the reported rate (frames are never resampled); a folder reports this, else
    the rate :class:`VideoWriter` stored in its PNGs, else 25. ``strict``: when decoding meets damaged
    data, every frame that decodes is yielded, then :class:`MediaError` is raised (``True``, for the
    demo and evaluation) or a :class:`MediaWarning` issued (``False``). :meth:`check_tail` finds such
    damage up front. A file in which no frame decodes raises :class:`MediaError` from the
    constructor, which decodes the first frame as a probe.

    Attributes: ``path``, ``fps`` (float), ``frame_rate`` (exact Fraction), ``size`` = (width,
    height) as displayed (rotation metadata applied), ``width``, ``height``, ``has_audio``,
    ``duration`` (seconds, from the container, or None), ``is_folder``, ``num_frames``,
    ``estimated_num_frames``. Each ``iter()`` decodes from the first frame, in timestamp order, one
    frame at a time (memory does not grow with length); closing the iterator closes the file.
    """

    def __init__(self, path: PathLike, *, fps: float | None = None, strict: bool = False) -> None:
        self.path = os.fspath(path)
        self.strict = strict
        self._decodes: weakref.WeakSet[_Decoding] = weakref.WeakSet()
        self.duration: float | None = None
        self.has_audio = False
        self._num_frames: int | None = None
        self._container_frames: int | None = None
        self._noted_resize = False
        if fps is not None:
            _check_fps(fps)
        self.is_folder = os.path.isdir(self.path)
        if self.is_folder:
            self._files = list_frame_files(self.path)
            if not self._files:
                raise _error('frames folder', self.path,
                             f'it contains no image files ({", ".join(IMAGE_EXTENSIONS)})')
            self._first = _to_uint8(read_image(self._files[0]))
            self._stored_size = None
            rate = fps if fps is not None else (_folder_fps_tag(self._files[0]) or DEFAULT_FOLDER_FPS)
            self._num_frames = len(self._files)
        else:
            if not os.path.exists(self.path):
                raise _error('video', self.path, 'no such file or folder')
            self._files = []
            rate = self._probe_video(fps)
        self.frame_rate = _exact_rate(rate)
        self.fps = float(self.frame_rate)
        self.height, self.width = int(self._first.shape[0]), int(self._first.shape[1])

    def _probe_video(self, fps: float | None) -> Fraction | float:
        """Decode the first frame (so a file with no decodable frame fails now) and read the metadata."""
        decode = _Decoding(self.path)
        try:
            first = next(decode.frames(), None)
            if first is None:
                raise _error('video', self.path, decode.problem or 'no frame could be decoded')
            stream, container = decode.stream, decode.container
            self._stored_size = (first.width, first.height)
            self._first = _frame_array(first)
            self.has_audio = bool(container.streams.audio)
            self.duration = container.duration / 1_000_000 if container.duration else None
            self._container_frames = stream.frames or None
            index = None
            if stream.codec_context.name == 'gif':   # frame delays vary: count them (GIFs are small)
                index = _video_index(self.path)
                self._num_frames = len(index.pts)
            native = _frame_rate(stream, index)
        finally:
            decode.close()
        if fps is None and native is None:
            warnings.warn(f'video {_show(self.path)} does not state its frame rate; assuming '
                          f'{DEFAULT_FOLDER_FPS:g} fps', MediaWarning, stacklevel=3)
        return fps if fps is not None else (native or DEFAULT_FOLDER_FPS)

    # -- metadata ---------------------------------------------------------------------------------

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the frames."""
        return self.width, self.height

    @property
    def num_frames(self) -> int | None:
        """Exact number of frames iteration yields, or None when not known without decoding.

        Known up front for folders and GIFs. For other videos it is None until a full iteration
        has finished (then cached); call :func:`count_frames` to count them. Use
        :attr:`estimated_num_frames` for progress bars.
        """
        return self._num_frames

    @property
    def estimated_num_frames(self) -> int | None:
        """:attr:`num_frames` if known, else the container's frame count, else ``round(duration * fps)``."""
        if self._num_frames is not None:
            return self._num_frames
        if self._container_frames:
            return self._container_frames
        if self.duration:
            return max(1, round(self.duration * self.fps))
        return None

    def __repr__(self) -> str:
        return (f'VideoReader({self.path!r}, fps={self.frame_rate}, size={self.size}, '
                f'num_frames={self._num_frames}, has_audio={self.has_audio})')

    # -- frames -----------------------------------------------------------------------------------

    def __iter__(self) -> Iterator[np.ndarray]:
        return self._iter_folder() if self.is_folder else self._iter_video()

    def _load_folder_frame(self, file: str) -> np.ndarray:
        frame = _to_uint8(read_image(file))
        if frame.shape[:2] != (self.height, self.width):
            raise _error('frames folder', self.path, f'frame {_show(os.path.basename(file))} is '
                         f'{frame.shape[1]}x{frame.shape[0]}, the first frame is {self.width}x{self.height}')
        return frame

    def _iter_folder(self) -> Iterator[np.ndarray]:
        for file in self._files:
            yield self._load_folder_frame(file)

    def _problem(self, count: int, reason: str) -> None:
        msg = f'video {_show(self.path)}: decoding stopped or failed after {count} frames: {reason}'
        if self.strict:
            raise MediaError(msg, path=self.path, reason=reason)
        warnings.warn(msg + '; using the frames that decoded', MediaWarning, stacklevel=3)

    def _iter_video(self) -> Iterator[np.ndarray]:
        decode = _Decoding(self.path)
        self._decodes.add(decode)
        try:
            count = 0
            for frame in decode.frames():
                count += 1
                yield _frame_array(frame, self._stored_size)
            self._num_frames = count
            if decode.problem is not None:
                self._problem(count, decode.problem)
        finally:
            decode.close()

    def iter_batches(self, batch_size: int, size: Sequence[int] | None = None, *,
                     method: ResizeMethod = 'fast') -> Iterator[np.ndarray]:
        """Yield float32 ``(B, h, w, 3)`` batches in ``[0, 1]`` (the last one may be shorter).

        ``size=(h, w)`` resizes every frame with :func:`resize_frame` (skimage-equivalent), with one
        :class:`MediaWarning` per reader when that changes the aspect ratio; None keeps the native size.
        """
        if batch_size < 1:
            raise ValueError(f'batch_size must be >= 1, got {batch_size}')
        h, w = _check_size(size) if size is not None else (self.height, self.width)
        if size is not None and not self._noted_resize:
            self._noted_resize = True
            _note_resize(self.path, 'video', (self.height, self.width), (h, w))
        batch = np.empty((batch_size, h, w, 3), dtype=np.float32)
        n = 0
        for frame in self:
            batch[n] = _to_float01(frame) if size is None else resize_frame(frame, (h, w), method=method)
            n += 1
            if n == batch_size:
                yield batch
                batch = np.empty_like(batch)
                n = 0
        if n:
            yield batch[:n]

    def read_frame(self, index: int) -> np.ndarray:
        """Frame ``index`` (0-based; negative counts from the end) as uint8 ``(H, W, 3)``.

        For videos this decodes from the keyframe before ``index`` (exact: frames are found by
        their timestamps); use iteration to visit many frames. Raises IndexError when out of range.
        """
        index = int(index)
        total = len(self._files) if self.is_folder else None
        if index < 0:
            total = total if total is not None else len(_video_index(self.path).pts)
            index += total
            if index < 0:
                raise IndexError(f'frame index out of range: {_show(self.path)} has {total} frames')
        if self.is_folder:
            if index >= len(self._files):
                raise IndexError(f'frame {index} out of range: {_show(self.path)} has {len(self._files)} frames')
            return self._load_folder_frame(self._files[index])
        return self._first.copy() if index == 0 else _decode_at(self.path, [index])[index]

    def check_tail(self) -> str | None:
        """Check now that the video decodes to its end; return the problem, or None.

        A video cut off or damaged near its end otherwise shows only after everything before it was
        decoded (and animated). This reads the container's packets (no decoding) and decodes the
        last frame from the keyframe before it. With ``strict=True`` a problem raises :class:`MediaError`.
        """
        if self.is_folder:
            return None
        index = _video_index(self.path)
        reason = index.problem
        if reason is None:
            try:
                _decode_at(self.path, [len(index.pts) - 1])
            except MediaError as err:
                reason = err.reason
        if reason is not None and self.strict:
            raise _error('video', self.path, reason)
        return reason

    def close(self) -> None:
        """Close any decoding still open for an unfinished iteration."""
        for decode in list(self._decodes):
            decode.close()

    def __enter__(self) -> 'VideoReader':
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@functools.lru_cache(maxsize=1024)
def _count_decoded(path: str, size: int, mtime_ns: int) -> int:
    count = 0
    decode = _Decoding(path)
    try:
        for _ in decode.frames():
            count += 1
    finally:
        decode.close()
    if count == 0:
        raise _error('video', path, decode.problem or 'no frame could be decoded')
    return count


def count_frames(path: PathLike) -> int:
    """Exact number of frames :class:`VideoReader` yields for ``path``.

    For a folder: the number of image files. For a video: the number of frames its packets hold,
    read from the container without decoding, when they are complete; otherwise (damaged or
    truncated files) every frame is decoded and counted, once per file version. Raises
    :class:`MediaError` if the video cannot be opened.
    """
    p = os.fspath(path)
    if os.path.isdir(p):
        return len(list_frame_files(p))
    index = _video_index(p)
    if index.problem is None:
        return len(index.pts)
    st = os.stat(p)
    return _count_decoded(os.path.abspath(p), st.st_size, st.st_mtime_ns)


def damage(path: PathLike) -> str | None:
    """Why the packets of the video at ``path`` are incomplete (a cut-off copy, damaged data), in
    words, or None (also for a folder). Reads the container's index, no frame, once per file version."""
    p = os.fspath(path)
    return None if os.path.isdir(p) else _video_index(p).problem

