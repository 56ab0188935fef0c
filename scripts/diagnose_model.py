"""Why does a trained model (not) beat copying the source? Four measurements on held-out videos.

    python scripts/diagnose_model.py --config config/synthetic/fomm-64.yaml --checkpoint log/<run>/last.pth.tar
    python scripts/diagnose_model.py --config C --checkpoint log/<run>/000000*-checkpoint.pth.tar --trials 0

Several checkpoints of one run show how much the figures swing from epoch to epoch, which one
checkpoint cannot: a FOMM run's held-out L1 can move by more than its margin over copying.

Prints, for the first --videos test videos (source = first frame, as `--mode reconstruction`):
  reconstruction   L1 of the eval-mode prediction, the copy-the-source L1, and the mean signed
                   error (a brightness bias the perceptual loss let through)
  warped source    L1 of the source warped by the model's dense motion, before the generator
                   redraws it: how well the motion alone explains the driving frame. Well below
                   copying while the prediction is not means the motion is learned and the
                   generator is what falls short
  identity         L1 when the driving frame is the source itself: the generator's floor; a
                   model cannot beat copying by more than motion minus this
  keypoints        mean spread (std over keypoints, in [-1, 1] units) of the driving keypoints:
                   near 0 means they all sit at one place and the motion is one rigid piece
  batch dependence in train mode (BatchNorm uses batch statistics, as in training), the mean
                   output brightness of one fixed identity pair placed in --trials batches of
                   other frames: its spread is how much a frame's colour depends on its batch
"""
from __future__ import annotations

import argparse
import copy
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from animate import required_networks  # noqa: E402
from frames_dataset import build_dataset  # noqa: E402
from modules import build_models  # noqa: E402
from loading import load_config  # noqa: E402
from loading.checkpoint import CheckpointError, ConfigError, load_models  # noqa: E402
from modules.model import family_of  # noqa: E402

UNUSED = ('discriminator', 'avd_network')


def load_reconstruction_models(path: str, config: dict, models: dict | None = None) -> tuple[dict, dict]:
    """The networks reconstruction uses (of `models`, default: built from `config`), loaded from
    `path`: (models, raw checkpoint). TPSMM's background predictor is kept only when the checkpoint
    has one (an exported checkpoint may not)."""
    models = {k: m for k, m in (models or build_models(config)).items() if k not in UNUSED}
    ckpt = load_models(path, models, config, required_networks(models))
    if 'bg_predictor' not in ckpt:
        models.pop('bg_predictor', None)
    return models, ckpt


def predict(models: dict, source: torch.Tensor, driving: torch.Tensor) -> tuple[dict, torch.Tensor]:
    """(B, 3, H, W) source and driving frames -> (generator output with 'prediction' and
    'deformed', driving keypoints (B, K, 2)), in whatever mode (train/eval) the networks are in."""
    kp_source, kp_driving = models['kp_detector'](source), models['kp_detector'](driving)
    if family_of(models) == 'fomm':
        return models['generator'](source, kp_source=kp_source, kp_driving=kp_driving), kp_driving['value']
    # TPSMM's background motion is part of its reconstruction, as in `--mode reconstruction`.
    bg_param = models['bg_predictor'](source, driving) if 'bg_predictor' in models else None
    motion = models['dense_motion_network'](source_image=source, kp_driving=kp_driving, kp_source=kp_source,
                                            bg_param=bg_param, dropout_flag=False)
    return models['inpainting_network'](source, motion), kp_driving['fg_kp']


def video_frames(dataset, index: int) -> torch.Tensor:
    return torch.from_numpy(np.asarray(dataset[index]['video'])).permute(1, 0, 2, 3)   # (T, 3, H, W)


