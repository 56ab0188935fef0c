"""Image and video input/output: every video, and every image the project reads, goes through here.

* images: :func:`load_image` (float32 RGB in [0, 1], optionally resized), :func:`read_image`.
* resizing: :func:`resize_frame` / :func:`resize_frames` equal ``skimage.transform.resize(img, (h, w),
  anti_aliasing=True)`` (the references' call) to float32 rounding, about 10x faster.
* videos: :class:`VideoReader` streams uint8 ``(H, W, 3)`` RGB frames of a video file or a folder of
  frames; :func:`read_frames` decodes chosen frames only (random access for training).
* writing: :class:`VideoWriter` writes H.264 ``.mp4``, ``.gif`` or PNG folders, incrementally and
  atomically, optionally with another file's audio.

Videos are decoded and encoded in-process by PyAV (FFmpeg's libraries): no ffmpeg process, no log
parsing. docs/media.md describes the behaviour (rates, counts, rotation, random access, audio).
Problems with a file raise :class:`MediaError`, one line naming the file and the problem; programming
errors raise ``ValueError`` / ``TypeError``; non-fatal notes are :class:`MediaWarning` warnings.
"""
from __future__ import annotations

import bisect
import contextlib
import functools
import math
import os
import re
import threading
import warnings
import weakref
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Iterable, Iterator, Literal, Sequence, Union

import numpy as np

from fileio import atomic_dir, atomic_path

if TYPE_CHECKING:
    import av

__all__ = [
    'IMAGE_EXTENSIONS',
    'MediaError',
    'MediaWarning',
    'VideoReader',
    'VideoWriter',
    'count_frames',
    'damage',
    'ffmpeg_exe',
    'list_frame_files',
    'load_image',
    'read_frames',
    'read_image',
    'resize_frame',
    'resize_frames',
    'write_image',
]

PathLike = Union[str, 'os.PathLike[str]']
ResizeMethod = Literal['fast', 'skimage']

#: File extensions recognised as image frames inside a frames folder (lower case, with the dot).
IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp')

#: Frame rate reported for a folder of frames that does not record one (and no ``fps`` was given).
DEFAULT_FOLDER_FPS = 25.0

#: An aspect ratio changed by more than this fraction by a resize gets a note (410x412 -> 256x256 does not).
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


# ----------------------------------------------------------------------------------------------
# Small helpers
# ----------------------------------------------------------------------------------------------

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


