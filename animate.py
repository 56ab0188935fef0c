"""Animation: drive a source image with a video's motion.

`normalize_kp` (relative motion with adaptive scale) serves both families and lives in
motion_transfer.py; it is re-exported here, where the references kept it.
"""
from motion_transfer import normalize_kp  # noqa: F401
