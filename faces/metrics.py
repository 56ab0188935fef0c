"""The papers' face metrics, following the pose-evaluation protocol (AliaksandrSiarohin/pose-evaluation).

Frames are compared at 256x256 (the protocol's --image_shape 256,256; other sizes are resized).

* AKD, average keypoint distance: per frame, the mean over the 68 landmarks of the Euclidean
  distance (in pixels of the 256x256 frame) between the landmarks of the real and the generated
  frame, averaged over frames. The protocol skips nothing: its extract.py takes the first face
  and fails on a frame without one; here such frames are left out of AKD and counted instead.
* AED, average embedding distance: per frame, the distance between identity embeddings of the two
  frames, averaged over frames. Two forms, because the protocol's code and the FOMM paper's words
  differ: `aed` is what pose-evaluation's cmp.py computes, the mean absolute difference over
  the embedding's components (mean |e_real - e_fake|); `aed_euclidean` is the paper's "average
  euclidean distance", ||e_real - e_fake||_2. The protocol's embedding is OpenFace (whole frame
  resized to 96x96); here it is the backend's identity descriptor (dlib's ResNet on the aligned
  face), so values are not comparable with the papers' tables, only between systems scored here.
* missing_face: share of frames where the real frame has a face and the generated one has none
  (as the body protocol's missing-keypoint rate); real_missing_face: share of real frames
  without a face.

Overall values average over all frames of all videos, as cmp.py averages its rows.
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
    face = backend.largest_face(frame)
    if face is None:
        return FrameFace(None, None)
    return FrameFace(face.landmarks, backend.embed(frame, face.landmarks) if identity else None)


def keypoint_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Mean Euclidean distance between corresponding landmarks."""
    return float(np.linalg.norm(np.asarray(a, float) - np.asarray(b, float), axis=1).mean())


def embedding_distances(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(protocol: mean absolute difference, paper: Euclidean distance)."""
    diff = np.asarray(a, float) - np.asarray(b, float)
    return float(np.abs(diff).mean()), float(np.linalg.norm(diff))


@dataclass
class FaceScores:
    """Running sums over frames; `summary()` gives the metrics, `add(other)` pools videos."""
    akd: list[float] = field(default_factory=list)
    aed: list[float] = field(default_factory=list)
    aed_euclidean: list[float] = field(default_factory=list)
    frames: int = 0
    real_missing: int = 0
    fake_missing: int = 0

    def add_frame(self, real: FrameFace, fake: FrameFace) -> None:
        self.frames += 1
        if real.landmarks is None:
            self.real_missing += 1
            return
        if fake.landmarks is None:
            self.fake_missing += 1
            return
        self.akd.append(keypoint_distance(real.landmarks, fake.landmarks))
        if real.embedding is not None and fake.embedding is not None:
            protocol, euclidean = embedding_distances(real.embedding, fake.embedding)
            self.aed.append(protocol)
            self.aed_euclidean.append(euclidean)

    def add(self, other: 'FaceScores') -> None:
        self.akd += other.akd
        self.aed += other.aed
        self.aed_euclidean += other.aed_euclidean
        self.frames += other.frames
        self.real_missing += other.real_missing
        self.fake_missing += other.fake_missing

    def summary(self) -> dict:
        with_real = self.frames - self.real_missing

        def mean(values):
            return float(np.mean(values)) if values else None

        return {'akd': mean(self.akd), 'aed': mean(self.aed), 'aed_euclidean': mean(self.aed_euclidean),
                'missing_face': self.fake_missing / with_real if with_real else None,
                'real_missing_face': self.real_missing / self.frames if self.frames else None,
                'frames': self.frames, 'frames_scored': len(self.akd)}


class FaceMetrics:
    """Scores generated videos against real ones with one backend; per video and pooled."""

    def __init__(self, backend: FaceBackend, identity: bool = True):
        self.backend = backend
        self.identity = identity
        self.total = FaceScores()
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
        scores = FaceScores()
        for real_face, fake_face in zip(self.analyse(real), self.analyse(fake)):
            scores.add_frame(real_face, fake_face)
        self.total.add(scores)
        self.per_video[name] = scores.summary()
        return self.per_video[name]

    def summary(self) -> dict:
        return {'face_backend': self.describe(), **self.total.summary(), 'per_video': self.per_video}
