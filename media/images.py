"""Images: decode, encode and convert image files (Pillow)."""
from __future__ import annotations

import os
import warnings

import numpy as np

from .errors import MediaError, PathLike, _check_input_file, _error, _note_resize
from .pixels import _to_float01, _to_uint8
from .resize import _check_size, resize_frame

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp')

# ----------------------------------------------------------------------------------------------
# Images
# ----------------------------------------------------------------------------------------------

def read_image(path: PathLike) -> np.ndarray:
    """Decode an image file to an ``(H, W, 3)`` array: uint8, uint16 (16-bit sources) or float32.

    See :func:`load_image` for the conversion rules (grayscale to RGB, alpha dropped, EXIF applied).
    """
    from PIL import Image, ImageOps

    p = _check_input_file(path, 'image')
    try:
        with Image.open(p) as im:
            im.seek(0)  # multi-frame files (animated GIF/TIFF/WebP): the first frame
            im.load()
            with warnings.catch_warnings():
                warnings.simplefilter('ignore')  # EXIF parsing chatter on odd files
                im = ImageOps.exif_transpose(im)
            mode = im.mode
            if mode in ('I;16', 'I;16L', 'I;16B', 'I;16N', 'I'):
                # 16-bit grayscale ('I' is how some Pillow versions/format plugins deliver it).
                arr = np.clip(np.asarray(im).astype(np.int64), 0, 65535).astype(np.uint16)
            elif mode == 'F':
                arr = np.clip(np.asarray(im, dtype=np.float32), 0.0, 1.0)
            elif mode in ('1', 'L'):
                arr = np.asarray(im.convert('L'))
            elif mode == 'RGB':
                arr = np.asarray(im)
            elif mode in ('P', 'PA', 'LA', 'La', 'RGBA', 'RGBa'):
                # Palette images may carry transparency: expand to RGBA, then drop alpha.
                arr = np.asarray(im.convert('RGBA'))[..., :3]
            else:  # CMYK, YCbCr, LAB, HSV, RGBX, ...
                arr = np.asarray(im.convert('RGB'))
    except MediaError:
        raise
    except Image.UnidentifiedImageError:
        raise _error('image', p, 'not an image file (format not recognised)') from None
    except Image.DecompressionBombError as err:
        raise _error('image', p, str(err)) from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError) as err:
        raise _error('image', p, f'damaged or truncated image ({str(err) or type(err).__name__})') from None
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise _error('image', p, 'the image has zero size')
    return np.ascontiguousarray(arr)


def write_image(path: PathLike, image: np.ndarray, **options) -> None:
    """Write an ``(H, W[, 3])`` image, uint8 or float in [0, 1]; the format follows the extension.

    ``options`` go to Pillow (e.g. ``compress_level=3`` for faster, slightly larger PNGs). Not atomic
    by itself: write into ``media.files.atomic_path`` / ``atomic_dir``.
    """
    from PIL import Image

    try:
        Image.fromarray(_to_uint8(np.asarray(image))).save(os.fspath(path), **options)
    except OSError as err:
        raise _error('image', path, err.strerror or str(err), verb='write') from None


def load_image(path: PathLike, size: tuple[int, int] | None = None) -> np.ndarray:
    """Read an image file as float32 RGB ``(H, W, 3)`` in ``[0, 1]``.

    * 8-bit images are divided by 255, 16-bit grayscale PNG/TIFF (Pillow modes ``I;16``/``I``) by
      65535. 16-bit *RGB* PNGs are delivered by Pillow as 8-bit, so they keep only 8 bits of
      precision (still correctly scaled).
    * Grayscale and 1-bit images are replicated to 3 channels (the reference code's
      ``resize(img)[..., :3]`` would mis-handle them).
    * Alpha (RGBA, LA, palette with transparency) is **dropped**, not composited, exactly like the
      references' ``[..., :3]``: fully transparent pixels show whatever colour they store.
    * Palette, CMYK, YCbCr, ... are converted to RGB; for multi-frame files the first frame is used.
    * The EXIF orientation tag is applied, so phone photos come out upright (the references'
      ``imageio.imread`` ignores it).

    ``size=(h, w)``, if given, resizes with :func:`resize_frame` (skimage-equivalent anti-aliasing);
    a :class:`MediaWarning` says so when that changes the aspect ratio (a stretched face animates
    worse). Raises :class:`MediaError` for a missing, empty, unreadable, non-image or damaged file.
    """
    img = _to_float01(read_image(path))
    if size is not None:
        _note_resize(path, 'image', img.shape[:2], _check_size(size))
        img = resize_frame(img, size)
    return img

