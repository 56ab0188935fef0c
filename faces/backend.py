"""Face detection, the 68 iBUG landmarks and an identity embedding, behind one interface.

Two backends:

* ``face-alignment``: the SFD detector and FAN 2-D landmarks of the face-alignment package, the
  models the FOMM/TPSMM references and the pose-evaluation protocol use. Its weights download on
  first use into torch's hub folder (``$TORCH_HOME/hub/checkpoints``, by default
  ``~/.cache/torch/hub/checkpoints``); offline, it loads only when they are already there.
* ``dlib``: the ``dlib-bin`` wheel with the models ``face-recognition-models`` ships (HOG or MMOD
  detector, 68-point shape predictor, 128-d ResNet face descriptor); installs and runs offline.
  The 68-point predictor was trained on iBUG 300-W, whose licence excludes commercial use.

The identity embedding is dlib's ResNet descriptor in both cases (face-alignment has none); with
the face-alignment backend it is computed from face-alignment's landmarks.

``load_backend('auto')`` uses face-alignment when its model loads, else dlib, and says which in
one line. A failure to load face-alignment is remembered for the process, so a run tries (and
prints about) it once. Every frame given to a backend is RGB ``(H, W, 3)``, uint8 or float in
``[0, 1]``; boxes are float ``(x0, y0, x1, y1)`` in that frame's pixels.
"""
from __future__ import annotations

import contextlib
import importlib.util
import inspect
import io
import os
import sys
import warnings
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

BACKEND_CHOICES = ('auto', 'face-alignment', 'dlib')
# dlib's detectors. 'hog' looks again, at twice and four times the size, at frames where it found
# no face (HOG's window is 80 px: one pass misses the 55-70 px faces of a 720p talk);
# 'hog-once' is one pass (the fastest); 'mmod' is dlib's CNN (seconds a frame on a CPU).
DETECTOR_CHOICES = ('hog', 'hog-once', 'mmod')
DETECTOR_HELP = ("dlib's face detector: hog (default: frames without a face are looked at again at 2x and 4x "
                 "size, for faces down to ~40 px) | hog-once (one pass: faster, misses faces under ~80 px at "
                 "the detection size) | mmod (CNN, seconds a frame on a CPU); face-alignment uses its SFD")
FACE_ALIGNMENT_FILES = ('s3fd-619a316812.pth', '2DFAN4-11f355bf06.pth.tar')   # face-alignment 1.4/1.5
IBUG_LICENCE = ('the dlib 68-point landmark model was trained on iBUG 300-W, whose licence excludes '
                'commercial use')


class FaceModelError(RuntimeError):
    """A face backend that cannot load (package or model files missing); one-line message."""


class NoFaceError(ValueError):
    """An input in which a face is needed and none is found; one-line message naming the file."""


@dataclass
class Face:
    box: np.ndarray                    # float (4,): x0, y0, x1, y1 in pixels
    score: float
    landmarks: np.ndarray | None = None  # float (68, 2): x, y in pixels, iBUG order

    @property
    def area(self) -> float:
        return float(max(0.0, self.box[2] - self.box[0]) * max(0.0, self.box[3] - self.box[1]))


