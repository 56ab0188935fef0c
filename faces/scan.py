"""One pass over a video: shot cuts on every frame, face detections on a stride, in batches.

Only thumbnails' colour histograms and the detection frames of one batch are held (shrunk to the
largest size the detector looks at: `detect_size`, or its retry sizes for small faces), so memory
does not grow with the video.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

import numpy as np

from .backend import Face, FaceBackend, as_uint8
from .boxes import iou
from .tubes import AnchorLinker, Tube, TubeLinker, colour_signature, is_cut


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
              max_missed: int = 0, rule: str = 'ours') -> list[Tube]:
        """Tubes of the detections; rule 'fomm': FOMM crop-video's (`AnchorLinker`; only
        iou_with_initial applies)."""
        linker = (AnchorLinker(iou_with_initial) if rule == 'fomm'
                  else TubeLinker(iou_threshold, iou_with_initial, max_missed))
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
    h, w = frame.shape[:2]
    if detect_size <= 0 or max(h, w) <= detect_size:
        return as_uint8(frame), 1.0
    return resized_for_detection(frame, detect_size)


def resized_for_detection(frame: np.ndarray, longer: int) -> tuple[np.ndarray, float]:
    """(uint8 frame resized, up or down, to this longer side; factor from it back to full size)."""
    from media import resize_frame
    h, w = frame.shape[:2]
    factor = max(h, w) / longer
    size = (max(1, int(round(h / factor))), max(1, int(round(w / factor))))
    return as_uint8(resize_frame(frame, size)), w / size[1]


def retry_sizes(longer: int, detect_size: int, backend: FaceBackend, min_face: float = 0) -> list[int]:
    """Longer sides at which a frame without a face is looked at again: the detection size times
    each of the backend's `retry_scales`, at most twice the frame's own longer side (past that an
    enlargement adds no detail, only time), and only while the last size looked at misses faces
    of `min_face` full-size pixels (the crop tool keeps no face smaller than its --min_size).
    1280x720 at detect_size 640 with HOG (80 px window): [1280, 2560], finding faces down to
    ~40 px; a 1920x1080 photo at 1024: [2048, 3840]; a 410 px frame: [820]."""
    base = longer if detect_size <= 0 else min(longer, detect_size)
    sizes: list[int] = []
    smallest_face = getattr(backend, 'smallest_face', 0)     # (body backends have neither)
    smallest = smallest_face * longer / base       # full-size px of the smallest face found
    for scale in getattr(backend, 'retry_scales', ()):
        size = min(base * scale, 2 * longer)
        if size <= (sizes[-1] if sizes else base) or smallest <= min_face:
            break
        sizes.append(size)
        smallest = smallest_face * longer / size
    return sizes


def detect_with_retry(backend: FaceBackend, frames: Sequence[np.ndarray], detect_size: int,
                      min_face: float = 0) -> list[list[Face]]:
    """Faces of each frame (boxes in the frame's own pixels), found on a copy at most
    `detect_size` on its longer side; a frame without a face is looked at again at the backend's
    `retry_scales` times that size, in turn, up to the first that finds one (HOG's 80 px window
    misses small faces at the detection size; see `retry_sizes`). Frames of one call share a size."""
    if not frames:
        return []
    smalls = [shrink_for_detection(f, detect_size) for f in frames]
    found = backend.detect_batch([small for small, _ in smalls])
    out = [[_scaled(face, factor) for face in faces] for faces, (_, factor) in zip(found, smalls)]
    if getattr(backend, 'retry_scales', ()):
        longer = max(frames[0].shape[:2])
        for i in (i for i, faces in enumerate(out) if not faces):
            for size in retry_sizes(longer, detect_size, backend, min_face):
                image, factor = resized_for_detection(frames[i], size)
                out[i] = [_scaled(face, factor) for face in backend.detect_batch([image])[0]]
                if out[i]:
                    break
    return out


def _scaled(found: Face, factor: float) -> Face:
    """The detection with its box in full-size pixels (a Face, or a body backend's Body: only the
    box is read from a scan)."""
    return dataclasses.replace(found, box=found.box * factor)


def scan_video(frames: Iterable[np.ndarray], backend: FaceBackend, *, stride: int = 1, batch_size: int = 8,
               detect_size: int = 640, cut_threshold: float = 0.5, min_face: float = 0,
               on_frame: Callable[[], None] | None = None) -> Scan:
    """Read every frame once; detect faces on frames (i - shot start) % stride == 0 and on the
    last frame of each shot, so every shot's ends are looked at whatever the stride (frames
    without a face again at larger sizes, see `detect_with_retry`; `min_face` as there)."""
    if stride < 1 or batch_size < 1:
        raise ValueError('stride and batch_size must be >= 1')
    scan = Scan(0, 0, 0)
    batch: list[tuple[int, np.ndarray, float]] = []   # (frame index, uint8 frame as held, factor to full size)

    def detect(flush: bool) -> None:
        if not batch or (len(batch) < batch_size and not flush):
            return
        held_factor = batch[0][2]             # one video: every held frame has the same size
        found = detect_with_retry(backend, [frame for _, frame, _ in batch], detect_size, min_face / held_factor)
        for (index, _, factor), faces in zip(batch, found):
            scan.detections[index] = [face.box * factor for face in faces]
        batch.clear()

    def schedule(index: int, frame: np.ndarray) -> None:
        longer = max(frame.shape[:2])
        keep = max([detect_size] + retry_sizes(longer, detect_size, backend, min_face))
        held_frame, factor = shrink_for_detection(frame, keep)
        batch.append((index, np.array(held_frame, copy=True), factor))     # a reader may reuse its buffer

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
