"""What the Python API (animate.py) and the command line (demo.py, app.py) share, below both:
the input error and its wording, and the best-reference-frame search."""
from .best_frame import find_best_frame, load_landmark_detector, normalize_landmarks
from .errors import DemoError, one_line

__all__ = ['DemoError', 'find_best_frame', 'load_landmark_detector', 'normalize_landmarks', 'one_line']
