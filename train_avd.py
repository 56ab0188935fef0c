"""TPSMM's second stage: train the AVD network (sec. 3.5) on a trained model's keypoints.

The keypoint detector is frozen (eval mode, no grad); driving keypoints are randomly rescaled
per axis and the network learns to rebuild the original driving keypoints from the source's
identity and the rescaled pose: L = lambda_shift * |kp_D - AVD(kp_S, scale(kp_D))|_1.
"""
from __future__ import annotations

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from frames_dataset import DatasetRepeater
from logger import Logger
from modules.checkpoint import load_models
from modules.config import config_path


def random_axis_scale(kp: torch.Tensor, scale: float) -> torch.Tensor:
    """Scale x and y of each sample's keypoints by factors drawn in [1-scale, 1+scale]: (B, N, 2)."""
    factors = torch.rand(kp.shape[0], 1, 2, device=kp.device, dtype=kp.dtype) * (2 * scale) + (1 - scale)
    return kp * factors


@torch.no_grad()
def avd_preview(models: dict, batch: dict, device, rows: int = 6) -> tuple[dict, dict]:
    """Each source animated with another video's driving frame through the AVD network (what it is
    for: the pose of one identity on another), as (inp, out) for the epoch's visualisation."""
    source = batch['source'][:rows].to(device)
    driving = batch['driving'][:rows].roll(1, dims=0).to(device)
    kp_source = models['kp_detector'](source)
    kp_avd = models['avd_network'].eval()(kp_source, models['kp_detector'](driving))
    motion = models['dense_motion_network'](source_image=source, kp_driving=kp_avd, kp_source=kp_source,
                                            bg_param=None, dropout_flag=False)
    out = models['inpainting_network'](source, motion)
    out.update(kp_source=kp_source, kp_driving=kp_avd)
    models['avd_network'].train()
    return {'source': source, 'driving': driving}, out


def train_avd(config: dict, models: dict, dataset, log_dir: str, device, checkpoint: str,
              max_epochs: int | None = None) -> int:
    params = config['train_avd_params']
    avd, kp_detector = models['avd_network'], models['kp_detector']
    load_models(checkpoint, models, config, required=('kp_detector', 'dense_motion_network', 'inpainting_network'))
    for m in models.values():
        m.to(device).eval()
    avd.train()
    optimizer = torch.optim.Adam(avd.parameters(), lr=params['lr'], betas=(0.5, 0.999))
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, params['epoch_milestones'], gamma=0.1)
    if params.get('num_repeats', 1) != 1:
        dataset = DatasetRepeater(dataset, params['num_repeats'])
    loader = DataLoader(dataset, batch_size=params['batch_size'], shuffle=True, drop_last=True,
                        num_workers=params.get('dataloader_workers', 0))
    num_epochs = params['num_epochs'] if max_epochs is None else max_epochs
    objects = {**models, 'optimizer_avd': optimizer}
    step, epoch = 0, -1
    with Logger(log_dir, params.get('checkpoint_freq', 1), config.get('visualizer_params')) as logger:
        logger.keep_config(config_path(config))
        for epoch in range(num_epochs):
            for batch in tqdm(loader, desc=f'avd epoch {epoch}'):
                with torch.no_grad():
                    kp_source = kp_detector(batch['source'].to(device))
                    kp_driving = kp_detector(batch['driving'].to(device))
                rescaled = {'fg_kp': random_axis_scale(kp_driving['fg_kp'], params['random_scale'])}
                rec = avd(kp_source, rescaled)
                loss = params['lambda_shift'] * (kp_driving['fg_kp'] - rec['fg_kp']).abs().mean()
                loss.backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                logger.log_iter({'rec_kp': loss.item()}, step)
                step += 1
            scheduler.step()
            inp, out = avd_preview(models, batch, device)
            logger.log_epoch(epoch, objects, inp=inp, out=out)
        logger.save_final(objects, epoch)
    return epoch
