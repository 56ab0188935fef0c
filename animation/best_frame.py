"""The best reference frame for relative motion: the driving frame whose face landmarks match the
source's best (`demo.py --find_best_frame`, `run.py --mode animate` with `find_best_frame`)."""
from __future__ import annotations

import math
from typing import Callable, Iterable

import numpy as np

from modules.motion_transfer import convex_hull_area

from .errors import DemoError, one_line

Landmarks = Callable[[np.ndarray], 'np.ndarray | None']


def load_landmark_detector(device, backend: str = 'auto') -> Landmarks:
    """The face backend's 68 landmarks (faces/; face-alignment as the references, else dlib,
    offline), wrapped as image (H, W, 3) float in [0, 1] -> (68, 2) landmarks of the largest
    face, or None."""
    from faces import FaceModelError, landmark_function, load_backend
    try:
        return landmark_function(load_backend(backend, str(device)))
    except FaceModelError as err:
        raise DemoError(f'--find_best_frame: {one_line(err)}; or pick the reference frame yourself with '
                        '--best_frame N') from None


def normalize_landmarks(points: np.ndarray) -> np.ndarray | None:
    """Centre landmarks on their mean and divide by sqrt(area of their convex hull), as the
    references' find_best_frame; None when the hull is degenerate."""
    points = np.array(points, dtype=np.float64)[:, :2]
    points -= points.mean(axis=0, keepdims=True)
    area = convex_hull_area(points)
    if not area > 0:
        return None
    return points / math.sqrt(area)


def find_best_frame(source: np.ndarray, frames: Iterable[np.ndarray], landmarks: Landmarks,
                    source_name: str = 'source image') -> tuple[int | None, np.ndarray | None]:
    """(index, frame) of the frame whose normalised landmarks are closest (sum of squared
    differences) to the source's; frames without a face are skipped; (None, None) when no frame
    has one. Streams `frames`, keeping only the best one."""
    found = landmarks(source)
    reference = normalize_landmarks(found) if found is not None else None
    if reference is None:
        raise DemoError(f'--find_best_frame: no face found in the source image {source_name}')
    best, best_index, best_frame = math.inf, None, None
    for index, frame in enumerate(frames):
        found = landmarks(frame)
        normalized = normalize_landmarks(found) if found is not None else None
        if normalized is None or normalized.shape != reference.shape:
            continue
        distance = float(((reference - normalized) ** 2).sum())
        if distance < best:
            best, best_index, best_frame = distance, index, np.array(frame, copy=True)
    return best_index, best_frame
