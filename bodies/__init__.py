"""Bodies: person detection and the 18 OpenPose keypoints from MediaPipe's BlazePose (offline),
person tubes for the crop tool, crop and paste-back for the demo, and the papers' body metrics
(AKD, MKR, and AED given a re-identification model). See docs/bodies.md."""
from .backend import (BACKEND_CHOICES, MODEL_LICENCE, VISIBILITY_THRESHOLD, Body, BodyBackend,  # noqa: F401
                      BodyModelError, NoBodyError, load_backend, to_openpose)
