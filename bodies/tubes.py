"""Person tubes for `crop_video.py --target body`, after video-preprocessing's crop_taichi.py.

The rules kept (offline, on detections made every `--stride` frames by faces/scan.py, which also
finds the cuts):

* a detection counts when the person is whole (head and feet seen, as crop_taichi's
  head-and-ankles test) and at least `min_height` of the frame height tall (crop_taichi: 10%);
* a tube starts at a detection that overlaps no open tube; its crop box is fixed then: the
  person's box made square around its centre, keeping the longer side, enlarged by `increase`
  per side (crop_taichi's aspect-preserving box, --increase 0.05);
* a tube goes on while exactly one detection overlaps its box (IoU > 0) and that detection lies
  inside the box; it ends when none does, when two or more do (a second person walking in), when
  the person has left the box, and at a cut. A person who walks out of a tube's box starts a new one;
* `--min_frames` and `--min_size` (on the crop box's side) drop tubes, as crop_taichi's store().

Not kept: crop_taichi also ends every tube when the median optical flow between frames exceeds a
pixel (camera motion) or the median colour jumps; here a cut (colour histograms) ends them, and a
pan ends a tube when it carries the person out of the fixed box.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from faces.backend import as_uint8
from faces.boxes import iou, square_box
from faces.tubes import Tube

from .backend import BodyBackend

MIN_HEIGHT = 0.10       # crop_taichi's --mimial_person_size


class PersonFilter:
    """A body backend as faces/scan.py's detector: per frame, the whole persons at least
    `min_height` of the frame's height tall (objects with .box, in the frame's pixels)."""

    def __init__(self, backend: BodyBackend, min_height: float = MIN_HEIGHT):
        self.backend = backend
        self.min_height = min_height
        self.name = backend.name
        self.description = backend.description

    def detect_batch(self, frames):
        frames = [as_uint8(f) for f in frames]
        out = []
        for frame, found in zip(frames, self.backend.detect_batch(frames)):
            tall = self.min_height * frame.shape[0]
            out.append([b for b in found if b.whole() and b.box[3] - b.box[1] >= tall])
        return out


@dataclass
class PersonTube(Tube):
    region: np.ndarray = field(default_factory=lambda: np.zeros(4))   # (4,) fixed square crop box

    def union(self) -> np.ndarray:
        """The crop box: crop_video.py checks --min_size on it, as crop_taichi checks its tube box."""
        return self.region


def inside(outer, inner) -> bool:
    return bool(outer[0] <= inner[0] and outer[1] <= inner[1] and outer[2] >= inner[2] and outer[3] >= inner[3])


def follow(tube: PersonTube, boxes: list[np.ndarray]) -> np.ndarray | None:
    """The detection that continues `tube`, or None when the tube ends here."""
    touching = [b for b in boxes if iou(tube.region, b) > 0]
    if len(touching) != 1 or not inside(tube.region, touching[0]):
        return None
    return touching[0]


def person_tubes(scan, increase: float) -> list[PersonTube]:
    """Tubes from a faces.scan.Scan whose detections are person boxes, in start order."""
    active: list[PersonTube] = []
    done: list[PersonTube] = []
    shot = 0
    for frame in sorted(scan.detections):
        boxes = [np.asarray(b, dtype=np.float64) for b in scan.detections[frame]]
        if scan.shot_of(frame) != shot:
            shot = scan.shot_of(frame)
            done += active
            active = []
        still = []
        for tube in active:
            box = follow(tube, boxes)
            if box is None:
                done.append(tube)
                continue
            tube.frames.append(frame)
            tube.boxes.append(box)
            still.append(tube)
        active = still
        for box in boxes:
            if not any(iou(tube.region, box) > 0 for tube in active):
                active.append(PersonTube([frame], [box], region=square_box(box, increase)))
    return sorted(done + active, key=lambda tube: (tube.start, tube.region[0]))
