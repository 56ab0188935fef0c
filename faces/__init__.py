"""Faces: detection, 68 landmarks and identity embeddings (face-alignment or dlib), shot/tube
linking for the crop tool, crop and paste-back for the demo, and the papers' face metrics.
See docs/faces.md."""
from .backend import (BACKEND_CHOICES, IBUG_LICENCE, Face, FaceBackend, FaceModelError, NoFaceError,  # noqa: F401
                      as_uint8, landmark_function, load_backend, torch_hub_checkpoints)
