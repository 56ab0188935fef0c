"""Animate faces in whole photos and raw videos: crop in, animate at the model's size, paste back.

* The source photo (any resolution): its largest face, cropped to a square the way training
  crops are made (`boxes.square_box`: the face box enlarged by `increase` per side; the part
  outside the photo padded with edge pixels).
* The driving video: cropped to its face with a box that follows it, smoothed over time
  (`boxes.smooth_track`); where the face is lost the last box is held.
* Each animated crop is pasted back into the full photo with a feathered edge; pixels outside
  the pasted square are the photo's own. The result is at the photo's size or `result_size`.

Used by `demo.py --crop` and by the Python API (`animate.animate_photo`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

from .backend import FaceBackend, NoFaceError, as_uint8
from .boxes import crop_resized, fit_box, paste, smooth_track, square_box
from .scan import detect_with_retry, scan_video

# dlib's HOG face box spans 0.53 of the frame side in the sample VoxCeleb-style clip (median over
# the 167 of its 169 frames with a detection, at its 410x412 size), so a square 1.9 times the
# box (0.45 per side) frames a face as the vox-256 models saw faces in training.
DEMO_INCREASE = 0.45
FEATHER = 0.08        # share of the pasted square's side over which its edge fades into the photo
PHOTO_DETECT_SIZE = 1024


@dataclass
class PhotoCrop:
    photo: np.ndarray      # uint8 (H, W, 3): the whole photo
    box: np.ndarray        # int (4,): the square crop in photo pixels (may extend past the edge)

    def source(self, size: Sequence[int]) -> np.ndarray:
        """float32 (h, w, 3): the crop at the model's size."""
        return crop_resized(self.photo, self.box, size)

    def composer(self, result_size: Sequence[int] | None = None,
                 feather: float = FEATHER) -> Callable[[np.ndarray], np.ndarray]:
        """float (B, h, w, 3) animated crops -> uint8 (B, H, W, 3) photos with them pasted in."""
        from media import resize_frame
        width = int(round(feather * (self.box[2] - self.box[0])))

        def compose(frames: np.ndarray) -> np.ndarray:
            out = [paste(self.photo, frame, self.box, width) for frame in frames]
            if result_size is not None and tuple(result_size) != self.photo.shape[:2]:
                out = [as_uint8(resize_frame(frame, result_size)) for frame in out]
            return np.stack(out)
        return compose


def crop_photo(photo: np.ndarray, backend: FaceBackend, increase: float = DEMO_INCREASE,
               name: str = 'the source image') -> PhotoCrop:
    """The square around the photo's largest face (found on a copy at most 1024 px on a side, or,
    where none is found there, on larger copies: `detect_with_retry`)."""
    photo = as_uint8(photo)
    found = detect_with_retry(backend, [photo], PHOTO_DETECT_SIZE)[0]
    if not found:
        raise NoFaceError(f'no face found in {name} ({photo.shape[1]}x{photo.shape[0]}, {backend.name} detector); '
                          'drop --crop to animate the whole image, or crop it to the face yourself')
    face = max(found, key=lambda f: f.area)
    box = fit_box(square_box(face.box, increase), photo.shape[1], photo.shape[0], 'pad')
    return PhotoCrop(photo, box)


@dataclass
class DrivingTrack:
    boxes: np.ndarray               # int (T, 4): the crop of every frame
    lost: list[tuple[int, int]]     # frame ranges (inclusive) without a detected face

    def describe_lost(self) -> str | None:
        if not self.lost:
            return None
        ranges = ', '.join(f'{a}-{b}' if a != b else f'{a}' for a, b in self.lost[:4])
        return f'no face found in driving frames {ranges}: the crop holds the nearest face box there'


def track_driving(frames: Iterable[np.ndarray], backend: FaceBackend, fps: float, increase: float = DEMO_INCREASE,
                  smooth_seconds: float = 0.2, stride: int = 1, name: str = 'the driving video',
                  on_frame: Callable[[], None] | None = None) -> DrivingTrack:
    """Crop boxes following the driving face (one pass over `frames`)."""
    scan = scan_video(frames, backend, stride=stride, cut_threshold=2.0, on_frame=on_frame)   # no cuts
    faces = scan.face_boxes()
    detected = sorted(scan.detections)
    if not any(scan.detections[f] for f in detected):
        raise NoFaceError(f'no face found in {name} ({len(detected)} frames looked at, {backend.name} detector); '
                          'drop --crop to use the whole frames')
    lost = [f for f in detected if not scan.detections[f]]
    smooth = smooth_track(faces, smooth_seconds * fps)
    boxes = np.stack([fit_box(square_box(b, increase), scan.width, scan.height, 'pad') for b in smooth])
    return DrivingTrack(boxes, _ranges(lost, stride))


def _ranges(frames: list[int], stride: int) -> list[tuple[int, int]]:
    out: list[list[int]] = []
    for f in frames:
        if out and f - out[-1][1] <= stride:
            out[-1][1] = f
        else:
            out.append([f, f])
    return [(a, b) for a, b in out]


class CroppedVideo:
    """The driving video cropped to its track, with the VideoReader methods the demo uses."""

    def __init__(self, reader, boxes: np.ndarray):
        self.reader = reader
        self.boxes = boxes
        self.path, self.fps = reader.path, reader.fps
        self.num_frames = len(boxes)
        self.estimated_num_frames = len(boxes)
        self.has_audio = getattr(reader, 'has_audio', False)

    def _box(self, index: int) -> np.ndarray:
        return self.boxes[min(index, len(self.boxes) - 1)]

    def iter_batches(self, batch_size: int, size: Sequence[int] | None = None) -> Iterator[np.ndarray]:
        size = size or (256, 256)
        batch: list[np.ndarray] = []
        for index, frame in enumerate(self.reader):
            batch.append(crop_resized(frame, self._box(index), size))
            if len(batch) == batch_size:
                yield np.stack(batch)
                batch = []
        if batch:
            yield np.stack(batch)

    def read_frame(self, index: int) -> np.ndarray:
        """uint8 crop of frame `index` at the crop's own size (the caller resizes)."""
        if index >= len(self.boxes):
            raise IndexError(f'frame {index} out of range: {self.path} has {len(self.boxes)} frames')
        return as_uint8(crop_resized(self.reader.read_frame(index), self._box(index),
                                     (int(self._box(index)[3] - self._box(index)[1]),) * 2))

    def close(self) -> None:
        self.reader.close()
