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
* camera motion ends every tube, as crop_taichi's (median Farneback flow above 1 px between
  consecutive frames at 256x256): here the frame-to-frame translation of the background found by
  phase correlation of 256x256 grey thumbnails, `CameraMotion`, at least `--camera_motion` px;
* `--min_frames` and `--min_size` (on the crop box's side) drop tubes, as crop_taichi's store().

Not kept: crop_taichi also ends every tube when a frame's median colour jumps by 1.5 grey levels;
here cuts are found from colour histograms (faces/scan.py).
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


def person_tubes(scan, increase: float, moving: set[int] | frozenset = frozenset()) -> list[PersonTube]:
    """Tubes from a faces.scan.Scan whose detections are person boxes, in start order; `moving`:
    frames where the camera moved since the frame before (they end every tube, as a cut does)."""
    active: list[PersonTube] = []
    done: list[PersonTube] = []
    shot, previous = 0, -1
    moves = np.array(sorted(moving), dtype=np.int64)
    for frame in sorted(scan.detections):
        boxes = [np.asarray(b, dtype=np.float64) for b in scan.detections[frame]]
        moved = bool(((moves > previous) & (moves <= frame)).any())
        previous = frame
        if scan.shot_of(frame) != shot or moved:
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


class CameraMotion:
    """Wraps a frame iterator; records the frames where the camera moved since the frame before.

    crop_taichi compares consecutive frames resized to 256x256 (grey) with Farneback optical flow
    and calls a median magnitude above 1 px camera motion. Here: the translation between two such
    thumbnails at the peak of their phase correlation (Hann-windowed, sub-pixel), which follows the
    background (most of the frame) and not a person moving on it; 1 px or more is motion. Costs
    a few ms of CPU a frame (a resize and three 256x256 FFTs)."""

    SIZE = (256, 256)

    def __init__(self, frames, threshold: float = 1.0):
        self.frames = frames
        self.threshold = threshold
        self.moving: set[int] = set()
        self.window = np.outer(np.hanning(self.SIZE[0]), np.hanning(self.SIZE[1]))

    def __iter__(self):
        previous = None
        for index, frame in enumerate(self.frames):
            spectrum = self._spectrum(frame)
            if previous is not None and self.threshold > 0 and \
                    np.hypot(*translation(previous, spectrum)) >= self.threshold:
                self.moving.add(index)
            previous = spectrum
            yield frame

    def _spectrum(self, frame: np.ndarray) -> np.ndarray:
        from media import resize_frame
        # the green channel stands for grey (luminance is mostly green); contiguous, it resizes ~6x faster
        grey = resize_frame(np.ascontiguousarray(np.asarray(frame)[..., 1]), self.SIZE)    # (256, 256) in [0, 1]
        return np.fft.rfft2((grey - grey.mean()) * self.window)


def translation(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(dy, dx) in pixels between two frames given as rfft2 spectra, at their phase correlation's peak."""
    cross = a * np.conj(b)
    corr = np.fft.irfft2(cross / np.maximum(np.abs(cross), 1e-12), s=CameraMotion.SIZE)
    py, px = np.unravel_index(int(np.argmax(corr)), corr.shape)
    h, w = corr.shape
    # sub-pixel: a parabola through the peak and its two neighbours, along each axis
    dy = py + _vertex(corr[(py - 1) % h, px], corr[py, px], corr[(py + 1) % h, px])
    dx = px + _vertex(corr[py, (px - 1) % w], corr[py, px], corr[py, (px + 1) % w])
    return (dy - h if dy > h / 2 else dy), (dx - w if dx > w / 2 else dx)


def _vertex(left: float, centre: float, right: float) -> float:
    """Offset in [-0.5, 0.5] of the vertex of the parabola through (-1, left), (0, centre), (1, right)."""
    curve = left - 2 * centre + right
    return float(np.clip(0.5 * (left - right) / curve, -0.5, 0.5)) if curve < 0 else 0.0