def _natural_key(name: str) -> list:
    """Sort key putting 'frame2.png' before 'frame10.png'."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r'(\d+)', name)]


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


# ----------------------------------------------------------------------------------------------
# Images
# ----------------------------------------------------------------------------------------------

def read_image(path: PathLike) -> np.ndarray:
    """Decode an image file to an ``(H, W, 3)`` array: uint8, uint16 (16-bit sources) or float32.

    See :func:`load_image` for the conversion rules (grayscale to RGB, alpha dropped, EXIF applied).
    """
    from PIL import Image, ImageOps

    p = _check_input_file(path, 'image')
    try:
        with Image.open(p) as im:
            im.seek(0)  # multi-frame files (animated GIF/TIFF/WebP): the first frame
            im.load()
            with warnings.catch_warnings():
                warnings.simplefilter('ignore')  # EXIF parsing chatter on odd files
                im = ImageOps.exif_transpose(im)
            mode = im.mode
            if mode in ('I;16', 'I;16L', 'I;16B', 'I;16N', 'I'):
                # 16-bit grayscale ('I' is how some Pillow versions/format plugins deliver it).
                arr = np.clip(np.asarray(im).astype(np.int64), 0, 65535).astype(np.uint16)
            elif mode == 'F':
                arr = np.clip(np.asarray(im, dtype=np.float32), 0.0, 1.0)
            elif mode in ('1', 'L'):
                arr = np.asarray(im.convert('L'))
            elif mode == 'RGB':
                arr = np.asarray(im)
            elif mode in ('P', 'PA', 'LA', 'La', 'RGBA', 'RGBa'):
                # Palette images may carry transparency: expand to RGBA, then drop alpha.
                arr = np.asarray(im.convert('RGBA'))[..., :3]
            else:  # CMYK, YCbCr, LAB, HSV, RGBX, ...
                arr = np.asarray(im.convert('RGB'))
    except MediaError:
        raise
    except Image.UnidentifiedImageError:
        raise _error('image', p, 'not an image file (format not recognised)') from None
    except Image.DecompressionBombError as err:
        raise _error('image', p, str(err)) from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError) as err:
        raise _error('image', p, f'damaged or truncated image ({str(err) or type(err).__name__})') from None
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise _error('image', p, 'the image has zero size')
    return np.ascontiguousarray(arr)


def write_image(path: PathLike, image: np.ndarray, **options) -> None:
    """Write an ``(H, W[, 3])`` image, uint8 or float in [0, 1]; the format follows the extension.

    ``options`` go to Pillow (e.g. ``compress_level=3`` for faster, slightly larger PNGs). Not atomic
    by itself: write into ``fileio.atomic_path`` / ``atomic_dir``.
    """
    from PIL import Image

    try:
        Image.fromarray(_to_uint8(np.asarray(image))).save(os.fspath(path), **options)
    except OSError as err:
        raise _error('image', path, err.strerror or str(err), verb='write') from None


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


def load_image(path: PathLike, size: tuple[int, int] | None = None) -> np.ndarray:
    """Read an image file as float32 RGB ``(H, W, 3)`` in ``[0, 1]``.

    * 8-bit images are divided by 255, 16-bit grayscale PNG/TIFF (Pillow modes ``I;16``/``I``) by
      65535. 16-bit *RGB* PNGs are delivered by Pillow as 8-bit, so they keep only 8 bits of
      precision (still correctly scaled).
    * Grayscale and 1-bit images are replicated to 3 channels (the reference code's
      ``resize(img)[..., :3]`` would mis-handle them).
    * Alpha (RGBA, LA, palette with transparency) is **dropped**, not composited, exactly like the
      references' ``[..., :3]``: fully transparent pixels show whatever colour they store.
    * Palette, CMYK, YCbCr, ... are converted to RGB; for multi-frame files the first frame is used.
    * The EXIF orientation tag is applied, so phone photos come out upright (the references'
      ``imageio.imread`` ignores it).

    ``size=(h, w)``, if given, resizes with :func:`resize_frame` (skimage-equivalent anti-aliasing);
    a :class:`MediaWarning` says so when that changes the aspect ratio (a stretched face animates
    worse). Raises :class:`MediaError` for a missing, empty, unreadable, non-image or damaged file.
    """
    img = _to_float01(read_image(path))
    if size is not None:
        _note_resize(path, 'image', img.shape[:2], _check_size(size))
        img = resize_frame(img, size)
    return img


# ----------------------------------------------------------------------------------------------
# Resizing
# ----------------------------------------------------------------------------------------------

def _mirror(index: np.ndarray, n: int) -> np.ndarray:
    """Map integer indices into ``[0, n)`` by mirror reflection (``d c b | a b c d | c b a``).

    This is scipy.ndimage's 'mirror' mode, which is what skimage's ``mode='reflect'`` becomes.
    """
    if n == 1:
        return np.zeros_like(index)
    period = 2 * (n - 1)
    index = np.abs(index) % period
    return np.where(index >= n, period - index, index)


@functools.lru_cache(maxsize=64)
def _resize_matrix(n_in: int, n_out: int):
    """Sparse ``(n_out, n_in)`` float32 matrix doing skimage's resize along one axis.

    skimage's ``resize(..., anti_aliasing=True)`` is, per axis, a Gaussian blur with
    ``sigma = max(0, (n_in / n_out - 1) / 2)`` (scipy ``gaussian_filter``: truncate 4, mirror
    borders), then linear interpolation at ``(o + 0.5) * n_in / n_out - 0.5`` (scipy ``zoom``,
    ``grid_mode=True``, mirror borders). Both are linear and separable, so the whole resize is
    ``A_y @ image @ A_x.T`` with these banded matrices.
    """
    import scipy.sparse as sparse

    factor = n_in / n_out
    blur = sparse.identity(n_in, format='csr', dtype=np.float64)
    sigma = max(0.0, (factor - 1.0) / 2.0)
    if n_out < n_in and sigma > 1e-15:
        radius = int(4.0 * sigma + 0.5)
        offsets = np.arange(-radius, radius + 1)
        weights = np.exp(-0.5 * offsets.astype(np.float64) ** 2 / sigma ** 2)
        weights /= weights.sum()
        rows = np.repeat(np.arange(n_in), offsets.size)
        cols = _mirror((np.arange(n_in)[:, None] + offsets[None, :]).ravel(), n_in)
        blur = sparse.csr_matrix((np.tile(weights, n_in), (rows, cols)), shape=(n_in, n_in))
    coord = (np.arange(n_out) + 0.5) * factor - 0.5
    left = np.floor(coord).astype(np.int64)
    frac = coord - left
    rows = np.concatenate([np.arange(n_out), np.arange(n_out)])
    cols = np.concatenate([_mirror(left, n_in), _mirror(left + 1, n_in)])
    data = np.concatenate([1.0 - frac, frac])
    interp = sparse.csr_matrix((data, (rows, cols)), shape=(n_out, n_in))
    matrix = (interp @ blur).tocsr().astype(np.float32)
    matrix.eliminate_zeros()
    return matrix


def _check_size(size: Sequence[int]) -> tuple[int, int]:
    if len(size) < 2:
        raise ValueError(f'size must be (height, width), got {size!r}')
    h, w = int(size[0]), int(size[1])
    if h <= 0 or w <= 0:
        raise ValueError(f'size must be positive, got {size!r}')
    return h, w


def _resize_fast(x: np.ndarray, h: int, w: int) -> np.ndarray:
    """Resize one float32 ``(H, W, C)`` image with the sparse separable matrices."""
    H, W, C = x.shape
    if (H, W) == (h, w):
        return x.copy()
    tmp = _resize_matrix(H, h) @ x.reshape(H, W * C)             # (h, W*C)
    tmp = tmp.reshape(h, W, C).transpose(1, 0, 2).reshape(W, h * C)
    out = _resize_matrix(W, w) @ tmp                              # (w, h*C)
    return np.ascontiguousarray(out.reshape(w, h, C).transpose(1, 0, 2), dtype=np.float32)


def resize_frame(frame: np.ndarray, size: Sequence[int], *, method: ResizeMethod = 'fast') -> np.ndarray:
    """Anti-aliased resize of one image to ``size = (h, w)``; returns float32 in the input's range.

    ``frame``: ``(H, W)`` or ``(H, W, C)``, uint8 (divided by 255), uint16 (by 65535) or float
    (used as is). The result equals ``skimage.transform.resize(frame, (h, w), anti_aliasing=True)``
    (bilinear, Gaussian pre-filter when shrinking, 'reflect' borders, clipped to the input's range),
    which is what the FOMM/TPSMM references call:

    * ``method='fast'`` (default) applies that same linear operator as two sparse matrix products;
      it matches skimage to float32 rounding (~1e-4 of a grey level) on any content and is ~10x
      faster (about 0.7 ms vs 8 ms for 410x412 -> 256x256 on one CPU core).
    * ``method='skimage'`` calls skimage itself.
    """
    frame = np.asarray(frame)
    if frame.ndim not in (2, 3):
        raise ValueError(f'expected an (H, W) or (H, W, C) image, got shape {frame.shape}')
    h, w = _check_size(size)
    if method == 'skimage':
        from skimage.transform import resize

        return resize(frame, (h, w), anti_aliasing=True).astype(np.float32)
    if method != 'fast':
        raise ValueError(f"method must be 'fast' or 'skimage', got {method!r}")
    x = _to_float01(frame)
    squeeze = x.ndim == 2
    if squeeze:
        x = x[:, :, None]
    out = _resize_fast(x, h, w)
    if frame.dtype in (np.uint8, np.uint16):
        np.clip(out, 0.0, 1.0, out=out)
    elif x.size:
        np.clip(out, x.min(), x.max(), out=out)  # skimage clips to the input's value range
    return out[:, :, 0] if squeeze else out


def resize_frames(frames: np.ndarray, size: Sequence[int], *, method: ResizeMethod = 'fast') -> np.ndarray:
    """:func:`resize_frame` over a batch ``(B, H, W[, C])``; returns float32 ``(B, h, w[, C])``."""
    frames = np.asarray(frames)
    if frames.ndim not in (3, 4):
        raise ValueError(f'expected a (B, H, W) or (B, H, W, C) batch, got shape {frames.shape}')
    h, w = _check_size(size)
    out = np.empty((frames.shape[0], h, w) + frames.shape[3:], dtype=np.float32)
    for i, frame in enumerate(frames):
        out[i] = resize_frame(frame, (h, w), method=method)
    return out


# ----------------------------------------------------------------------------------------------
# Opening videos (PyAV)
# ----------------------------------------------------------------------------------------------

def _av():
    """The PyAV module, imported on first use (image-only callers never pay for it)."""
    import av

    return av


@functools.lru_cache(maxsize=1)
def ffmpeg_exe() -> str:
    """Path of the ffmpeg program bundled with imageio-ffmpeg.

    This module never runs it (PyAV does all the work in-process); tests use it to make fixtures
    with a tool independent of the code under test.
    """
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


_MP4_BOXES = (b'ftyp', b'moov', b'mdat', b'free', b'wide', b'skip')


def _open_failure(path: str, err: Exception) -> str:
    """Why FFmpeg could not open ``path``, in words (from the error code and the file's first bytes)."""
    av = _av()
    if isinstance(err, av.error.InvalidDataError):
        with open(path, 'rb') as f:
            head = f.read(12)
        if head[4:8] in _MP4_BOXES:
            return ('the MP4/MOV index (moov atom) is missing: the file is truncated, '
                    'was not finished, or is not a video')
        return 'not a video: the file content matches no video format FFmpeg knows'
    return getattr(err, 'strerror', None) or str(err)


def _open_video(path: str) -> tuple['av.container.InputContainer', 'av.video.stream.VideoStream']:
    """Open ``path`` for decoding: (container, its first video stream). MediaError if impossible."""
    av = _av()
    p = _check_input_file(path, 'video')
    try:
        container = av.open(p, metadata_errors='ignore')
    except (av.error.FFmpegError, OSError) as err:
        raise _error('video', p, _open_failure(p, err)) from None
    if not container.streams.video:
        container.close()
        raise _error('video', p, 'the file contains no video stream')
    return container, container.streams.video[0]


def _decode_failure(err: Exception) -> str:
    return f'damaged or truncated data ({getattr(err, "strerror", None) or err})'


def _data_missing(stream, path: str) -> str | None:
    """A reason when the container's index points past the end of the file (a cut-off download/copy)."""
    entries = stream.index_entries
    if entries is None or not len(entries):
        return None
    last = entries[len(entries) - 1]
    have = os.path.getsize(path)
    if last.pos >= 0 and last.pos + last.size > have:
        return f'the file is truncated: its index refers to {last.pos + last.size} bytes, the file has {have}'
    return None


def _quarter_turns(frame) -> int:
    """Counter-clockwise quarter turns that the frame's display matrix asks for (phone videos)."""
    return round((frame.rotation or 0) / 90) % 4


_LOCAL = threading.local()


def _frame_array(frame, size: tuple[int, int] | None = None) -> np.ndarray:
    """uint8 ``(H, W, 3)`` RGB of a decoded frame, turned upright as a player shows it.

    ``size`` = the stored (width, height) the first frame had: a stream that changes resolution
    midway is scaled back to it, as the ffmpeg program does, so every frame has one size.
    """
    if getattr(_LOCAL, 'pid', None) != os.getpid():
        # One converter per thread and process, kept across files: setting one up costs ~1 ms, 10x a
        # conversion. Single-threaded: a forked DataLoader worker would wait forever on the parent's threads.
        _LOCAL.reformatter, _LOCAL.pid = _av().video.reformatter.VideoReformatter(), os.getpid()
    width, height = size if size is not None else (frame.width, frame.height)
    rgb = _LOCAL.reformatter.reformat(frame, width=width, height=height, format='rgb24', threads=1).to_ndarray()
    turns = _quarter_turns(frame)
    return np.ascontiguousarray(np.rot90(rgb, turns)) if turns else rgb


def _frame_rate(stream, index: '_Index | None' = None) -> Fraction | None:
    """Exact average frame rate: frames / duration of the index when given (GIFs), else the container's."""
    if index is not None and index.duration:
        return Fraction(len(index.pts)) / (index.duration * stream.time_base)
    for rate in (stream.average_rate, stream.guessed_rate):
        if rate:
            return Fraction(rate)
    return None


# ----------------------------------------------------------------------------------------------
# Frame index: where each frame is, from one pass over the packets (no decoding)
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Index:
    """A video stream's frames, from its packets: frame ``i`` is the one shown ``i``-th.

    ``pts``: timestamps in display order (a ``range`` at a constant rate: small in memory for big data
    sets). ``keyframes``: pts of the frames decoding can start from (seeks go by pts: given a dts,
    the mp4 demuxer lands a group early). ``problem``: why the packets are incomplete, if they are.
    ``by_order``: no usable timestamps, frames are counted from the start.
    """

    pts: Sequence[int]
    keyframes: tuple[int, ...]
    duration: int
    problem: str | None
    by_order: bool = False

    def keyframe_before(self, pts: int) -> int:
        return self.keyframes[max(bisect.bisect_right(self.keyframes, pts) - 1, 0)]


def _compact(values: list[int]) -> Sequence[int]:
    """``values`` (sorted) as a range when evenly spaced, else as an int64 array."""
    if len(values) > 1:
        steps = np.diff(values)
        if steps[0] > 0 and np.all(steps == steps[0]):
            return range(values[0], values[-1] + 1, int(steps[0]))
    return np.asarray(values, dtype=np.int64) if len(values) != 1 else range(values[0], values[0] + 1)


def _build_index(path: str) -> _Index:
    av = _av()
    container, stream = _open_video(path)
    with container:
        # A GIF frame draws over the previous one: decoding can only start at the first frame.
        seekable = stream.codec_context.name != 'gif'
        pts: list[int] = []
        keyframes: list[int] = []
        duration, problem, by_order = 0, None, False
        try:
            for packet in container.demux(stream):
                if packet.size == 0 or packet.is_discard:   # end-of-stream marker; edit-list trimmed
                    continue
                if packet.is_corrupt:
                    problem = problem or 'damaged or truncated data'
                by_order = by_order or packet.pts is None
                pts.append(len(pts) if by_order else packet.pts)
                if packet.is_keyframe and (seekable or not keyframes):
                    keyframes.append(pts[-1])
                duration += packet.duration or 0
        except av.error.FFmpegError as err:
            problem = _decode_failure(err)
        problem = problem or _data_missing(stream, path)
    if not pts:
        raise _error('video', path, problem or 'the video stream has no frames')
    if by_order or not keyframes or len(set(pts)) < len(pts):
        pts, keyframes, by_order = list(range(len(pts))), [0], True
    return _Index(_compact(sorted(pts)), tuple(sorted(keyframes)), duration, problem, by_order)


@functools.lru_cache(maxsize=1 << 16)
def _cached_index(path: str, size: int, mtime_ns: int) -> _Index:
    return _build_index(path)


def _video_index(path: str) -> _Index:
    """The index of ``path``, built once per file version (path, size and modification time)."""
    p = _check_input_file(path, 'video')
    st = os.stat(p)
    return _cached_index(os.path.abspath(p), st.st_size, st.st_mtime_ns)


# ----------------------------------------------------------------------------------------------
# Decoding
# ----------------------------------------------------------------------------------------------

class _Decoding:
    """One pass over a video's frames in display order, holding its container open while it runs.

    Decoding goes on past damaged packets, as the ffmpeg program does; ``problem`` keeps the first
    reason something was wrong, for the caller to report once the frames that decode are out.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.container, self.stream = _open_video(path)
        self.stream.codec_context.thread_type = 'AUTO'   # frame threads: a sequential pass decodes several frames at once
        self.problem: str | None = None
        self.closed = False

    def frames(self) -> Iterator['av.VideoFrame']:
        av = _av()
        codec = self.stream.codec_context
        try:
            for packet in self.container.demux(self.stream):
                if packet.is_corrupt:
                    self.problem = self.problem or 'damaged or truncated data'
                try:
                    yield from codec.decode(packet)
                except av.error.FFmpegError as err:
                    self.problem = self.problem or _decode_failure(err)
        except av.error.FFmpegError as err:   # the demuxer gave up: flush what was decoded
            self.problem = self.problem or _decode_failure(err)
            with contextlib.suppress(av.error.FFmpegError):
                yield from codec.decode(None)
        self.problem = self.problem or _data_missing(self.stream, self.path)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.container.close()


def _frames_from(container, stream, keyframe: int, seek: bool, remaining: set[int],
                 by_order: bool) -> Iterator[tuple[int, 'av.VideoFrame']]:
    """(pts, frame) decoded from ``keyframe`` on; (number, frame) for streams without timestamps."""
    codec = stream.codec_context
    if seek:
        container.seek(keyframe, stream=stream, backward=True)
        codec.flush_buffers()
    number = keyframe
    for packet in container.demux(stream):
        # Unwanted frames that no other frame refers to (most B-frames) are skipped, not decoded.
        codec.skip_frame = 'DEFAULT' if by_order or packet.pts in remaining else 'NONREF'
        for frame in codec.decode(packet):
            number += 1
            yield (number - 1 if by_order else frame.pts), frame


def _decode_at(path: str, indices: Iterable[int]) -> dict[int, np.ndarray]:
    """Frames ``indices`` of the video at ``path`` (uint8 RGB, upright), decoding as little as possible.

    Each wanted frame is decoded from the keyframe before it, unless decoding is already in that
    group of pictures. One decoder thread: data set loaders scale with worker processes, and
    threads would only compete with them.
    """
    av = _av()
    index = _video_index(path)
    count = len(index.pts)
    wanted: dict[int, int] = {}   # pts -> frame number
    for i in set(int(i) for i in indices):
        if not 0 <= i < count:
            raise IndexError(f'frame {i} out of range: {_show(path)} has {count} frames')
        wanted[index.pts[i]] = i
    remaining, got = set(wanted), {}
    container, stream = _open_video(path)
    with container:
        stream.codec_context.thread_count = 1
        frames, start = None, None
        try:
            for target in sorted(wanted):
                for retry in (False, True):   # from the very start if the seek landed past the target
                    keyframe = index.keyframes[0] if retry else index.keyframe_before(target)
                    if retry or keyframe != start:
                        seek = start is not None or keyframe != index.keyframes[0]   # GIFs cannot seek
                        frames = _frames_from(container, stream, keyframe, seek, remaining, index.by_order)
                        start = keyframe
                    for pts, frame in frames:
                        if pts in remaining:
                            got[pts] = _frame_array(frame)
                            remaining.discard(pts)
                        if pts is None or pts >= target:
                            break
                    if target in got:
                        break
                else:
                    raise _error('video', path, f'frame {wanted[target]} of {count} could not be decoded'
                                 f'{": " + index.problem if index.problem else ""}')
        except av.error.FFmpegError as err:
            raise _error('video', path, _decode_failure(err)) from None
    return {wanted[pts]: frame for pts, frame in got.items()}


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


# ----------------------------------------------------------------------------------------------
# Writing videos
# ----------------------------------------------------------------------------------------------

#: Audio codecs an mp4 holds as they are (packets are copied); others are re-encoded to AAC.
MP4_AUDIO_CODECS = ('aac', 'mp3', 'ac3', 'eac3', 'alac')


class _Abort(Exception):
    """Internal: unwinds the atomic temporary file when a writer is aborted without an exception."""


class _AudioTrack:
    """The first audio track of a file, written into an mp4 alongside its video, cut to its length.

    Packets are copied when the codec fits mp4 (:data:`MP4_AUDIO_CODECS`; the cut falls on a packet
    boundary), else decoded and re-encoded to AAC (cut to the sample). Audio is interleaved with the
    video as that is written, so nothing is held back.
    """

    def __init__(self, source: str) -> None:
        av = _av()
        self.source = source
        try:
            self.input = av.open(source, metadata_errors='ignore')
        except (av.error.FFmpegError, OSError) as err:
            raise _error('audio source', source, _open_failure(source, err)) from None
        self.stream = self.input.streams.audio[0] if self.input.streams.audio else None
        self.output = None
        self._pending = None      # the first packet not written yet (it starts after the video so far)
        self._fifo = None         # re-encoding: resampled audio waiting for the video to reach it
        self._samples = 0         # re-encoding: samples written

    def add_to(self, out) -> None:
        """Declare the audio stream in ``out`` (before its first packet is written)."""
        av = _av()
        self._packets = self.input.demux(self.stream)
        # Timestamps count from the file's start, as the ffmpeg program's do (video and audio stay in sync).
        self._shift = round((self.input.start_time or 0) / 1_000_000 / self.stream.time_base)
        if self.stream.codec_context.name in MP4_AUDIO_CODECS:
            self.output = out.add_stream_from_template(self.stream)
            return
        self._rate = self.stream.codec_context.sample_rate
        self.output = out.add_stream('aac', rate=self._rate)
        # A named layout (AAC refuses an unnamed '1 channels' one); more than two channels are downmixed.
        self.output.layout = 'mono' if self.stream.codec_context.channels == 1 else 'stereo'
        self._resampler = av.AudioResampler(format='fltp', layout=self.output.layout, rate=self._rate)
        self._fifo = av.AudioFifo()

    def write_until(self, out, seconds: float) -> None:
        """Write the audio up to ``seconds`` of video."""
        while True:
            packet = self._pending or next(self._packets, None)
            self._pending = None
            if packet is None or packet.size == 0:   # the source's audio ended
                self._packets = iter(())
                break
            if packet.pts is not None and (packet.pts - self._shift) * self.stream.time_base >= seconds:
                self._pending = packet
                break
            if self._fifo is None:
                packet.pts = packet.pts - self._shift if packet.pts is not None else None
                packet.dts = packet.dts - self._shift if packet.dts is not None else None
                packet.stream = self.output
                out.mux(packet)
                continue
            for frame in packet.decode():
                for part in self._resampler.resample(frame):
                    part.pts = None
                    self._fifo.write(part)
        if self._fifo is not None and self._fifo.samples:
            take = min(round(seconds * self._rate) - self._samples, self._fifo.samples)
            if take > 0:
                part = self._fifo.read(take)
                part.pts, self._samples = self._samples, self._samples + take
                out.mux(self.output.encode(part))

    def finish(self, out) -> None:
        """Flush the AAC encoder (re-encoding only)."""
        if self._fifo is not None:
            out.mux(self.output.encode(None))

    def close(self) -> None:
        self.input.close()


# x264's macroblock tree (on by default) made the same frames encode to different files from run to
# run with the libx264 in PyAV's wheel: 2-3 variants in 8 encodes of some 64x64..192x192 clips,
# pixels up to 28 apart, even with one thread. Without it every encode tried was identical; the
# price, on the sample clip at 256x256 and crf 18: files 10% larger, 0.06 dB lower PSNR, the same
# speed (docs/media.md).
X264_OPTIONS = {'x264-params': 'mbtree=0'}


class VideoWriter:
    """Write frames to a video incrementally and atomically; ``path`` picks the format.

    * ``*.mp4``: H.264 (libx264, quality ``crf``), yuv420p, exactly ``fps`` frames per second; an odd
      width/height is padded by one repeated column/row. The same frames give the same file
      (``X264_OPTIONS``). ``keyframe_interval`` (frames; x264's
      default 250) bounds what random access decodes: 25 trains about as fast as PNG frames.
    * ``*.gif``: a palette per frame (ordered dithering), looping; delays in 1/100 s alternate so
      that the average rate is exact.
    * a path ending in ``/`` (``pathlib`` drops it: pass ``str(p) + '/'``) or naming a folder:
      lossless PNG frames ``00000.png``, ... with the rate in a text chunk ``fps``.

    :meth:`write` takes ``(H, W[, C])`` frames or ``(B, H, W, C)`` batches, uint8 or float in [0, 1],
    all of the first frame's size. The output is built beside ``path`` under a temporary name and
    renamed onto it by :meth:`close` (or a clean ``with`` exit); an exception or :meth:`abort` leaves
    nothing. ``audio_from``: that file's first audio track goes into the mp4, cut to the video's
    length (copied when mp4 holds its codec, else re-encoded to AAC); no audio track, a folder of
    frames, or a GIF / PNG destination gives a :class:`MediaWarning` and a silent output.
    """

    def __init__(self, path: PathLike, fps: float | Fraction, *, audio_from: PathLike | None = None,
                 crf: int = 18, keyframe_interval: int | None = None) -> None:
        self.path = os.fspath(path)
        self.fps = _check_fps(fps)
        self.crf = int(crf)
        self.keyframe_interval = keyframe_interval
        self.frames_written = 0
        self.size: tuple[int, int] | None = None  # (w, h) of the frames given
        self._out = None           # the PyAV output container, opened with the first frame
        self._stream = None
        self._graph = None         # GIF: the palette filter graph
        self._audio: _AudioTrack | None = None
        self._last_cs = -1         # GIF: the last frame's time in 1/100 s
        self._closed = False
        if self.path.endswith(('/', os.sep)) or os.path.isdir(self.path):
            self.kind = 'png'
        else:
            ext = os.path.splitext(self.path)[1].lower()
            if ext not in ('.mp4', '.gif'):
                shown = ext or '(no extension)'
                raise self._write_error(f'unsupported output format {shown!r}; use .mp4, .gif, or a '
                                        "folder path ending in '/' for PNG frames")
            self.kind = ext[1:]
        if audio_from is not None:
            self._audio = self._audio_source(os.fspath(audio_from))
        self._stack = contextlib.ExitStack()
        try:
            self._tmp = self._stack.enter_context(atomic_dir(self.path) if self.kind == 'png' else atomic_path(self.path))
        except OSError as err:
            self._drop_audio()
            raise self._write_error(err.strerror or str(err)) from None

    def _write_error(self, reason: str) -> MediaError:
        return MediaError(f'cannot write {_show(self.path)}: {reason}', path=self.path, reason=reason)

    def _audio_source(self, src: str) -> _AudioTrack | None:
        """The audio track to copy, or None after a note saying why there will be no sound."""
        def note(why: str) -> None:
            warnings.warn(why, MediaWarning, stacklevel=4)

        if self.kind != 'mp4':
            note(f'{_show(self.path)}: a {"GIF" if self.kind == "gif" else "PNG frame folder"} cannot hold '
                 f'audio; ignoring audio from {_show(src)}')
            return None
        if os.path.isdir(src):
            note(f'{_show(src)} is a folder of frames, which has no audio; writing {_show(self.path)} without sound')
            return None
        _check_input_file(src, 'audio source')
        track = _AudioTrack(src)
        if track.stream is None:
            track.close()
            note(f'{_show(src)} has no audio track; writing {_show(self.path)} without sound')
            return None
        return track

    # -- frames -----------------------------------------------------------------------------------

    def _prepare(self, frame: np.ndarray) -> np.ndarray:
        frame = np.asarray(frame)
        if frame.ndim == 3 and frame.shape[2] == 1:
            frame = frame[:, :, 0]
        if frame.ndim == 2:
            frame = np.repeat(frame[:, :, None], 3, axis=2)
        if frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f'expected an (H, W, 3) channels-last RGB frame, got shape {frame.shape}')
        frame = np.ascontiguousarray(_to_uint8(frame))
        h, w = frame.shape[:2]
        if self.size is None:
            if h == 0 or w == 0:
                raise ValueError(f'cannot write an empty frame of shape {frame.shape}')
            self.size = (w, h)
        elif self.size != (w, h):
            raise ValueError(f'frame {self.frames_written} is {w}x{h}, '
                             f'earlier frames were {self.size[0]}x{self.size[1]}')
        return frame

    def write(self, frames: np.ndarray) -> None:
        """Append one frame ``(H, W[, C])`` or a batch ``(B, H, W, C)``; uint8 or float in [0, 1]."""
        if self._closed:
            raise ValueError(f'VideoWriter for {_show(self.path)} is closed')
        frames = np.asarray(frames)
        batch = frames if frames.ndim == 4 else frames[None]
        for frame in batch:
            self._write_one(self._prepare(frame))

    def _write_one(self, frame: np.ndarray) -> None:
        if self.kind == 'png':
            self._write_png(frame)
        else:
            av = _av()
            try:
                if self._out is None:
                    self._open_output()
                self._encode(frame)
                if self._audio is not None:
                    self._write_audio((self.frames_written + 1) / float(self.fps))
            except (av.error.FFmpegError, OSError) as err:
                raise self._write_error(getattr(err, 'strerror', None) or str(err)) from None
        self.frames_written += 1

    def _write_png(self, frame: np.ndarray) -> None:
        from PIL import PngImagePlugin

        info = PngImagePlugin.PngInfo()
        info.add_text('fps', repr(float(self.fps)))
        name = os.path.join(self._tmp, f'{self.frames_written:05d}.png')
        try:
            write_image(name, frame, pnginfo=info, compress_level=3)  # ~3x faster than 6, ~7% larger
        except MediaError as err:
            raise self._write_error(err.reason) from None

    def _open_output(self) -> None:
        """Open the container and its streams: sizes are known from the first frame."""
        av = _av()
        assert self.size is not None
        w, h = self.size
        rate = _exact_rate(self.fps)
        self._out = av.open(self._tmp, 'w', format=self.kind)
        if self.kind == 'mp4':
            stream = self._out.add_stream('libx264', rate=rate, options=X264_OPTIONS | {'crf': str(self.crf)})
            stream.width, stream.height, stream.pix_fmt = w + w % 2, h + h % 2, 'yuv420p'
            if self.keyframe_interval:
                stream.codec_context.gop_size = int(self.keyframe_interval)
            if self._audio is not None:
                try:
                    self._audio.add_to(self._out)
                except (av.error.FFmpegError, ValueError) as err:
                    self._audio_failed(err)
        else:
            stream = self._out.add_stream('gif', rate=rate)
            stream.width, stream.height, stream.pix_fmt = w, h, 'pal8'
            stream.codec_context.time_base = Fraction(1, 100)   # GIF delays are in 1/100 s
            self._graph = self._palette_graph(w, h)
        self._stream = stream

    @staticmethod
    def _palette_graph(w: int, h: int):
        """rgb24 -> pal8 with a palette made for each frame (palettegen/paletteuse, Bayer dithering)."""
        av = _av()
        graph = av.filter.Graph()
        source = graph.add_buffer(width=w, height=h, format='rgb24', time_base=Fraction(1, 100))
        split = graph.add('split')
        palette = graph.add('palettegen', 'stats_mode=single')
        use = graph.add('paletteuse', 'new=1:dither=bayer')
        sink = graph.add('buffersink')
        source.link_to(split)
        split.link_to(use, 0, 0)
        split.link_to(palette, 1, 0)
        palette.link_to(use, 0, 1)
        use.link_to(sink)
        graph.configure()
        return graph

    def _encode(self, frame: np.ndarray | None) -> None:
        """Encode one frame (None: flush) and mux what comes out."""
        av = _av()
        if frame is not None:
            if self.kind == 'mp4':
                h, w = frame.shape[:2]
                if h % 2 or w % 2:
                    frame = np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode='edge')
            vf = av.VideoFrame.from_ndarray(frame, format='rgb24')
            vf.pts = self.frames_written
        else:
            vf = None
        if self._graph is None:
            self._out.mux(self._stream.encode(vf))
            return
        if vf is not None:   # pts in 1/100 s, strictly increasing even above 100 fps
            vf.pts = max(round(self.frames_written * 100 / self.fps), self._last_cs + 1)
            vf.time_base = Fraction(1, 100)
            self._last_cs = vf.pts
        self._graph.push(vf)
        while True:
            try:
                paletted = self._graph.pull()
            except (av.error.BlockingIOError, av.error.EOFError):
                break
            self._out.mux(self._stream.encode(paletted))
        if vf is None:
            self._out.mux(self._stream.encode(None))

    def _write_audio(self, seconds: float, finish: bool = False) -> None:
        av = _av()
        if self._audio is None or self._audio.output is None:
            return
        try:
            self._audio.write_until(self._out, seconds)
            if finish:
                self._audio.finish(self._out)
        except (av.error.FFmpegError, ValueError) as err:
            self._audio_failed(err)

    def _audio_failed(self, err: Exception) -> None:
        """Audio trouble never costs the video: a note, and no more sound from here on."""
        assert self._audio is not None
        reason = getattr(err, 'strerror', None) or str(err)
        part = 'the rest of it' if self._audio.output is not None else 'it'
        warnings.warn(f'could not copy the audio of {_show(self._audio.source)} into {_show(self.path)} '
                      f'({reason}); writing {part} without sound', MediaWarning, stacklevel=4)
        self._drop_audio()

    def _drop_audio(self) -> None:
        if self._audio is not None:
            self._audio.close()
            self._audio = None

    # -- lifecycle --------------------------------------------------------------------------------

    def _finish(self) -> None:
        av = _av()
        try:
            self._encode(None)
            self._write_audio(self.frames_written / float(self.fps), finish=True)
            self._out.close()   # writes the trailer (mp4 index)
        except (av.error.FFmpegError, OSError) as err:
            raise self._write_error(getattr(err, 'strerror', None) or str(err)) from None
        finally:
            self._drop_audio()

    def close(self) -> None:
        """Finish encoding and move the result onto ``path``.

        Raises :class:`MediaError` (leaving nothing at ``path``) if no frame was written or
        encoding failed.
        """
        if self._closed:
            return
        try:
            if self.frames_written == 0:
                raise self._write_error('no frames were written')
            if self._out is not None:
                self._finish()
        except BaseException as err:
            self._closed = True
            self._cleanup(err)
            raise
        self._closed = True
        try:
            self._stack.close()  # atomic rename onto self.path
        except OSError as err:
            raise self._write_error(err.strerror or str(err)) from None

    def abort(self) -> None:
        """Stop without writing anything to ``path`` (temporary output removed)."""
        if not self._closed:
            self._closed = True
            self._cleanup(_Abort())

    def _cleanup(self, err: BaseException) -> None:
        if self._out is not None:
            with contextlib.suppress(Exception):
                self._out.close()
        self._drop_audio()
        self._stack.__exit__(type(err), err, err.__traceback__)  # atomic_* removes the temporary

    def __enter__(self) -> 'VideoWriter':
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc is None:
            self.close()
        elif not self._closed:
            self._closed = True
            self._cleanup(exc)

    def __del__(self) -> None:
        # A writer dropped without close(): do not leave the temporary file behind.
        with contextlib.suppress(Exception):
            if not self._closed:
                self.abort()


# Earlier private names, kept for code written against them.
_read_image_array = read_image
_list_frame_files = list_frame_files