def as_uint8(frame: np.ndarray) -> np.ndarray:
    """RGB uint8 (H, W, 3) from uint8 or float-in-[0, 1] input (what the models take)."""
    frame = np.asarray(frame)
    if frame.dtype != np.uint8:
        frame = np.clip(np.rint(frame * 255.0), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(frame[..., :3])


def torch_hub_checkpoints() -> str:
    """Where torch (and face-alignment, and torchvision's VGG-19) keep downloaded weights."""
    import torch
    return os.path.join(torch.hub.get_dir(), 'checkpoints')


class FaceBackend:
    """Interface: subclasses implement `detect_batch`, `landmarks` and `embed`."""

    name = 'base'
    description = ''
    # Frames without a face are looked at again enlarged by these factors (in turn, up to the
    # first that finds one); see faces.scan.detect_with_retry.
    retry_scales: tuple[int, ...] = ()
    smallest_face = 20     # px at the detection size: about the smallest face the detector finds

    def detect_batch(self, frames: Sequence[np.ndarray]) -> list[list[Face]]:
        """Faces (box and score, no landmarks) of each frame; frames of one batch share a size."""
        raise NotImplementedError

    def landmarks(self, frame: np.ndarray, box: np.ndarray) -> np.ndarray:
        """(68, 2) landmarks of the face in `box`."""
        raise NotImplementedError

    def embed(self, frame: np.ndarray, landmarks: np.ndarray) -> np.ndarray | None:
        """(128,) identity embedding of the face with these landmarks (None when unavailable)."""
        raise NotImplementedError

    def faces(self, frame: np.ndarray) -> list[Face]:
        """Every face of one frame with landmarks, largest first."""
        frame = as_uint8(frame)
        found = sorted(self.detect_batch([frame])[0], key=lambda f: -f.area)
        for face in found:
            face.landmarks = self.landmarks(frame, face.box)
        return found

    def first_face(self, frame: np.ndarray) -> Face | None:
        """The detector's most confident face of one frame, with landmarks, or None: what
        pose-evaluation's extract.py scores (`get_landmarks(frame)[0]`, whose detector returns
        its faces by score)."""
        frame = as_uint8(frame)
        found = self.detect_batch([frame])[0]
        if not found:
            return None
        face = max(found, key=lambda f: f.score)         # the first of equal scores
        face.landmarks = self.landmarks(frame, face.box)
        return face

    def best_frame_landmarks(self, image: np.ndarray) -> np.ndarray | None:
        """(68, 2) landmarks of one face of `image` for find_best_frame, or None: the largest
        face (the face-alignment backend does as the references' find_best_frame instead)."""
        face = self.largest_face(image)
        return None if face is None else face.landmarks

    def largest_face(self, frame: np.ndarray) -> Face | None:
        """The largest face of one frame with landmarks, or None."""
        frame = as_uint8(frame)
        found = self.detect_batch([frame])[0]
        if not found:
            return None
        confident = [f for f in found if f.score >= 0] or found     # dlib's lowered threshold: prefer sure faces
        face = max(confident, key=lambda f: f.area)
        face.landmarks = self.landmarks(frame, face.box)
        return face


def landmark_function(backend: FaceBackend) -> Callable[[np.ndarray], 'np.ndarray | None']:
    """image (H, W, 3), float in [0, 1] or uint8 -> (68, 2) landmarks of one face, or None
    (for find_best_frame): `backend.best_frame_landmarks`."""
    def landmarks(image: np.ndarray):
        from media import resize_frame
        factor = 1.0
        if backend.name == 'dlib' and max(image.shape[:2]) < 256:
            # HOG finds no face under ~80 px: look at small frames enlarged
            factor = 256 / max(image.shape[:2])
            image = resize_frame(image, (round(image.shape[0] * factor), round(image.shape[1] * factor)))
        found = backend.best_frame_landmarks(image)
        return None if found is None else found / factor
    return landmarks


# ----------------------------------------------------------------------------------------------
# dlib
# ----------------------------------------------------------------------------------------------

def dlib_model_dir() -> str:
    """The folder of face-recognition-models' .dat files, found without importing the package
    (its __init__ needs pkg_resources, which current setuptools no longer ships)."""
    spec = importlib.util.find_spec('face_recognition_models')
    if spec is None or not spec.submodule_search_locations:
        raise FaceModelError('the dlib face backend needs the face-recognition-models package '
                             '(pip install face-recognition-models)')
    return os.path.join(list(spec.submodule_search_locations)[0], 'models')


class DlibBackend(FaceBackend):
    name = 'dlib'

    # HOG's decision threshold lowered from 0 to -0.3: at 0 it misses 8 of the 169 frames of the
    # sample clip at 256x256 (a turned head), at -0.3 none, with 2 extra low-score boxes
    # (largest_face prefers boxes scoring >= 0).
    HOG_THRESHOLD = -0.3

    def __init__(self, detector: str = 'hog', upsample: int = 0):
        try:
            import dlib
        except ImportError:
            raise FaceModelError('the dlib face backend needs the dlib-bin package (pip install dlib-bin)') from None
        if detector not in DETECTOR_CHOICES:
            raise FaceModelError(f'--detector {detector!r}: choose one of {", ".join(DETECTOR_CHOICES)}')
        models = dlib_model_dir()
        paths = {k: os.path.join(models, f) for k, f in (
            ('shape', 'shape_predictor_68_face_landmarks.dat'),
            ('descriptor', 'dlib_face_recognition_resnet_model_v1.dat'),
            ('mmod', 'mmod_human_face_detector.dat'))}
        missing = [p for k, p in paths.items() if not os.path.isfile(p) and (k != 'mmod' or detector == 'mmod')]
        if missing:
            raise FaceModelError(f'the dlib face backend: model file {missing[0]} is missing; reinstall '
                                 'face-recognition-models')
        self._dlib = dlib
        self.detector_kind = detector
        self.upsample = int(upsample)
        self._detector = (dlib.cnn_face_detection_model_v1(paths['mmod']) if detector == 'mmod'
                          else dlib.get_frontal_face_detector())
        self.retry_scales = (2, 4) if detector == 'hog' else ()
        self.smallest_face = 80          # HOG's 80x80 window (its smallest box on the sample: 73 px)
        self._shape = dlib.shape_predictor(paths['shape'])
        self._descriptor = dlib.face_recognition_model_v1(paths['descriptor'])
        self.description = (f'dlib ({"MMOD" if detector == "mmod" else "HOG"} detector, 68-point shape predictor, '
                            f'ResNet-128 identity descriptor)')

    def detect_batch(self, frames):
        frames = [as_uint8(f) for f in frames]
        if self.detector_kind == 'mmod':
            found = self._detector(frames, self.upsample)    # one call for the whole batch
            return [[Face(_rect_box(d.rect), float(d.confidence)) for d in per] for per in found]
        out = []
        for frame in frames:
            rects, scores, _ = self._detector.run(frame, self.upsample, self.HOG_THRESHOLD)
            out.append([Face(_rect_box(r), float(s)) for r, s in zip(rects, scores)])
        return out

    def landmarks(self, frame, box):
        shape = self._shape(as_uint8(frame), _box_rect(self._dlib, box))
        return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)

    def embed(self, frame, landmarks):
        return dlib_descriptor(self._dlib, self._descriptor, frame, landmarks)


