"""Shots and face tubes: which frames show the same face in one continuous shot.

A cut is found from colour histograms of small thumbnails of consecutive frames (robust to a pan
or a moving face, which change where colours are, not which colours there are). Detections,
made on a frame stride, are linked into tubes by IoU; a tube ends at a cut, when its face is not
found again, or (for a fixed crop box) when the face has moved too far from where the tube began,
as FOMM's crop-video ends it (IoU with the first box below `iou_with_initial`). `AnchorLinker`
is crop-video's own rule, for `crop_video.py --preset fomm`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .boxes import iou, union_box

HIST_BINS = 16


def colour_signature(frame: np.ndarray) -> np.ndarray:
    """(3 * HIST_BINS,) normalised per-channel histograms of a uint8 RGB frame (sub-sampled)."""
    step = max(1, min(frame.shape[:2]) // 64)
    small = frame[::step, ::step, :3].reshape(-1, 3)
    hists = [np.bincount(small[:, c] // (256 // HIST_BINS), minlength=HIST_BINS) for c in range(3)]
    return np.concatenate(hists).astype(np.float64) / len(small)


def is_cut(previous: np.ndarray | None, current: np.ndarray, threshold: float) -> bool:
    """Histogram distance (half the L1 distance averaged over channels, in [0, 1]) above threshold."""
    if previous is None:
        return False
    return float(np.abs(previous - current).sum()) / 6.0 > threshold


@dataclass
class Tube:
    """One face followed through one shot: detections at `frames` (sorted) with `boxes`."""
    frames: list[int] = field(default_factory=list)
    boxes: list[np.ndarray] = field(default_factory=list)
    missed: int = 0             # detection frames in a row without this face

    @property
    def start(self) -> int:
        return self.frames[0]

    @property
    def end(self) -> int:       # inclusive
        return self.frames[-1]

    @property
    def num_frames(self) -> int:
        return self.end - self.start + 1

    def union(self) -> np.ndarray:
        return union_box(np.stack(self.boxes))

    def per_frame_boxes(self) -> np.ndarray:
        """(num_frames, 4) boxes: detections, linear in between."""
        t = np.arange(self.start, self.end + 1)
        boxes = np.stack(self.boxes)
        return np.stack([np.interp(t, self.frames, boxes[:, k]) for k in range(4)], axis=1)


class TubeLinker:
    """Feed detection frames in order with `add`; `finish` returns every tube, in start order."""

    def __init__(self, iou_threshold: float = 0.25, iou_with_initial: float | None = 0.25, max_missed: int = 0):
        self.iou_threshold = iou_threshold
        self.iou_with_initial = iou_with_initial
        self.max_missed = max_missed
        self.active: list[Tube] = []
        self.done: list[Tube] = []

    def cut(self) -> None:
        """A new shot begins: every open tube ends."""
        self.done += self.active
        self.active = []

    def add(self, frame: int, boxes: list[np.ndarray]) -> None:
        """Detections of one detection frame. Each box joins the open tube whose last box it
        overlaps most (IoU >= iou_threshold, one box per tube), or starts a tube."""
        pairs = sorted(((iou(tube.boxes[-1], box), t, b) for t, tube in enumerate(self.active)
                        for b, box in enumerate(boxes)), reverse=True)
        taken_tubes, taken_boxes = set(), set()
        for overlap, t, b in pairs:
            if overlap < self.iou_threshold or t in taken_tubes or b in taken_boxes:
                continue
            tube = self.active[t]
            if self.iou_with_initial is not None and iou(tube.boxes[0], boxes[b]) < self.iou_with_initial:
                continue       # moved too far for one fixed crop box: it starts a new tube
            taken_tubes.add(t)
            taken_boxes.add(b)
            tube.frames.append(frame)
            tube.boxes.append(np.asarray(boxes[b], dtype=np.float64))
            tube.missed = 0
        still = []
        for t, tube in enumerate(self.active):
            if t not in taken_tubes:
                tube.missed += 1
                if tube.missed > self.max_missed:
                    self.done.append(tube)
                    continue
            still.append(tube)
        self.active = still
        for b, box in enumerate(boxes):
            if b not in taken_boxes:
                self.active.append(Tube([frame], [np.asarray(box, dtype=np.float64)]))

    def finish(self) -> list[Tube]:
        self.cut()
        return sorted(self.done, key=lambda tube: (tube.start, tube.boxes[0][0]))


def iou_inclusive(a, b) -> float:
    """IoU counting each box as inclusive pixel ranges (side x1 - x0 + 1), as FOMM's crop-video does."""
    w = min(a[2], b[2]) - max(a[0], b[0]) + 1
    h = min(a[3], b[3]) - max(a[1], b[1]) + 1
    inter = max(0.0, w) * max(0.0, h)
    union = (a[2] - a[0] + 1) * (a[3] - a[1] + 1) + (b[2] - b[0] + 1) * (b[3] - b[1] + 1) - inter
    return float(inter / union)


class AnchorLinker:
    """FOMM crop-video's tubes (`crop_video.py --preset fomm`), with the same `add`/`finish` as
    TubeLinker. Every box is compared with a tube's first box (its anchor), never its last:

    * a tube stays open while some box of the frame overlaps its anchor by more than
      `iou_with_initial` (so one frame without a face ends every tube); shot cuts end nothing;
    * then each box, in the detector's order, joins the open tube whose anchor it overlaps most
      (strictly above the threshold; the earlier tube on a tie), tubes started by earlier boxes of
      the same frame included, else it starts a tube. Several boxes may join one tube in a frame,
      and a tube kept open by a box that joined another tube does not extend to this frame.

    A tube's range runs from its first to its last joined frame; its box is the union of the
    joined boxes."""

    def __init__(self, iou_with_initial: float = 0.25):
        self.iou_with_initial = iou_with_initial
        self.active: list[Tube] = []
        self.done: list[Tube] = []

    def cut(self) -> None:
        """The reference has no shots: a cut ends no tube."""

    def add(self, frame: int, boxes: list[np.ndarray]) -> None:
        boxes = [np.asarray(box, dtype=np.float64) for box in boxes]
        keep = [max((iou_inclusive(t.boxes[0], b) for b in boxes), default=0.0) > self.iou_with_initial
                for t in self.active]
        self.done += [t for t, k in zip(self.active, keep) if not k]
        self.active = [t for t, k in zip(self.active, keep) if k]
        for box in boxes:
            best, chosen = 0.0, None
            for tube in self.active:
                overlap = iou_inclusive(tube.boxes[0], box)
                if overlap > best and overlap > self.iou_with_initial:
                    best, chosen = overlap, tube
            if chosen is None:
                self.active.append(Tube([frame], [box]))
            else:
                chosen.frames.append(frame)
                chosen.boxes.append(box)

    def finish(self) -> list[Tube]:
        self.done += self.active
        self.active = []
        return sorted(self.done, key=lambda tube: (tube.start, tube.boxes[0][0]))
