"""Opening and decoding video files with PyAV: the packet index and random access."""
from __future__ import annotations

import bisect
import contextlib
import functools
import os
import threading
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Iterable, Iterator, Sequence

import numpy as np

from .errors import _check_input_file, _error, _show

if TYPE_CHECKING:
    import av

# ----------------------------------------------------------------------------------------------
# Opening videos (PyAV)
# ----------------------------------------------------------------------------------------------

def _av():
    """The PyAV module, imported on first use (image-only callers never pay for it)."""
    import av

    return av


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

