"""The papers' face metrics as pose-evaluation computes them (AliaksandrSiarohin/pose-evaluation).

Frames are compared at 256x256 (the protocol's --image_shape 256,256; other sizes are resized).
Which face: the detector's most confident one (extract.py's `get_landmarks(frame)[0]`, with
face-alignment's flip_input=False).

* AKD (`akd`), cmp_kp.py: per frame `mean(|l_real - l_fake|)` over the 68x2 landmark coordinates
  (pixels of the 256x256 frame), averaged over the frames where both sides show a face. cmp_kp.py
  drops frames without a face (extract.py stores None there) on either side; they are counted
  here instead. `akd_euclidean`: the mean over the 68 landmarks of the Euclidean distance
  (about sqrt(2) times AKD for isotropic errors, 2x for a shift along one axis).
* AED (`aed`), cmp.py: per frame `sum((e_real - e_fake) ** 2)`, the squared L2 distance of the two
  identity embeddings, averaged over frames. `aed_l2` is its square root per frame (the FOMM
  paper's "average euclidean distance"), `aed_mean_abs` the mean absolute difference over the
  components (an older cmp.py). The protocol embeds the whole frame with OpenFace (96x96) and so
  scores every frame; the embedding here is the backend's identity descriptor of the face
  (dlib's ResNet on the aligned face), so frames without a face on either side are not scored,
  and values are comparable only between systems scored here, not with the papers' tables.
* Missing shares: `akd_missing` / `aed_missing`, the share of frames each metric could not
  score; `missing_face`, the share of frames whose real frame shows a face and whose generated
  one does not (as the body protocol's missing-keypoint rate); `real_missing_face`, the share of
  real frames without a face.

Overall values average over all scored frames of all videos, as cmp_kp.py and cmp.py average
their rows.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

import numpy as np

from .backend import FaceBackend, as_uint8

PROTOCOL_SIZE = (256, 256)


@dataclass
class FrameFace:
    landmarks: np.ndarray | None       # (68, 2) in the 256x256 frame, or None (no face)
    embedding: np.ndarray | None       # (D,) or None


def protocol_frame(frame: np.ndarray) -> np.ndarray:
    """uint8 (256, 256, 3): the frame as the protocol scores it."""
    from media import resize_frame
    if frame.shape[:2] != PROTOCOL_SIZE:
        frame = resize_frame(frame, PROTOCOL_SIZE)
    return as_uint8(frame)


def analyse_frame(backend: FaceBackend, frame: np.ndarray, identity: bool = True) -> FrameFace:
    frame = protocol_frame(frame)
    face = backend.first_face(frame)
    if face is None:
        return FrameFace(None, None)
    return FrameFace(face.landmarks, backend.embed(frame, face.landmarks) if identity else None)


def keypoint_distance(a: np.ndarray, b: np.ndarray) -> float:
    """The protocol's AKD of one frame: mean absolute difference over the (68, 2) coordinates."""
    return float(np.mean(np.abs(np.asarray(a, float) - np.asarray(b, float))))


def keypoint_distance_euclidean(a: np.ndarray, b: np.ndarray) -> float:
    """Mean Euclidean distance between corresponding landmarks of (68, 2) arrays."""
    return float(np.linalg.norm(np.asarray(a, float) - np.asarray(b, float), axis=1).mean())


