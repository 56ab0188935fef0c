"""One source video: decode it once, streaming, and write every pending segment's clip.

Memory holds one decoded frame and one open clip writer per segment being written at that
moment, whatever the video's length. Decoding stops after the last frame any segment needs.
Everything that goes wrong is returned as one line in :class:`Result` (the caller prints it),
so a worker never prints over the progress bar and one bad video never stops the others.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np

from dataprep import rules
from dataprep.clips import clip_done, open_clip
from dataprep.download import DownloadFailed, download, find_source
from dataprep.metadata import Segment
from media import MediaError, MediaWarning, VideoReader, resize_frame


@dataclass(frozen=True)
class Options:
    """What every worker needs from the command line."""

    video_folder: str
    out_folder: str
    fmt: str                                  # '.mp4' or '.png'
    image_shape: tuple[int, int] | None       # (H, W), or None to keep the crop's size
    download: bool = False


@dataclass
class Result:
    """What happened to one source video's segments (counts add up to ``segments``)."""

    source: str
    segments: int
    written: int = 0
    done: int = 0                    # already there from an earlier run
    failed: list[str] = field(default_factory=list)   # one line per segment that could not be made
    missing: str | None = None       # why the source video could not be read (then nothing was written)
    frames: int = 0                  # frames written into clips
    decoded: int = 0                 # source frames decoded
    notes: list[str] = field(default_factory=list)


@dataclass
class _Plan:
    segment: Segment
    path: str
    frames: range
    rows: slice
    cols: slice


def clip_path(options: Options, segment: Segment) -> str:
    return os.path.join(options.out_folder, segment.partition, segment.name)


def to_ubyte(image: np.ndarray) -> np.ndarray:
    """float [0, 1] -> uint8 as skimage's img_as_ubyte (x * 255, rounded half to even, clipped)."""
    return np.clip(np.rint(image * np.float32(255.0)), 0, 255).astype(np.uint8)


def crop_frame(frame: np.ndarray, plan: _Plan, shape: tuple[int, int] | None) -> np.ndarray:
    """uint8 (h, w, 3) crop of one (H, W, 3) frame, resized to `shape` with skimage's anti-aliasing."""
    crop = frame[plan.rows, plan.cols]
    if shape is None:
        return np.ascontiguousarray(crop)
    return to_ubyte(resize_frame(crop, shape))


def _where(segment: Segment) -> str:
    return f'{segment.name} (metadata line {segment.line})'


def _open_source(source: str, segments: list[Segment], options: Options, result: Result) -> VideoReader | None:
    """The decoded source, or None after setting ``result.missing``."""
    path = find_source(options.video_folder, source)
    if path is None and options.download:
        try:
            path = download(source, options.video_folder, max(s.height for s in segments))
        except DownloadFailed as err:
            result.missing = f'could not download: {err}'
            return None
    if path is None:
        result.missing = f'not in {options.video_folder} (no {source}.mp4 or other video file)'
        return None
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always', MediaWarning)
            reader = VideoReader(path, strict=True)
        result.notes.extend(str(w.message) for w in caught)
        return reader
    except MediaError as err:
        result.missing = f'unreadable: {err}'
        return None


def _plan(segment: Segment, reader: VideoReader, fps: float, options: Options, result: Result) -> _Plan | None:
    frames = rules.frame_range(segment.start, segment.end, segment.fps, fps)
    box = rules.scale_box(segment.box, (segment.width, segment.height), reader.size)
    window = rules.crop_window(box, reader.size)
    if window is None:
        l, t, r, b = segment.box
        result.failed.append(f'{_where(segment)}: box {l}-{t}-{r}-{b} of a {segment.width}x{segment.height} frame '
                             f'is {box[0]}-{box[1]}-{box[2]}-{box[3]} in the {reader.width}x{reader.height} file: '
                             f'outside the frame; clip not written')
        return None
    if not frames:
        result.failed.append(f'{_where(segment)}: frames {segment.start}..{segment.end} at {segment.fps:g} fps '
                             f'hold no frame of the {fps:g} fps file; clip not written')
        return None
    return _Plan(segment, clip_path(options, segment), frames, window[0], window[1])


