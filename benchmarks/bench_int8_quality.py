"""int8 against fp32 on held-out synthetic reconstructions (the bundled model by default).

    python benchmarks/bench_int8_quality.py [--config C --checkpoint K] [--videos 24] [--keep_fp32 NAME ...]

The held-out set is the one README's learning checks score: synthetic/data.py's test identities
(the last 12 of 300, seed 0, 2 videos each, 32 frames of 64x64), made in memory here. Each video
is reconstructed as `--mode reconstruction` and scripts/diagnose_model.py do it: the source is
its first frame, every frame is driven by itself (absolute keypoints, TPSMM's background motion
when the checkpoint has a background predictor). int8 calibrates on each video's source and
first --calibration_frames frames, as demo.py does.

Prints the held-out L1 (to the true frames) of fp32 and int8, their relative difference, and
the PSNR of the int8 output against the fp32 output over all frames (peak 1).
`--keep_fp32` names convolutions to leave in fp32 (substrings of their qualified module names
such as 'final' or 'dense_motion_network.occlusion'), to find a layer that breaks quality.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile

import numpy as np
import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

BUNDLED = ('config/synthetic/tps-64-small.yaml', 'checkpoints/synthetic-tps-64-small.pth.tar')


def heldout_videos(count: int, num_ids: int = 300, test_ids: int = 12, videos_per_id: int = 2, frames: int = 32,
                   size: int = 64, seed: int = 0) -> list[np.ndarray]:
    """The first `count` test videos of `synthetic/data.py --num_ids 300 --test_ids 12 ...`,
    float (T, H, W, 3) in [0, 1], identical to the files that command writes (before encoding)."""
    from synthetic.data import identity_rng, make_video, sample_identity, video_rng
    videos = []
    for i in range(num_ids - test_ids, num_ids):
        identity = sample_identity(identity_rng(seed, i))
        for k in range(videos_per_id):
            if len(videos) == count:
                return videos
            videos.append(make_video(video_rng(seed, i, k), identity, frames, size).astype(np.float32) / 255)
    return videos


def reconstruct(animator, video: np.ndarray, calibration_frames: int) -> np.ndarray:
    """(T, H, W, 3) reconstruction of `video` from its first frame (see the module docstring)."""
    from animate import to_tensor
    state = animator.prepare(video[0], None, 'standard', False)
    frames = to_tensor(video, animator.device)
    if animator.int8 is not None:
        animator.calibrate_state(state, frames[:calibration_frames], background=True)
    prediction = animator.animate_batch(state, frames, background=True)
    return prediction.permute(0, 2, 3, 1).clamp(0, 1).numpy()


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float('inf') if mse == 0 else 10 * np.log10(1.0 / mse)


def compare(config_path: str, checkpoint: str, videos: list[np.ndarray], calibration_frames: int = 8,
            keep_fp32: tuple[str, ...] = ()) -> dict:
    """{'l1_fp32', 'l1_int8', 'l1_change' (relative), 'psnr'} over `videos`."""
    import copy

    from animate import Animator
    from loading import load_config
    from deploy.int8 import Int8Networks
    from scripts.diagnose_model import load_reconstruction_models
    config = load_config(config_path)
    models, _ = load_reconstruction_models(checkpoint, config)
    outputs = {}
    for precision in ('fp32', 'int8'):
        animator = Animator(config, copy.deepcopy(models), precision=precision)
        if keep_fp32 and animator.int8 is not None:
            animator.int8 = Int8Networks(animator.models, animator.family, keep_fp32)
        with torch.no_grad():
            outputs[precision] = [reconstruct(animator, v, calibration_frames) for v in videos]
    l1 = {p: float(np.mean([np.abs(o - v).mean() for o, v in zip(outputs[p], videos)])) for p in outputs}
    return {'l1_fp32': l1['fp32'], 'l1_int8': l1['int8'], 'l1_change': l1['int8'] / l1['fp32'] - 1,
            'psnr': psnr(np.concatenate(outputs['int8']), np.concatenate(outputs['fp32']))}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--config', default=os.path.join(REPO, BUNDLED[0]))
    p.add_argument('--checkpoint', default=os.path.join(REPO, BUNDLED[1]))
    p.add_argument('--videos', type=int, default=24)
    p.add_argument('--calibration_frames', type=int, default=8)
    p.add_argument('--keep_fp32', nargs='*', default=[], help='substrings of convolution names kept in fp32')
    p.add_argument('--fresh_cache', action='store_true', help='calibrate in a temporary cache (time it all)')
    args = p.parse_args(argv)
    videos = heldout_videos(args.videos)
    with tempfile.TemporaryDirectory() as tmp:
        if args.fresh_cache:
            os.environ['KEYPOINT_ANIMATION_CACHE'] = tmp
        r = compare(args.config, args.checkpoint, videos, args.calibration_frames, tuple(args.keep_fp32))
    print(f'{len(videos)} held-out videos, {os.path.relpath(args.checkpoint, REPO)}, '
          f'int8 calibrated on each video\'s first {args.calibration_frames} frames'
          + (f', kept fp32: {", ".join(args.keep_fp32)}' if args.keep_fp32 else ''))
    print(f"  L1 fp32 {r['l1_fp32']:.5f}   L1 int8 {r['l1_int8']:.5f}   change {100 * r['l1_change']:+.2f}%   "
          f"PSNR int8 vs fp32 {r['psnr']:.1f} dB")
    return 0


if __name__ == '__main__':
    sys.exit(main())