def _rect_box(rect) -> np.ndarray:
    # dlib rectangles are inclusive: right/bottom are the last pixel inside
    return np.array([rect.left(), rect.top(), rect.right() + 1, rect.bottom() + 1], dtype=np.float64)


def _box_rect(dlib, box):
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    return dlib.rectangle(x0, y0, x1 - 1, y1 - 1)


def dlib_descriptor(dlib, model, frame: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """dlib's 128-d ResNet descriptor of the face aligned by its 68 landmarks."""
    points = [dlib.point(int(round(x)), int(round(y))) for x, y in landmarks]
    x0, y0 = np.floor(landmarks.min(axis=0)).astype(int)
    x1, y1 = np.ceil(landmarks.max(axis=0)).astype(int)
    shape = dlib.full_object_detection(dlib.rectangle(int(x0), int(y0), int(x1), int(y1)), points)
    return np.array(model.compute_face_descriptor(as_uint8(frame), shape), dtype=np.float64)


# ----------------------------------------------------------------------------------------------
# face-alignment
# ----------------------------------------------------------------------------------------------

class FaceAlignmentBackend(FaceBackend):
    name = 'face-alignment'

    def __init__(self, device: str = 'cpu'):
        try:
            import face_alignment
        except ImportError:
            raise FaceModelError('the face-alignment backend needs the face-alignment package '
                                 '(pip install face-alignment)') from None
        kwargs = {'flip_input': False, 'device': str(device)}
        if 'compile' in inspect.signature(face_alignment.FaceAlignment).parameters:
            kwargs['compile'] = False        # torch.compile costs minutes on a CPU for one video
        captured = io.StringIO()
        try:
            # torch and face-alignment print 'Downloading: ...' (stdout, stderr) before they try;
            # keep it for a success (replayed below), so an offline run says one line of its own.
            with contextlib.redirect_stdout(captured), contextlib.redirect_stderr(captured), \
                    warnings.catch_warnings():
                warnings.simplefilter('ignore')
                self._fa = face_alignment.FaceAlignment(face_alignment.LandmarksType.TWO_D, **kwargs)
        except Exception as err:  # noqa: BLE001 - any failure to fetch or build a third-party model
            reason = ' '.join(str(err).split()) or type(err).__name__
            raise FaceModelError(
                f'the face-alignment model could not be loaded ({type(err).__name__}: {reason[:160]}); it downloads '
                f'{" and ".join(FACE_ALIGNMENT_FILES)} into {torch_hub_checkpoints()} on first use, which needs '
                f'internet access: copy them there to run offline, or use --face_backend dlib') from None
        sys.stderr.write(captured.getvalue())
        self._dlib = None
        self._descriptor = None
        self.description = 'face-alignment (SFD detector, FAN 2-D landmarks)'
        with contextlib.suppress(FaceModelError, ImportError):
            import dlib
            self._descriptor = dlib.face_recognition_model_v1(
                os.path.join(dlib_model_dir(), 'dlib_face_recognition_resnet_model_v1.dat'))
            self._dlib = dlib
            self.description += ' + dlib ResNet-128 identity descriptor'

    def detect_batch(self, frames):
        import torch
        # RGB, as the references hand their frames over: face-alignment >= 1.3 reorders the batch
        # to BGR itself (sfd's batch_detect), so SFD sees BGR, as it was trained and as the
        # references' detector saw it (face-alignment 1.0 reordered before detect_from_image, and
        # crop-video.py reordered by hand for it). (B, 3, H, W) float in 0..255.
        batch = np.stack([as_uint8(f) for f in frames])
        tensor = torch.from_numpy(batch).permute(0, 3, 1, 2).float()
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            found = self._fa.face_detector.detect_from_batch(tensor)
        return [[Face(np.asarray(d[:4], dtype=np.float64), float(d[4])) for d in per] for per in found]

    def landmarks(self, frame, box):
        self._fa.flip_input = False
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            found = self._fa.get_landmarks_from_image(as_uint8(frame), detected_faces=[list(box) + [1.0]])
        return np.asarray(found[0], dtype=np.float64)[:, :2]

    def _first(self, image: np.ndarray, flip: bool) -> Face | None:
        """`get_landmarks(image)[0]` with face-alignment's own detection, as the references call
        it, with `flip_input` as given (an attribute face-alignment reads on every call)."""
        self._fa.flip_input = flip
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            landmarks, _, boxes = self._fa.get_landmarks_from_image(image, return_bboxes=True)
        if not landmarks:
            return None
        box = np.asarray(boxes[0], dtype=np.float64)
        return Face(box[:4], float(box[4]) if len(box) > 4 else 1.0,
                    np.asarray(landmarks[0], dtype=np.float64)[:, :2])

    def first_face(self, frame):
        # pose-evaluation's extract.py: uint8 RGB frame, flip_input=False
        return self._first(as_uint8(frame), flip=False)

    def best_frame_landmarks(self, image):
        # both references' find_best_frame: get_landmarks(255 * image)[0] with flip_input=True on
        # the float RGB frame (face-alignment's crop then truncates it to uint8 for FAN)
        image = np.asarray(image)[..., :3]
        face = self._first(image * 255.0 if image.dtype.kind == 'f' else image, flip=True)
        return None if face is None else face.landmarks

    def embed(self, frame, landmarks):
        if self._descriptor is None:
            return None
        return dlib_descriptor(self._dlib, self._descriptor, frame, landmarks)


# ----------------------------------------------------------------------------------------------
# Choosing a backend (once per process)
# ----------------------------------------------------------------------------------------------

_LOADED: dict[tuple, FaceBackend] = {}
_FAILED: dict[str, FaceModelError] = {}


def default_say(message: str) -> None:
    print(f'note: {message}', file=sys.stderr)


def load_backend(name: str = 'auto', device: str = 'cpu', *, detector: str = 'hog',
                 say: Callable[[str], None] | None = None) -> FaceBackend:
    """The backend `name` ('auto', 'face-alignment' or 'dlib'), built once per process.

    The choice is said in one line through `say` (default: a 'note:' line on stderr), once per
    process; 'auto' tries face-alignment and falls back to dlib, saying why. A forced backend that cannot load
    raises FaceModelError with one line; face-alignment's failure is remembered, so it is tried
    once per process whatever the caller."""
    if name not in BACKEND_CHOICES:
        raise FaceModelError(f'--face_backend {name!r}: choose one of {", ".join(BACKEND_CHOICES)}')
    say = say or default_say
    key = (name, str(device), detector)
    if key in _LOADED:
        return _LOADED[key]
    if name == 'dlib':
        backend: FaceBackend = DlibBackend(detector)
        say(f'face backend: {backend.description}')
    elif name == 'face-alignment':
        backend = _face_alignment(str(device))
        say(f'face backend: {backend.description}')
    else:
        try:
            backend = _face_alignment(str(device))
            say(f'face backend: {backend.description}')
        except FaceModelError as err:
            backend = DlibBackend(detector)
            say(f'face backend: {backend.description}; face-alignment is unavailable ({_short(err)})')
    _LOADED[key] = backend
    return backend


def _face_alignment(device: str) -> FaceBackend:
    if 'face-alignment' in _FAILED:
        raise _FAILED['face-alignment']
    try:
        return FaceAlignmentBackend(device)
    except FaceModelError as err:
        _FAILED['face-alignment'] = err
        raise


def _short(err: Exception) -> str:
    text = str(err)
    return text.split('; it downloads')[0].replace('the face-alignment model could not be loaded ', 'its model did not load: ')


def forget_loaded() -> None:
    """Drop the per-process memory (tests that change what can load)."""
    _LOADED.clear()
    _FAILED.clear()