def _decoded(reader: VideoReader, damage: list[str]) -> Iterator[np.ndarray]:
    """The reader's frames; damage part way ends them, its reason put in `damage` (writers' errors pass)."""
    frames = iter(reader)
    try:
        yield from frames
    except MediaError as err:           # what decoded before the damage is kept
        damage.append(err.reason or str(err))
    finally:
        frames.close()


def _stream(reader: VideoReader, plans: list[_Plan], options: Options, result: Result,
            report: Callable[[int], None]) -> list[_Plan]:
    """Decode once, writing each plan's clip as its frames stream past; returns the plans left unfinished."""
    plans = sorted(plans, key=lambda p: p.frames.start)
    stop = max(p.frames.stop for p in plans)
    active: list[tuple[_Plan, object]] = []
    upcoming = 0
    damage: list[str] = []
    frames = _decoded(reader, damage)
    try:
        for index, frame in enumerate(frames):
            result.decoded = index + 1
            while upcoming < len(plans) and plans[upcoming].frames.start <= index:
                plan = plans[upcoming]
                active.append((plan, open_clip(plan.path, options.fmt, reader.frame_rate)))
                upcoming += 1
            for plan, writer in list(active):
                writer.write(crop_frame(frame, plan, options.image_shape))
                result.frames += 1
                if index == plan.frames.stop - 1:
                    writer.close()
                    active.remove((plan, writer))
                    result.written += 1
                    report(1)
            if index >= stop - 1:
                break
    finally:
        frames.close()
        for _, writer in active:
            writer.abort()
    unfinished = [plan for plan, _ in active] + plans[upcoming:]
    for plan in unfinished:
        first, last = plan.frames.start, plan.frames.stop - 1
        why = f'decoding failed after frame {result.decoded - 1} ({damage[0]})' if damage else \
            f'the video has only {result.decoded} frames'
        result.failed.append(f'{_where(plan.segment)}: segment needs frames {first}..{last} of the file but {why}; '
                             f'clip not written')
    return unfinished


def _pending(segments: list[Segment], options: Options, result: Result) -> list[Segment]:
    """Segments still to write; finished clips count as done, a path of the other format fails."""
    pending = []
    for segment in segments:
        path = clip_path(options, segment)
        if clip_done(path, options.fmt):
            result.done += 1
        elif os.path.exists(path):
            other = 'folder of PNG frames' if os.path.isdir(path) else 'file'
            result.failed.append(f'{_where(segment)}: {path} exists as a {other}, not a {options.fmt} clip: '
                                 f'give each --format its own --out_folder')
        else:
            pending.append(segment)
    return pending


def _write_all(reader: VideoReader, pending: list[Segment], options: Options, result: Result,
               report: Callable[[int], None]) -> None:
    fps = rules.file_fps(reader.frame_rate)
    plans = [p for p in (_plan(s, reader, fps, options, result) for s in pending) if p is not None]
    report(len(pending) - len(plans))
    if plans:
        report(len(_stream(reader, plans, options, result, report)))


def process_video(source: str, segments: list[Segment], options: Options,
                  report: Callable[[int], None] = lambda n: None) -> Result:
    """Write the clips of `segments` (all from video `source`) that are not there yet.

    `report(n)` is called as segments are settled (written, found done, or failed), for a progress
    bar; by the return it has been called for every segment exactly once in all.
    """
    result = Result(source, len(segments))
    settled = 0

    def settle(n: int) -> None:
        nonlocal settled
        if n:
            settled += n
            report(n)

    pending = _pending(segments, options, result)
    settle(len(segments) - len(pending))
    if not pending:
        return result
    reader = _open_source(source, pending, options, result)
    if reader is None:
        settle(len(pending))
        return result
    try:
        _write_all(reader, pending, options, result, settle)
    except (MediaError, OSError) as err:     # a clip could not be written (disk full, permissions)
        left = len(segments) - settled
        result.failed.append(f'{source}: {left} clip(s) not written: {err}')
        settle(left)
    finally:
        reader.close()
    return result
