"""Image and video input/output: every video, and every image the project reads, goes through here.

The package knows files and pixels only (no networks, no data sets). Its modules, each one job:

* :mod:`media.images`: :func:`load_image` (float32 RGB in [0, 1], optionally resized), :func:`read_image`,
  :func:`write_image`.
* :mod:`media.resize`: :func:`resize_frame` / :func:`resize_frames` equal ``skimage.transform.resize(img,
  (h, w), anti_aliasing=True)`` (the references' call) to float32 rounding, about 10x faster.
* :mod:`media.decoding`: opening a video with PyAV, its packet index, random access from keyframes.
* :mod:`media.reading`: :class:`VideoReader` streams uint8 ``(H, W, 3)`` RGB frames of a video file or
  a folder of frames; :func:`read_frames` decodes chosen frames only (random access for training).
* :mod:`media.writing`: :class:`VideoWriter` writes H.264 ``.mp4``, ``.gif`` or PNG folders,
  incrementally and atomically; :mod:`media.audio` carries another file's audio into the mp4.
* :mod:`media.files`: :func:`atomic_path` / :func:`atomic_dir`, how every writer in the project
  avoids half-written files.
* :mod:`media.errors`: :class:`MediaError` (one line naming the file and the problem) and
  :class:`MediaWarning`; :mod:`media.pixels`: dtype conversions.

Videos are decoded and encoded in-process by PyAV (FFmpeg's libraries): no ffmpeg process, no log
parsing. docs/media.md describes the behaviour (rates, counts, rotation, random access, audio).
Programming errors raise ``ValueError`` / ``TypeError``.
"""
from .errors import MediaError, MediaWarning
from .files import atomic_dir, atomic_path
from .images import IMAGE_EXTENSIONS, load_image, read_image, write_image
from .reading import DEFAULT_FOLDER_FPS, VideoReader, count_frames, damage, list_frame_files, read_frames
from .resize import resize_frame, resize_frames
from .writing import VideoWriter

__all__ = [
    'DEFAULT_FOLDER_FPS',
    'IMAGE_EXTENSIONS',
    'MediaError',
    'MediaWarning',
    'VideoReader',
    'VideoWriter',
    'atomic_dir',
    'atomic_path',
    'count_frames',
    'damage',
    'list_frame_files',
    'load_image',
    'read_frames',
    'read_image',
    'resize_frame',
    'resize_frames',
    'write_image',
]