@torch.no_grad()
def diagnose(models: dict, dataset, num_videos: int, trials: int, batch: int, seed: int = 0) -> dict:
    for m in models.values():
        m.eval()
    count = min(num_videos, len(dataset))
    videos = [video_frames(dataset, i) for i in range(count)]
    err, copied, warped, signed, ident, spread = [], [], [], [], [], []
    for video in videos:
        source = video[:1].expand_as(video)
        out, kp = predict(models, source, video)
        err.append((out['prediction'] - video).abs().mean().item())
        copied.append((source - video).abs().mean().item())
        warped.append((out['deformed'] - video).abs().mean().item())
        signed.append((out['prediction'] - video).mean().item())
        spread.append(kp.std(dim=1).mean().item())
        same, _ = predict(models, video[:1], video[:1])
        ident.append((same['prediction'] - video[:1]).abs().mean().item())
    r = {'videos': count, 'l1': float(np.mean(err)), 'copy_l1': float(np.mean(copied)),
         'warped_l1': float(np.mean(warped)), 'bias': float(np.mean(signed)),
         'identity_l1': float(np.mean(ident)), 'keypoint_spread': float(np.mean(spread))}
    if trials > 0:
        r.update(batch_dependence(models, videos, trials, batch, seed))
    return r


def batch_dependence(models: dict, videos: list[torch.Tensor], trials: int, batch: int, seed: int) -> dict:
    # Train-mode batch dependence: frame 0 of video 0 as an identity pair, among batch - 1 frames
    # drawn at random from all the videos. Train-mode passes update BatchNorm's running
    # statistics, so they are put back afterwards.
    saved = {k: copy.deepcopy(m.state_dict()) for k, m in models.items()}
    for m in models.values():
        m.train()
    rng = np.random.default_rng(seed)
    pool = torch.cat(videos)                        # every frame; pool[0] is frame 0 of video 0
    shifts = []
    for _ in range(trials):
        others = rng.choice(np.arange(1, len(pool)), size=min(batch - 1, len(pool) - 1), replace=False)
        frames = torch.cat([pool[:1], pool[others]])
        out, _ = predict(models, frames, frames)
        shifts.append((out['prediction'][0] - frames[0]).mean().item())
    for k, m in models.items():
        m.load_state_dict(saved[k])
        m.eval()
    return {'batch_shift_std': float(np.std(shifts)),
            'batch_shift_min': float(min(shifts)), 'batch_shift_max': float(max(shifts))}


def report(r: dict, args) -> None:
    print(f"reconstruction    L1 {r['l1']:.4f} (copy the source {r['copy_l1']:.4f}), mean signed error {r['bias']:+.4f}"
          f" over {r['videos']} videos")
    print(f"warped source     L1 {r['warped_l1']:.4f} (the source warped by the model's motion, before the generator)")
    print(f"identity          L1 {r['identity_l1']:.4f} (driving frame = source)")
    print(f"keypoints         spread {r['keypoint_spread']:.3f}")
    if 'batch_shift_std' in r:
        print(f"batch dependence  one frame's mean error: std {r['batch_shift_std']:.4f}, range "
              f"{r['batch_shift_min']:+.4f} .. {r['batch_shift_max']:+.4f} over {args.trials} train-mode batches "
              f"of {args.batch}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--config', required=True)
    p.add_argument('--checkpoint', required=True, nargs='+', help='one or more; each is measured in turn')
    p.add_argument('--videos', type=int, default=24)
    p.add_argument('--trials', type=int, default=32, help='0 skips the batch-dependence measurement')
    p.add_argument('--batch', type=int, default=8, help='batch size for the batch-dependence measurement')
    args = p.parse_args(argv)
    try:
        config = load_config(args.config)
        dataset = build_dataset(config['dataset_params'], is_train=False)
        missing = [path for path in args.checkpoint if not os.path.isfile(path)]
        if missing:     # before minutes of measuring the others
            raise CheckpointError(f'checkpoint file not found: {", ".join(missing)}')
        for path in args.checkpoint:
            models, _ = load_reconstruction_models(path, config)
            r = diagnose(models, dataset, args.videos, args.trials, args.batch)
            if len(args.checkpoint) > 1:
                print(f'== {path}')
            report(r, args)
    except (ConfigError, CheckpointError, FileNotFoundError, ValueError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