def embedding_distances(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """One frame's embedding distances of (D,) vectors: `aed` (the protocol's squared L2),
    `aed_l2` (Euclidean) and `aed_mean_abs` (mean absolute difference)."""
    diff = np.asarray(a, float) - np.asarray(b, float)
    squared = float(np.sum(diff ** 2))
    return {'aed': squared, 'aed_l2': float(np.sqrt(squared)), 'aed_mean_abs': float(np.mean(np.abs(diff)))}


AED_FORMS = ('aed', 'aed_l2', 'aed_mean_abs')


@dataclass
class FaceScores:
    """Per-frame values of one or more videos; `summary()` gives the metrics, `add(other)` pools."""
    akd: list[float] = field(default_factory=list)
    akd_euclidean: list[float] = field(default_factory=list)
    aed: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in AED_FORMS})
    frames: int = 0
    real_missing: int = 0
    fake_missing: int = 0
    identity: bool = True              # whether AED is measured (its missing share is None if not)

    def add_frame(self, real: FrameFace, fake: FrameFace) -> None:
        self.frames += 1
        if real.landmarks is None:
            self.real_missing += 1
            return
        if fake.landmarks is None:
            self.fake_missing += 1
            return
        self.akd.append(keypoint_distance(real.landmarks, fake.landmarks))
        self.akd_euclidean.append(keypoint_distance_euclidean(real.landmarks, fake.landmarks))
        if real.embedding is not None and fake.embedding is not None:
            for key, value in embedding_distances(real.embedding, fake.embedding).items():
                self.aed[key].append(value)

    def add(self, other: 'FaceScores') -> None:
        self.akd += other.akd
        self.akd_euclidean += other.akd_euclidean
        for key in AED_FORMS:
            self.aed[key] += other.aed[key]
        self.frames += other.frames
        self.real_missing += other.real_missing
        self.fake_missing += other.fake_missing

    def summary(self) -> dict:
        with_real = self.frames - self.real_missing

        def mean(values):
            return float(np.mean(values)) if values else None

        def missing(scored: int):
            return 1.0 - scored / self.frames if self.frames else None

        aed_scored = len(self.aed['aed'])
        return {'akd': mean(self.akd), 'akd_euclidean': mean(self.akd_euclidean),
                **{key: mean(values) for key, values in self.aed.items()},
                'akd_missing': missing(len(self.akd)), 'aed_missing': missing(aed_scored) if self.identity else None,
                'missing_face': self.fake_missing / with_real if with_real else None,
                'real_missing_face': self.real_missing / self.frames if self.frames else None,
                'frames': self.frames, 'frames_scored': len(self.akd)}


class FaceMetrics:
    """Scores generated videos against real ones with one backend; per video and pooled."""

    def __init__(self, backend: FaceBackend, identity: bool = True):
        self.backend = backend
        self.identity = identity
        self.total = FaceScores(identity=identity)
        self.per_video: dict[str, dict] = {}

    def describe(self) -> str:
        return self.backend.description

    def shows_face(self, frame: np.ndarray) -> bool:
        """Whether the frame (scored at 256x256) has a face: decides whether a data set is faces."""
        return bool(self.backend.detect_batch([protocol_frame(frame)])[0])

    def analyse(self, frames: Iterable[np.ndarray]) -> list[FrameFace]:
        return [analyse_frame(self.backend, frame, self.identity) for frame in frames]

    def score_video(self, name: str, real: Iterable[np.ndarray], fake: Iterable[np.ndarray]) -> dict:
        """Score one video pair, frame by frame (as many frames as the shorter has)."""
        scores = FaceScores(identity=self.identity)
        for real_face, fake_face in zip(self.analyse(real), self.analyse(fake)):
            scores.add_frame(real_face, fake_face)
        self.total.add(scores)
        self.per_video[name] = scores.summary()
        return self.per_video[name]

    def summary(self) -> dict:
        return {'face_backend': self.describe(), **self.total.summary(), 'per_video': self.per_video}


# The face metrics as table columns and summary-line entries (scoring.Column), protocol forms first.
def face_columns(identity: bool = True) -> list:
    from scoring import Column
    columns = [Column('akd', 'AKD', 3, 'akd_missing'), Column('akd_euclidean', 'AKD-L2', 3, 'akd_missing')]
    if identity:
        columns += [Column('aed', 'AED', 4, 'aed_missing'), Column('aed_l2', 'AED-L2', 4, 'aed_missing'),
                    Column('aed_mean_abs', 'AED-abs', 4, 'aed_missing')]
    return columns
