"""How far our colour jitter (torchvision's tensor functions on float frames) lands from the
references' path (frames rounded to 8 bits, PIL's adjust_*, back to float), per adjustment.

    python scripts/jitter_vs_pil.py [--video ../shared/samples/face-driving.mp4] [--size 128]

Prints, for brightness, contrast and saturation factors in [0.9, 1.1] and hue shifts in [-0.1, 0.1]
(the configs' jitter_param), the largest per-pixel difference in 1/255 steps over the video's
frames (every 40th) and one frame of uniform noise, and the difference at the identity factor.
README's "Where we differ" quotes it.
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import torch
import torchvision.transforms.functional as TF
from PIL import Image
from skimage.util import img_as_float, img_as_ubyte

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import media  # noqa: E402
from augmentation import ColorJitter  # noqa: E402

RANGES = {'brightness': (0.9, 1.1), 'contrast': (0.9, 1.1), 'saturation': (0.9, 1.1), 'hue': (-0.1, 0.1)}
IDENTITY = {'brightness': 1.0, 'contrast': 1.0, 'saturation': 1.0, 'hue': 0.0}


def gap(name: str, frame: np.ndarray, factor: float) -> float:
    """max |ours - reference| in 1/255 steps for one (H, W, 3) float frame."""
    ours = ColorJitter._ADJUST[name](torch.from_numpy(frame).permute(2, 0, 1)[None], factor).clamp(0, 1)
    pil = getattr(TF, 'adjust_' + name)(Image.fromarray(img_as_ubyte(frame)), factor)
    return float(np.abs(ours[0].permute(1, 2, 0).numpy() - img_as_float(np.array(pil))).max()) * 255


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--video', default='../shared/samples/face-driving.mp4')
    p.add_argument('--size', type=int, default=128)
    p.add_argument('--steps', type=int, default=11, help='factors tried per adjustment')
    args = p.parse_args(argv)
    size = (args.size, args.size)
    frames = [media.resize_frame(f, size) for i, f in enumerate(media.VideoReader(args.video)) if i % 40 == 0]
    frames.append(np.random.default_rng(0).random(size + (3,), dtype=np.float32))
    for name, (lo, hi) in RANGES.items():
        worst = max((gap(name, f, float(x)), float(x)) for x in np.linspace(lo, hi, args.steps) for f in frames)
        identity = max(gap(name, f, IDENTITY[name]) for f in frames)
        print(f'{name}: up to {worst[0]:.2f}/255 (factor {worst[1]:.3f}); {identity:.2f}/255 at the identity')
    return 0


if __name__ == '__main__':
    sys.exit(main())
