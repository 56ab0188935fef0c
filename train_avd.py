"""TPSMM's second stage: train the AVD network (sec. 3.5) on a trained model's keypoints.

The first-stage networks get no gradient; driving keypoints are randomly rescaled per axis and
the network learns to rebuild the original driving keypoints from the source's identity and the
rescaled pose: L = lambda_shift * |kp_D - AVD(kp_S, scale(kp_D))|_1.

As in TPSMM's `train_avd.py`, by default:
- the first-stage networks stay in train mode (the reference never calls `eval()` on them): the
  keypoint detector's BatchNorm normalises with batch statistics and its running statistics keep
  updating; they are saved with the AVD checkpoint. `train_avd_params.first_stage_mode: eval`
  (ours) freezes them instead, so the first stage is exactly the one trained;
- the learning rate follows `scheduler.step(epoch)` called after each epoch, MultiStepLR's closed
  form, so a milestone m takes effect from epoch m + 1 (`avd_lr_factor`; the scalar
  `lr/optimizer_avd` logs the rate each epoch ran with);
- `optimizer_avd` is restored from the checkpoint when it has one, and the epochs count from 0.
"""
from __future__ import annotations

import bisect
import logging

import torch
from torch.utils.data import DataLoader

from frames_dataset import DatasetRepeater
from logger import Logger
from loading.checkpoint import load_models, read_checkpoint
from modules.config import ConfigError, config_path
from modules.precision import MixedPrecision, resolve as resolve_precision, to_float
from train import adam, keep_last_of, progress, restore_optimizer

log = logging.getLogger('train_avd')
FIRST_STAGE = ('kp_detector', 'dense_motion_network', 'inpainting_network', 'bg_predictor')


def random_axis_scale(kp: torch.Tensor, scale: float) -> torch.Tensor:
    """Scale x and y of each sample's keypoints by factors drawn in [1-scale, 1+scale]: (B, N, 2)."""
    factors = torch.rand(kp.shape[0], 1, 2, device=kp.device, dtype=kp.dtype) * (2 * scale) + (1 - scale)
    return kp * factors


def avd_lr_factor(milestones, epoch: int) -> float:
    """Learning-rate factor for the epoch after `epoch`, as the reference's `scheduler.step(epoch)`
    sets it: 0.1 ** (milestones <= epoch). Milestones [3, 5] give 1, 1, 1, 1, .1, .1, .01 over
    epochs 0-6 (one epoch later than MultiStepLR's usual `step()`)."""
    return 0.1 ** bisect.bisect_right(sorted(milestones), epoch)


def preview_inputs(batch: dict, rows: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference's end-of-epoch preview: six sources, driven by their own driving frames
    (rows 0-1), by themselves (2-3) and by other videos' sources (4-5). (B, 3, H, W) each."""
    source = batch['source'][:rows]
    n = source.shape[0]
    others = [i % n for i in (2, 3, 2, 1)]
    driving = torch.cat([batch['driving'][:min(2, n)], source[others]])[:n]
    return source, driving


@torch.no_grad()
def avd_preview(models: dict, batch: dict, device) -> tuple[dict, dict]:
    """Sources animated through the AVD network, as (inp, out) for the epoch's visualisation. The
    networks run in the modes they are in (the reference's keypoint detector: train mode)."""
    source, driving = (t.to(device) for t in preview_inputs(batch))
    kp_source = models['kp_detector'](source)
    kp_avd = models['avd_network'].eval()(kp_source, models['kp_detector'](driving))
    motion = models['dense_motion_network'](source_image=source, kp_driving=kp_avd, kp_source=kp_source,
                                            bg_param=None, dropout_flag=False)
    out = models['inpainting_network'](source, motion)
    out.update(kp_source=kp_source, kp_driving=kp_avd)
    return {'source': source, 'driving': driving}, out


def first_stage_mode(params: dict) -> str:
    mode = params.get('first_stage_mode', 'train')
    if mode not in ('train', 'eval'):
        raise ConfigError(f"train_avd_params.first_stage_mode must be 'train' (the reference) or 'eval', got {mode!r}")
    return mode


def train_avd(config: dict, models: dict, dataset, log_dir: str, device, checkpoint: str,
              max_epochs: int | None = None, precision: str | None = None) -> int:
    """`precision` fp32 | bf16 | fp16 (None: train_avd_params.precision, else fp32): the keypoint
    detector and the AVD network under autocast, float32 weights (modules/precision.py)."""
    params = config['train_avd_params']
    amp = MixedPrecision(resolve_precision(precision, params, torch.device(device)), device)
    mode = first_stage_mode(params)
    keep_last = keep_last_of(config, 'train_avd_params')
    avd, kp_detector = models['avd_network'], models['kp_detector']
    ckpt = read_checkpoint(checkpoint)
    load_models(checkpoint, models, config, required=('kp_detector', 'dense_motion_network', 'inpainting_network'),
                checkpoint=ckpt)
    for key, m in models.items():
        m.to(device).train(key not in FIRST_STAGE or mode == 'train')
    optimizer = adam(avd.parameters(), params['lr'])
    if 'optimizer_avd' in ckpt:
        restore_optimizer(optimizer, ckpt['optimizer_avd'], checkpoint, 'optimizer_avd')
        log.info('%s: optimizer_avd restored', checkpoint)
    if params.get('num_repeats', 1) != 1:
        dataset = DatasetRepeater(dataset, params['num_repeats'])
    workers = params.get('dataloader_workers', 0)
    loader = DataLoader(dataset, batch_size=params['batch_size'], shuffle=True, drop_last=True,
                        num_workers=workers, pin_memory=torch.device(device).type == 'cuda',
                        persistent_workers=workers > 0)
    num_epochs = params['num_epochs'] if max_epochs is None else max_epochs
    objects = {**models, 'optimizer_avd': optimizer}
    step, epoch = 0, -1
    with Logger(log_dir, params.get('checkpoint_freq', 1), config.get('visualizer_params'),
                keep_last=keep_last) as logger:
        logger.keep_config(config_path(config))
        for epoch in range(num_epochs):
            if epoch > 0:       # epoch 0 keeps the optimizer's rate (the config's, or the restored one)
                for group in optimizer.param_groups:
                    group['lr'] = group['initial_lr'] * avd_lr_factor(params['epoch_milestones'], epoch - 1)
            avd.train()
            for batch in progress(loader, f'avd epoch {epoch + 1}/{num_epochs}'):
                with torch.no_grad(), amp.autocast():
                    kp_source = kp_detector(batch['source'].to(device, non_blocking=True))
                    kp_driving = kp_detector(batch['driving'].to(device, non_blocking=True))
                rescaled = {'fg_kp': random_axis_scale(kp_driving['fg_kp'], params['random_scale'])}
                with amp.autocast():
                    rec = avd(kp_source, rescaled)
                loss = params['lambda_shift'] * (kp_driving['fg_kp'] - rec['fg_kp']).abs().mean()   # float32
                amp.backward(loss)
                amp.step(optimizer)
                amp.update()
                optimizer.zero_grad(set_to_none=True)
                logger.log_iter({'rec_kp': loss.item()}, step)
                step += 1
            with amp.autocast():
                inp, out = avd_preview(models, batch, device)
            logger.log_epoch(epoch, objects, inp=inp, out=to_float(out),
                             extra_scalars={'lr/optimizer_avd': optimizer.param_groups[0]['lr']})
        logger.save_final(objects, epoch)
    if epoch >= 0:
        log.info('trained the AVD network for %d epochs; checkpoint: %s', epoch + 1, logger.last_checkpoint_path)
    return epoch
