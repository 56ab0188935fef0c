"""One pass over a video: shot cuts on every frame, face detections on a stride, in batches.

Only thumbnails' colour histograms and the detection frames of one batch (shrunk so the longer
side is at most `detect_size`) are held, so memory does not grow with the video.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable

import numpy as np

from .backend import FaceBackend, as_uint8
from .boxes import iou
from .tubes import TubeLinker, Tube, colour_signature, is_cut


@dataclass
class Scan:
    num_frames: int
    width: int
    height: int
    cuts: list[int] = field(default_factory=list)                 # first frame of each shot after the first
    detections: dict[int, list[np.ndarray]] = field(default_factory=dict)   # frame -> boxes, full size

    def shot_of(self, frame: int) -> int:
        return int(np.searchsorted(self.cuts, frame, side='right'))

    def shot_range(self, shot: int) -> tuple[int, int]:
        """(first, last) frame of a shot, inclusive."""
        bounds = [0] + list(self.cuts) + [self.num_frames]
        return bounds[shot], bounds[shot + 1] - 1

    def tubes(self, iou_threshold: float = 0.25, iou_with_initial: float | None = 0.25,
              max_missed: int = 0) -> list[Tube]:
        linker = TubeLinker(iou_threshold, iou_with_initial, max_missed)
        shot = 0
        for frame in sorted(self.detections):
            if self.shot_of(frame) != shot:
                shot = self.shot_of(frame)
                linker.cut()
            linker.add(frame, self.detections[frame])
        return linker.finish()

    def face_boxes(self) -> np.ndarray:
        """(num_frames, 4): one face per frame (the one overlapping the previous choice most,
        else the largest), NaN where none was detected or the frame was not a detection frame."""
        out = np.full((self.num_frames, 4), np.nan)
        previous = None
        for frame in sorted(self.detections):
            boxes = self.detections[frame]
            if not boxes:
                continue
            if previous is not None and max(iou(previous, b) for b in boxes) > 0:
                chosen = max(boxes, key=lambda b: iou(previous, b))
            else:
                chosen = max(boxes, key=lambda b: (b[2] - b[0]) * (b[3] - b[1]))
            out[frame] = previous = chosen
        return out


def shrink_for_detection(frame: np.ndarray, detect_size: int) -> tuple[np.ndarray, float]:
    """(uint8 frame whose longer side is at most detect_size, factor from it back to full size)."""
    from media import resize_frame
    h, w = frame.shape[:2]
    if detect_size <= 0 or max(h, w) <= detect_size:
        return as_uint8(frame), 1.0
    factor = max(h, w) / detect_size
    size = (max(1, int(round(h / factor))), max(1, int(round(w / factor))))
    return as_uint8(resize_frame(frame, size)), w / size[1]


def scan_video(frames: Iterable[np.ndarray], backend: FaceBackend, *, stride: int = 1, batch_size: int = 8,
               detect_size: int = 640, cut_threshold: float = 0.5,
               on_frame: Callable[[], None] | None = None) -> Scan:
    """Read every frame once; detect faces on frames (i - shot start) % stride == 0 and on the
    last frame of each shot, so every shot's ends are looked at whatever the stride."""
    if stride < 1 or batch_size < 1:
        raise ValueError('stride and batch_size must be >= 1')
    scan = Scan(0, 0, 0)
    batch: list[tuple[int, np.ndarray, float]] = []

    def detect(flush: bool) -> None:
        if not batch or (len(batch) < batch_size and not flush):
            return
        found = backend.detect_batch([small for _, small, _ in batch])
        for (index, _, factor), faces in zip(batch, found):
            scan.detections[index] = [face.box * factor for face in faces]
        batch.clear()

    def schedule(index: int, frame: np.ndarray) -> None:
        small, factor = shrink_for_detection(frame, detect_size)
        batch.append((index, small, factor))

    previous_signature, held = None, None      # held: (index, frame, scheduled) of the previous frame
    shot_start = 0
    for index, frame in enumerate(frames):
        if index == 0:
            scan.height, scan.width = frame.shape[:2]
        signature = colour_signature(as_uint8(frame))
        if is_cut(previous_signature, signature, cut_threshold):
            scan.cuts.append(index)
            shot_start = index
            if held is not None and not held[2]:                 # last frame of the previous shot
                schedule(held[0], held[1])
        previous_signature = signature
        scheduled = (index - shot_start) % stride == 0
        if scheduled:
            schedule(index, frame)
        held = (index, frame if scheduled else np.array(frame, copy=True), scheduled)   # a reader may reuse its buffer
        detect(flush=False)
        scan.num_frames = index + 1
        if on_frame is not None:
            on_frame()
    if held is not None and not held[2]:
        schedule(held[0], held[1])                               # last frame of the video
    detect(flush=True)
    return scan
