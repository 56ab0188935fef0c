"""Animate a person in a whole photo: crop in, animate at the model's size, paste back (demo --crop).

As faces/compose.py does for faces, with the person's box (bodies/backend.py: around BlazePose's
visible landmarks) in place of the face box:

* the source photo: its largest person, cropped to the square around the person's box enlarged
  by `increase` per side (crop_taichi's aspect-preserving box; the part outside the photo padded);
* the driving video: cropped to its person with a box that follows them, smoothed over time;
  where the person is lost the nearest box is held;
* each animated crop is pasted back into the photo with a feathered edge (faces.compose.PhotoCrop).
"""
from __future__ import annotations

from typing import Callable, Iterable

import numpy as np

from faces.backend import as_uint8
from faces.boxes import fit_box, smooth_track, square_box
from faces.compose import PHOTO_DETECT_SIZE, DrivingTrack, PhotoCrop, _ranges
from faces.scan import scan_video, shrink_for_detection

from .backend import BodyBackend, NoBodyError

# Tai-Chi-HD clips frame a person with crop_taichi's 0.05 per side around a box that holds the whole
# tube; one frame's person box is tighter than that, so the demo leaves a little more room.
DEMO_INCREASE = 0.1


def crop_person(photo: np.ndarray, backend: BodyBackend, increase: float = DEMO_INCREASE,
                name: str = 'the source image') -> PhotoCrop:
    """The square around the photo's largest person (found on a copy at most 1024 px on a side)."""
    photo = as_uint8(photo)
    small, factor = shrink_for_detection(photo, PHOTO_DETECT_SIZE)
    found = backend.detect_batch([small])[0]
    if not found:
        raise NoBodyError(f'no person found in {name} ({photo.shape[1]}x{photo.shape[0]}, {backend.name} pose '
                          'model); drop --crop to animate the whole image, or crop it to the person yourself')
    person = max(found, key=lambda b: b.area)
    box = fit_box(square_box(person.box * factor, increase), photo.shape[1], photo.shape[0], 'pad')
    return PhotoCrop(photo, box)


def track_person(frames: Iterable[np.ndarray], backend: BodyBackend, fps: float, increase: float = DEMO_INCREASE,
                 smooth_seconds: float = 0.2, name: str = 'the driving video',
                 on_frame: Callable[[], None] | None = None) -> DrivingTrack:
    """Crop boxes following the driving person (one pass over `frames`, a detection on every frame)."""
    scan = scan_video(frames, backend, stride=1, cut_threshold=2.0, on_frame=on_frame)     # no cuts
    detected = sorted(scan.detections)
    if not any(scan.detections[f] for f in detected):
        raise NoBodyError(f'no person found in {name} ({len(detected)} frames looked at, {backend.name} pose model); '
                          'drop --crop to use the whole frames')
    smooth = smooth_track(scan.face_boxes(), smooth_seconds * fps)      # one box a frame, following the person
    boxes = np.stack([fit_box(square_box(b, increase), scan.width, scan.height, 'pad') for b in smooth])
    lost = _ranges([f for f in detected if not scan.detections[f]], 1)
    return PersonTrack(boxes, lost)


class PersonTrack(DrivingTrack):
    def describe_lost(self) -> str | None:
        text = super().describe_lost()
        return text and text.replace('no face found', 'no person found').replace('nearest face box', 'nearest box')
