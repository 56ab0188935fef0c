"""The papers' body metrics, following the pose-evaluation protocol (AliaksandrSiarohin/pose-evaluation).

Frames are scored at 256x256 (the protocol's --image_shape 256,256; other sizes are resized). Each
frame's pose is 18 OpenPose keypoints, (x, y) pixels of the 256x256 frame, -1 for a missing one
(bodies/backend.py maps BlazePose's landmarks to them); in a frame with several persons the largest
is scored.

* AKD, average keypoint distance (cmp_with_missing.py): per frame, the mean absolute coordinate
  difference |real - generated| over the x and y of the keypoints present in both frames; frames
  with no keypoint in common are left out. Averaged over frames.
* MKR, missing keypoint rate (cmp_with_missing.py): per frame, the keypoints present in the real
  frame and missing in the generated one, over those present in the real frame; frames whose real
  frame has none are left out. Averaged over frames.
* AED, average embedding distance (cmp.py on ``extract.py --type body_id``): per frame, the mean
  absolute difference of the re-identification embeddings of the two whole frames (bodies/reid.py);
  computed only when a re-ID model file is given, else reported as not computed.

Per-frame values are averaged over frames, and the overall row over all frames of all videos, as
the protocol's scripts average their rows.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np

from faces.metrics import PROTOCOL_SIZE, protocol_frame
from scoring import Column

from .backend import BodyBackend

AED_NOT_COMPUTED = 'body AED not computed: it needs a person re-identification model file (--reid_model)'
BODY_DATASETS = re.compile(r'taichi|tai-chi|fashion|(?<![a-z])ted', re.IGNORECASE)


@dataclass
class FramePose:
    keypoints: np.ndarray          # (18, 2) in the 256x256 frame, -1 where missing
    embedding: np.ndarray | None   # (D,) re-ID embedding, or None


def present(keypoints: np.ndarray) -> np.ndarray:
    """(18,) bool: the keypoints found (no -1 coordinate)."""
    return (np.asarray(keypoints) != -1).all(axis=1)


def frame_akd(real: np.ndarray, fake: np.ndarray) -> float | None:
    both = present(real) & present(fake)
    if not both.any():
        return None
    return float(np.abs(np.asarray(real, float)[both] - np.asarray(fake, float)[both]).mean())


def frame_mkr(real: np.ndarray, fake: np.ndarray) -> float | None:
    seen = present(real)
    if not seen.any():
        return None
    return float((seen & ~present(fake)).sum() / seen.sum())


@dataclass
class BodyScores:
    """Per-frame values of one or more videos; `summary()` gives the metrics."""
    akd: list[float] = field(default_factory=list)
    mkr: list[float] = field(default_factory=list)
    aed: list[float] = field(default_factory=list)
    frames: int = 0

    def add_frame(self, real: FramePose, fake: FramePose) -> None:
        self.frames += 1
        for values, value in ((self.akd, frame_akd(real.keypoints, fake.keypoints)),
                              (self.mkr, frame_mkr(real.keypoints, fake.keypoints))):
            if value is not None:
                values.append(value)
        if real.embedding is not None and fake.embedding is not None:
            # pose-evaluation's cmp.py, as for faces: the squared L2 distance of the embeddings
            self.aed.append(float(np.sum(np.abs(real.embedding - fake.embedding) ** 2)))

    def add(self, other: 'BodyScores') -> None:
        self.akd += other.akd
        self.mkr += other.mkr
        self.aed += other.aed
        self.frames += other.frames

    def summary(self) -> dict:
        def mean(values):
            return float(np.mean(values)) if values else None
        def missing(values):      # share of frames the metric could not score
            return 1 - len(values) / self.frames if self.frames else None
        return {'akd': mean(self.akd), 'mkr': mean(self.mkr), 'aed': mean(self.aed),
                'akd_missing': missing(self.akd), 'mkr_missing': missing(self.mkr), 'aed_missing': missing(self.aed),
                'frames': self.frames, 'frames_scored': len(self.akd)}


class BodyMetrics:
    """Scores generated videos against real ones; per video and pooled (FaceMetrics' interface)."""

    def __init__(self, backend: BodyBackend, reid=None):
        self.backend = backend
        self.reid = reid
        self.total = BodyScores()
        self.per_video: dict[str, dict] = {}

    def describe(self) -> str:
        return self.backend.description + (f' + {self.reid.description}' if self.reid is not None else '')

    def shows_body(self, frame: np.ndarray) -> bool:
        return bool(self.backend.detect_batch([protocol_frame(frame)])[0])

    def analyse(self, frames: Iterable[np.ndarray]) -> list[FramePose]:
        frames = [protocol_frame(f) for f in frames]
        embeddings = self.reid.embed(np.stack(frames)) if self.reid is not None and frames else [None] * len(frames)
        out = []
        for frame, embedding in zip(frames, embeddings):
            body = self.backend.largest_body(frame)
            keypoints = body.keypoints(*PROTOCOL_SIZE[::-1]) if body is not None else -np.ones((18, 2))
            out.append(FramePose(keypoints, embedding))
        return out

    def score_video(self, name: str, real: Iterable[np.ndarray], fake: Iterable[np.ndarray]) -> dict:
        """Score one video pair frame by frame (as many frames as the shorter has)."""
        real, fake = list(real), list(fake)
        count = min(len(real), len(fake))
        scores = BodyScores()
        for a, b in zip(self.analyse(real[:count]), self.analyse(fake[:count])):
            scores.add_frame(a, b)
        self.total.add(scores)
        self.per_video[name] = scores.summary()
        return self.per_video[name]

    def summary(self) -> dict:
        return {'body_backend': self.describe(), **self.total.summary(),
                'aed_note': None if self.reid is not None else AED_NOT_COMPUTED, 'per_video': self.per_video}


def make_body_metrics(reid_model: str | None = None, device: str = 'cpu', say=None) -> BodyMetrics:
    """BodyMetrics with the body backend and, when a file is given, the re-ID embedder."""
    from .backend import load_backend
    reid = None
    if reid_model:
        from .reid import ReidEmbedder
        reid = ReidEmbedder(reid_model, device)
    return BodyMetrics(load_backend('auto', say=say), reid)


# ----------------------------------------------------------------------------------------------
# Which metrics a configuration gets, and how they are printed
# ----------------------------------------------------------------------------------------------

def metrics_kind(config: dict) -> str:
    """'body' or 'face': reconstruction_params.metrics_kind when set, else 'body' for the Tai-Chi,
    TED and fashion data sets (dataset_params.root_dir names them), else 'face'."""
    kind = (config.get('reconstruction_params') or {}).get('metrics_kind')
    if kind is not None:
        if kind not in ('face', 'body'):
            raise ValueError(f'reconstruction_params.metrics_kind: {kind!r} is not face or body')
        return kind
    root = str((config.get('dataset_params') or {}).get('root_dir') or '')
    return 'body' if BODY_DATASETS.search(root.replace('\\', '/').rstrip('/').split('/')[-1]) else 'face'


def body_fields(metrics: BodyMetrics | None, note: str | None) -> dict:
    """metrics.json's body entries: overall AKD, MKR, AED, per video, the backend."""
    if metrics is None:
        return {'akd': None, 'mkr': None, 'aed': None, 'body_metrics_note': note}
    summary = metrics.summary()
    per_video = summary.pop('per_video')
    return {**summary, 'body_per_video': per_video, 'body_metrics_note': None}


def body_columns() -> list[Column]:
    """evaluate.py's and reconstruction's body columns, each with its missing share."""
    return [Column('akd', 'AKD', 3, 'akd_missing'), Column('mkr', 'MKR', 4, 'mkr_missing'),
            Column('aed', 'AED', 4, 'aed_missing')]


def body_legend(scores: dict) -> list[str]:
    """What the body columns mean, under evaluate.py's table."""
    lines = [f"body backend: {scores['body_backend']}. AKD: mean |coordinate difference| in pixels at 256x256 "
             f"over the keypoints found in both frames; MKR: share of the real frame's keypoints missing in the "
             f"generated one (pose-evaluation's cmp_with_missing.py); AED: cmp.py, squared L2 distance of "
             f"re-identification embeddings. (x%): share of frames the metric could not score."]
    if scores.get('aed_note'):
        lines.append(scores['aed_note'])
    return lines
