"""Training, as both papers do it, on one process (CPU or one GPU) or many (torchrun, or run.py
--device_ids over several GPUs: DistributedDataParallel + SyncBatchNorm, rank 0 logs and checkpoints).

Reads top to bottom: phases are built once (`build_phases`), then `train` loops over epochs
and batches, summing each phase's dict of named losses.
FOMM: Adam (betas 0.5, 0.999) for generator, keypoint detector and discriminator, each with
MultiStepLR; the discriminator step follows the generator step when GAN losses are on.
TPSMM: one Adam (weight decay 1e-4) over keypoint detector, dense motion and inpainting
networks with inf-norm gradient clipping at 10, and one for the background predictor (from
`bg_start`); TPS dropout schedule inside the full model.
"""
from __future__ import annotations

import bisect
import logging
import math
import os
import re
import sys
import time
import warnings
from collections import Counter, OrderedDict
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from logger import Logger
from loading.checkpoint import CheckpointError, _strip_prefix, load_models, read_checkpoint, state_dict_mismatch
from modules.config import ConfigError, config_path
from modules.model import DiscriminatorFullModel, GeneratorFullModel, family_of
from modules.precision import MixedPrecision, resolve as resolve_precision, to_float
from sync_batchnorm import convert_model

log = logging.getLogger('train')

ADAM_BETAS = (0.5, 0.999)
TPS_WEIGHT_DECAY = 1e-4
TPS_CLIP_NORM = 10


@dataclass
class Dist:
    """Process-group facts; the defaults describe a single process."""
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device_index: int = 0      # this rank's CUDA device (torchrun: local_rank; run.py --device_ids: its entry)

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


@dataclass
class Phase:
    """One optimisation phase: a full model producing named losses and the optimizers it steps."""
    name: str
    model: nn.Module
    optimizers: dict[str, torch.optim.Optimizer]
    schedulers: dict[str, torch.optim.lr_scheduler.LRScheduler]
    clip: list[nn.Module] = field(default_factory=list)   # modules whose grads are inf-norm clipped


def adam(params, lr: float, weight_decay: float = 0) -> torch.optim.Adam:
    params = [p for p in params if p.requires_grad]
    return torch.optim.Adam([{'params': params, 'initial_lr': lr}], lr=lr, betas=ADAM_BETAS,
                            weight_decay=weight_decay)


def multistep(optimizer, milestones, start_epoch: int = 0, state: dict | None = None,
              restored: bool = False) -> torch.optim.lr_scheduler.MultiStepLR:
    """MultiStepLR (x0.1 at each milestone) standing where a run from epoch 0 stands when epoch
    `start_epoch` begins, so that a resumed run has the learning rates of an uninterrupted one.

    torch's scheduler is chained (since 1.4): each step multiplies the optimizer's current rate, so
    rebuilding it with `last_epoch=start_epoch - 1` (the references) cuts a restored, already cut,
    rate once more when `start_epoch` is a milestone. Instead the scheduler is built fresh and then
    put at `start_epoch`: from its saved `state` (our checkpoints' `scheduler_*`; the config's
    milestones still rule), else at `start_epoch` itself. The rate is the restored optimizer's
    (`restored`), or for an optimizer starting fresh the closed form initial_lr * 0.1 ** (milestones
    passed by start_epoch), the rate an uninterrupted run has then."""
    if start_epoch <= 0 and state is None:
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones, gamma=0.1)
    groups = optimizer.param_groups
    rates = [group['lr'] for group in groups]
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones, gamma=0.1)
    if not restored:
        cut = 0.1 ** bisect.bisect_right(sorted(milestones), start_epoch)
        rates = [group['initial_lr'] * cut for group in groups]
    for group, rate in zip(groups, rates):
        group['lr'] = rate          # undo the constructor's own step (a milestone at epoch 0 cuts)
    if state is not None:
        scheduler.load_state_dict(state)
        scheduler.milestones, scheduler.gamma = Counter(milestones), 0.1
    else:
        scheduler.last_epoch = start_epoch
    scheduler._last_lr = list(rates)
    return scheduler


def build_optimizers(models: dict, train_params: dict) -> dict[str, torch.optim.Optimizer]:
    """Optimizers under their official checkpoint keys."""
    if family_of(models) == 'fomm':
        opts = {'optimizer_generator': adam(models['generator'].parameters(), train_params['lr_generator']),
                'optimizer_kp_detector': adam(models['kp_detector'].parameters(), train_params['lr_kp_detector'])}
        if 'discriminator' in models:
            opts['optimizer_discriminator'] = adam(models['discriminator'].parameters(),
                                                   train_params['lr_discriminator'])
        return opts
    main = [p for k in ('inpainting_network', 'dense_motion_network', 'kp_detector') for p in models[k].parameters()]
    opts = {'optimizer': adam(main, train_params['lr_generator'], TPS_WEIGHT_DECAY)}
    if 'bg_predictor' in models:
        opts['optimizer_bg_predictor'] = adam(models['bg_predictor'].parameters(), train_params['lr_generator'],
                                              TPS_WEIGHT_DECAY)
    return opts


def wrap(model: nn.Module, device: torch.device, dist: Dist) -> nn.Module:
    """DistributedDataParallel in a process group, else the model as is."""
    if dist.enabled:
        ids = [device.index] if device.type == 'cuda' else None
        # Networks unused in some epochs (TPSMM's bg_predictor before bg_start) need the unused scan.
        return nn.parallel.DistributedDataParallel(model, device_ids=ids, find_unused_parameters=True)
    return model


def make_loader(dataset, train_params: dict, dist: Dist, seed: int = 0) -> DataLoader:
    batch_size = train_params['batch_size'] // max(dist.world_size, 1) or 1
    if batch_size * dist.world_size != train_params['batch_size'] and dist.is_main:
        # nn.DataParallel (the references) split an uneven batch unevenly; DDP ranks take equal shares.
        log.warning('batch_size %d does not split evenly over %d processes: each takes %d, a global batch of %d',
                    train_params['batch_size'], dist.world_size, batch_size, batch_size * dist.world_size)
    sampler = DistributedSampler(dataset, dist.world_size, dist.rank, shuffle=True, seed=seed, drop_last=True) \
        if dist.enabled else None
    workers = train_params.get('dataloader_workers', min(6, os.cpu_count() or 1))
    return DataLoader(dataset, batch_size=batch_size, shuffle=sampler is None, sampler=sampler,
                      num_workers=workers, drop_last=True, pin_memory=torch.cuda.is_available(),
                      persistent_workers=workers > 0)


def restore_optimizer(opt: torch.optim.Optimizer, state: dict, path: str, key: str) -> None:
    """Load a saved optimizer state. The schedulers need each group's `initial_lr`; an optimizer
    saved without one (never attached to a scheduler) gets the config's learning rate."""
    configured = [group['initial_lr'] for group in opt.param_groups]
    try:
        opt.load_state_dict(state)
    except (ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f'{path}: {key} does not fit this config\'s networks ({e})') from None
    for group, initial in zip(opt.param_groups, configured):
        group.setdefault('initial_lr', initial)


def discriminator_to_refit(path: str, ckpt: dict, models: dict) -> bool:
    """True when the checkpoint's discriminator does not fit this config's, as when an `-adv`
    config (taichi-adv-256, `use_kp: true`: keypoint heatmaps as extra input channels) fine-tunes a
    base checkpoint. Every other network that does not fit stays an error."""
    if 'discriminator' not in models or 'discriminator' not in ckpt:
        return False
    problems = state_dict_mismatch(models['discriminator'], _strip_prefix(ckpt['discriminator']))
    if problems:
        log.warning('%s: its discriminator does not fit this config (%s); as in the reference, the tensors that '
                    'fit are loaded, the others start from their initialisation, and optimizer_discriminator (its '
                    'learning rate included) is restored (an -adv config with use_kp fine-tuning a base checkpoint '
                    'does this)', path, '; '.join(problems))
    return bool(problems)


def load_fitting(model: nn.Module, state: dict) -> list[str]:
    """Load the tensors of `state` whose name and shape fit `model`; return the names of the others,
    which keep their initialisation. FOMM's reference loads a discriminator that does not fit with a
    strict `load_state_dict` inside try/except: torch copies every fitting tensor before it raises
    on the rest, so that is what the reference's "randomly initialized" discriminator holds."""
    own = model.state_dict()
    fitting = OrderedDict((k, v) for k, v in state.items() if k in own and tuple(v.shape) == tuple(own[k].shape))
    if getattr(state, '_metadata', None) is not None:
        fitting._metadata = state._metadata      # per-module versions (spectral norm reads its own)
    model.load_state_dict(fitting, strict=False)
    return [k for k in own if k not in fitting]


def drop_unfitting_moments(opt: torch.optim.Optimizer) -> int:
    """Forget the restored optimizer state of parameters whose shape changed (a refitted
    discriminator's first layer); returns how many. The reference keeps them, and Adam's first
    step then fails on the shapes; a base run with its GAN off (taichi-256) saved none."""
    dropped = 0
    for group in opt.param_groups:
        for p in group['params']:
            state = opt.state.get(p, {})
            if any(torch.is_tensor(v) and v.dim() and v.shape != p.shape for v in state.values()):
                del opt.state[p]
                dropped += 1
    return dropped


@dataclass
class Resume:
    """What a checkpoint gives the training loop besides the networks' weights."""
    start_epoch: int
    restored: set[str] = field(default_factory=set)       # optimizers whose saved state was loaded
    schedulers: dict = field(default_factory=dict)        # saved scheduler states, by scheduler key


def restore_optimizers(path: str, ckpt: dict, optimizers: dict, refit: bool) -> set[str]:
    """Load each optimizer's saved state where the checkpoint has one; returns their keys."""
    restored = set()
    for key, opt in optimizers.items():
        if all(group['lr'] == 0 for group in opt.param_groups):
            # A learning rate of 0 in the config freezes that network (FOMM's taichi-adv-256 sets
            # lr_kp_detector: 0 to fine-tune from a taichi-256 checkpoint). Loading the saved
            # optimizer would bring back its old learning rate, so, as the reference, it is not loaded.
            log.info('%s: learning rate 0 in the config; %s not restored, its network stays frozen', path, key)
        elif key not in ckpt:
            log.warning('%s has no %s; that optimizer starts fresh', path, key)
        elif refit and key == 'optimizer_discriminator':
            try:
                restore_optimizer(opt, ckpt[key], path, key)
            except CheckpointError as e:     # the reference fails here; a fresh optimizer can still train
                log.warning('%s; it starts fresh', e)
                continue
            dropped = drop_unfitting_moments(opt)
            if dropped:
                log.warning('%s: Adam moments of %d discriminator parameter(s) whose shape changed start at zero',
                            path, dropped)
            restored.add(key)
        else:
            restore_optimizer(opt, ckpt[key], path, key)
            restored.add(key)
    return restored


def load_training_state(path: str, models: dict, optimizers: dict, config: dict) -> Resume:
    """Resume: networks (strict, with diagnostics), optimizers, schedulers' saved states; the
    returned `start_epoch` is the next epoch to run."""
    ckpt = read_checkpoint(path)
    refit = discriminator_to_refit(path, ckpt, models)
    ckpt = load_models(path, {k: m for k, m in models.items() if not (refit and k == 'discriminator')}, config,
                       checkpoint=ckpt)     # networks in OPTIONAL_NETWORKS start from their initialisation
    if refit:
        left = load_fitting(models['discriminator'], _strip_prefix(ckpt['discriminator']))
        log.info('%s: discriminator tensors left at their initialisation: %s', path, ', '.join(left))
    for key in models:
        if key not in ckpt and key != 'avd_network':
            # TPSMM's AVD network is a later stage (--mode train_avd): training neither saves nor needs it.
            log.info('%s has no %s; it starts from its initialisation', path, key)
    restored = restore_optimizers(path, ckpt, optimizers, refit)
    schedulers = {k: v for k, v in ckpt.items() if k.startswith('scheduler') and isinstance(v, dict)}
    return Resume(int(ckpt.get('epoch', -1)) + 1, restored, schedulers)


def checkpoint_objects(models: dict, optimizers: dict, phases: list, train_params: dict, epoch: int) -> dict:
    """What a checkpoint of `epoch` holds: what the references save, under their keys, plus our
    schedulers. TPSMM's trainer saves no AVD network (its own stage comes later), and its
    background predictor with its optimizer only from `bg_start` on: untrained, they would triple
    a small model's checkpoint."""
    objects = {**models, **optimizers, **{k: v for p in phases for k, v in p.schedulers.items()}}
    if family_of(models) == 'tps':
        objects.pop('avd_network', None)
        if epoch < train_params.get('bg_start', 0):
            for key in ('bg_predictor', 'optimizer_bg_predictor', 'scheduler_bg_predictor'):
                objects.pop(key, None)
    return objects


def build_schedulers(optimizers: dict, milestones, resume: Resume | None) -> dict:
    """One MultiStepLR per optimizer, under the checkpoint key `scheduler_*`, where `resume` puts it."""
    schedulers = {}
    for key, opt in optimizers.items():
        name = key.replace('optimizer', 'scheduler')
        if resume is None:
            schedulers[name] = multistep(opt, milestones)
        else:
            schedulers[name] = multistep(opt, milestones, resume.start_epoch, resume.schedulers.get(name),
                                         restored=key in resume.restored)
    return schedulers


def build_phases(models: dict, train_params: dict, optimizers: dict, start_epoch: int, device, dist,
                 resume: Resume | None = None):
    """The optimisation phases; their schedulers start where `resume` (a checkpoint) left them."""
    if resume is None and start_epoch:
        resume = Resume(start_epoch)
    schedulers = build_schedulers(optimizers, train_params['epoch_milestones'], resume)
    generator_full = GeneratorFullModel(models, train_params).to(device)
    if family_of(models) == 'fomm':
        gen_keys = ['optimizer_generator', 'optimizer_kp_detector']
        phases = [Phase('generator', wrap(generator_full, device, dist),
                        {k: optimizers[k] for k in gen_keys},
                        {k.replace('optimizer', 'scheduler'): schedulers[k.replace('optimizer', 'scheduler')]
                         for k in gen_keys})]
        if train_params['loss_weights'].get('generator_gan', 0) != 0:
            disc_full = DiscriminatorFullModel(models, train_params).to(device)
            phases.append(Phase('discriminator', wrap(disc_full, device, dist),
                                {'optimizer_discriminator': optimizers['optimizer_discriminator']},
                                {'scheduler_discriminator': schedulers['scheduler_discriminator']}))
        elif 'scheduler_discriminator' in schedulers:
            phases[0].schedulers['scheduler_discriminator'] = schedulers['scheduler_discriminator']
        return phases
    phase = Phase('generator', wrap(generator_full, device, dist), dict(optimizers), schedulers,
                  clip=[models['kp_detector'], models['dense_motion_network']])
    return [phase]


def step_phase(phase: Phase, batch: dict, epoch: int, models: dict, train_params: dict, generated=None,
               amp: MixedPrecision = MixedPrecision()):
    """Forward and losses under `amp`'s autocast, their float32 sum, backward (scaled for fp16),
    clip, step. Returns (loss values, generated)."""
    # The generator phase also back-propagates into the discriminator (GAN and feature-matching
    # losses); those gradients must not reach the discriminator's own step (the references zero
    # them first), so every phase starts from clean gradients of the networks it steps.
    for opt in phase.optimizers.values():
        opt.zero_grad(set_to_none=True)
    with amp.autocast():
        if phase.name == 'discriminator':
            losses = phase.model(batch, generated)
        else:
            losses, generated = phase.model(batch, epoch)
    total = sum(v.float().mean() for v in losses.values())
    amp.backward(total)
    bg_active = 'bg_predictor' in models and epoch >= train_params.get('bg_start', 0)
    if phase.clip:
        amp.unscale(phase.optimizers.values())
    for module in phase.clip + ([models['bg_predictor']] if bg_active and phase.clip else []):
        torch.nn.utils.clip_grad_norm_(module.parameters(), max_norm=TPS_CLIP_NORM, norm_type=math.inf)
    for key, opt in phase.optimizers.items():
        if key == 'optimizer_bg_predictor' and not bg_active:
            opt.zero_grad(set_to_none=True)
            continue
        amp.step(opt)
        opt.zero_grad(set_to_none=True)
    return {k: float(v.mean().detach()) for k, v in losses.items()}, generated


def average_buffers(models: dict, dist: Dist) -> None:
    """Average BatchNorm running statistics over ranks. SyncBatchNorm (CUDA) keeps them equal;
    plain BatchNorm (CPU/gloo) updates them from each rank's local batch, and checkpoints and
    evaluation must not depend on which rank wrote them."""
    if not dist.enabled:
        return
    for m in models.values():
        for name, buf in m.named_buffers():
            if buf.is_floating_point():
                torch.distributed.all_reduce(buf.data)
                buf.data /= dist.world_size
            elif name.endswith('num_batches_tracked'):
                torch.distributed.broadcast(buf.data, src=0)


def channels_last_default(device: torch.device, precision: str, dist: Dist) -> bool:
    """Channels-last unless asked otherwise: on a single-process CPU run, and on a single GPU in
    bf16/fp16 (tensor-core convolutions take NHWC; cuDNN transposes NCHW around each call).
    Not with torchrun: gloo's broadcast and DDP's gradient buckets expect the default layout."""
    if dist.enabled:
        return False
    return device.type == 'cpu' or (device.type == 'cuda' and precision != 'fp32')


def use_channels_last(models: dict, phases: list, device: torch.device, dist: Dist, wanted: bool | None = None,
                      precision: str = 'fp32') -> bool:
    """Move every network (VGG-19 and the pyramid's kernels included) to channels-last and return
    True when `wanted` (None: `channels_last_default`): batches must then follow
    (`to_device(..., True)`).

    oneDNN's CPU convolutions work on channels-last data; given NCHW, every call reorders its
    input and output. Measured on a 2-core AVX-512 Xeon: see benchmarks/README.md. Parameters
    keep their identity (optimizers need not be rebuilt); checkpoints load either way.
    """
    if not (channels_last_default(device, precision, dist) if wanted is None else wanted):
        return False
    for module in list(models.values()) + [phase.model for phase in phases]:
        module.to(memory_format=torch.channels_last)
    return True


def compile_networks(models: dict, phases: list) -> None:
    """torch.compile, in place, each network's forward and the perceptual loss's VGG-19 (opt-in:
    the first steps pay the compilation, minutes on a 2-core CPU). Per network rather than the
    whole training step: the equivariance jacobian's autograd.grad cannot be traced, and
    state-dict keys stay the same. The discriminator's spectral norm runs its power iteration
    outside the graph (modules/discriminator.py: compiled, torch's own hook gave wrong gradients
    and failed in backward). On the CPU a compiled epoch of each tiny config follows eager's
    losses (tests/test_precision.py, KPANIM_COMPILE_TEST=1); on a GPU it has not run yet."""
    for m in models.values():
        m.compile()
    for phase in phases:
        vgg = getattr(getattr(phase.model, 'module', phase.model), 'vgg', None)
        if vgg is not None:
            vgg.compile()


def to_device(batch: dict, device, channels_last: bool = False) -> dict:
    def move(v):
        if not torch.is_tensor(v):
            return v
        fmt = torch.channels_last if channels_last and v.dim() == 4 else torch.preserve_format
        return v.to(device, non_blocking=True, memory_format=fmt)
    return {k: move(v) for k, v in batch.items()}


PROGRESS_SECONDS = 60.0      # a progress line this often when stderr is not a terminal


class TimedProgress:
    """Progress for a log that is not a terminal (a job scheduler, nohup): a line on stderr every
    `interval` seconds and one when the loop ends, where tqdm's bar, redrawn with carriage
    returns, shows as nothing or as one endless line. Iterates `iterable` like tqdm, with
    `set_postfix` for the latest losses."""

    def __init__(self, iterable, desc: str, interval: float = PROGRESS_SECONDS, stream=None, clock=time.monotonic):
        self.iterable, self.desc, self.interval, self.clock = iterable, desc, interval, clock
        self.total = len(iterable) if hasattr(iterable, '__len__') else None
        self.stream = stream
        self.postfix: dict = {}

    def set_postfix(self, values: dict, refresh: bool = False) -> None:
        self.postfix = dict(values)

    def _line(self, done: int, elapsed: float, end: bool) -> None:
        count = f'{done}/{self.total}' if self.total is not None else str(done)
        text = f'{time.strftime("%H:%M:%S")} {self.desc}: {count} iterations'
        if end:
            text += f' in {elapsed / 60:.1f} min'
        elif done:
            text += f', {elapsed / done:.2f} s each'
            if self.total:
                text += f', about {(self.total - done) * elapsed / done / 60:.1f} min left in this epoch'
        if self.postfix:
            text += '; ' + ', '.join(f'{k} {v}' for k, v in self.postfix.items())
        print(text, file=self.stream or sys.stderr, flush=True)

    def __iter__(self):
        start = last = self.clock()
        done = 0
        for item in self.iterable:
            yield item
            done += 1
            now = self.clock()
            if now - last >= self.interval and done != self.total:
                self._line(done, now - start, end=False)
                last = now
        self._line(done, self.clock() - start, end=True)


def progress(iterable, desc: str, enabled: bool = True):
    """tqdm's bar on a terminal, `TimedProgress` lines otherwise, nothing when not `enabled`
    (non-zero ranks)."""
    if enabled and not sys.stderr.isatty():
        return TimedProgress(iterable, desc)
    return tqdm(iterable, desc=desc, disable=not enabled, dynamic_ncols=True)


def keep_last_of(config: dict, section: str = 'train_params') -> int | None:
    """`<section>.keep_last`: how many numbered checkpoints to keep (None: all, as the references)."""
    value = config[section].get('keep_last')
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise ConfigError(f'{config_path(config)}: {section}.keep_last must be a whole number >= 0 (how many of the '
                          f'newest numbered checkpoints to keep; 0: only last.pth.tar) or absent (keep them all), '
                          f'got {value!r}')
    return value


def check_loss_weights(config: dict) -> None:
    """Refuse, before any work, a loss the networks cannot compute (the references fail on it with a
    KeyError in the middle of the first iteration)."""
    common = config['model_params']['common_params']
    weights = config['train_params'].get('loss_weights', {})
    if 'num_kp' in common and not common.get('estimate_jacobian', False) and weights.get('equivariance_jacobian', 0):
        raise ConfigError(f"{config_path(config)}: train_params.loss_weights.equivariance_jacobian is "
                          f"{weights['equivariance_jacobian']} but model_params.common_params.estimate_jacobian "
                          "is false, so there are no jacobians to compare; set the weight to 0 (as the official "
                          "zero-order configs do) or estimate jacobians")


def train(config: dict, models: dict, dataset, log_dir: str, device: torch.device, checkpoint: str | None = None,
          dist: Dist = Dist(), last_checkpoint_minutes: float = 15.0,
          max_epochs: int | None = None, max_minutes: float | None = None, precision: str | None = None,
          compile: bool = False, channels_last: bool | None = None) -> int:
    """Train from `config` on `dataset` (items {'source', 'driving'}). Returns the last epoch run.

    `max_minutes` ends training after the first epoch that finishes past that budget (a fixed
    compute budget for comparisons; the last epoch is checkpointed as usual).
    `precision` fp32 | bf16 | fp16 (None: train_params.precision, else fp32): mixed precision with
    float32 weights (modules/precision.py). `compile`: torch.compile each network's forward.
    `channels_last`: None picks per device (`channels_last_default`)."""
    started = time.monotonic()
    check_loss_weights(config)
    keep_last = keep_last_of(config)
    train_params = config['train_params']
    amp = MixedPrecision(resolve_precision(precision, train_params, device), device)
    num_epochs = train_params['num_epochs'] if max_epochs is None else max_epochs
    for m in models.values():
        m.to(device).train()
    if device.type == 'cuda':
        # Every batch has the same shapes (drop_last), so cuDNN's per-shape algorithm search is
        # paid once (PyTorch's performance guide; the references leave it off).
        torch.backends.cudnn.benchmark = True
    optimizers = build_optimizers(models, train_params)
    resume = load_training_state(checkpoint, models, optimizers, config) if checkpoint else None
    start_epoch = resume.start_epoch if resume else 0
    if start_epoch >= num_epochs:
        if dist.is_main:
            log.warning('nothing to train: %s ends epoch %d and the run has %d epochs (train_params.num_epochs or '
                        '--epochs); raise it to train further', checkpoint, start_epoch - 1, num_epochs)
        return start_epoch - 1
    if dist.enabled:
        # Identical start on every rank (fresh runs draw different inits per process).
        for m in models.values():
            for t in list(m.parameters()) + list(m.buffers()):
                torch.distributed.broadcast(t.data, src=0)
        if device.type == 'cuda':
            for k in models:
                models[k] = convert_model(models[k])
    phases = build_phases(models, train_params, optimizers, start_epoch, device, dist, resume)
    channels_last = use_channels_last(models, phases, device, dist, channels_last, amp.precision)
    if compile:
        compile_networks(models, phases)
    loader = make_loader(dataset, train_params, dist)
    if len(loader) == 0:
        raise ValueError(f'{config.get("dataset_params", {}).get("root_dir")}: {len(dataset)} training items, fewer '
                         f'than one batch of {train_params["batch_size"]}; lower batch_size or add videos')
    logger = Logger(log_dir, checkpoint_freq=train_params.get('checkpoint_freq', 1),
                    visualizer_params=config.get('visualizer_params'), enabled=dist.is_main,
                    keep_last=keep_last)
    logger.keep_config(config_path(config))
    if dist.is_main:
        log.info('training %s epochs %d..%d, %d iterations per epoch, %d process%s, %s%s%s', family_of(models),
                 start_epoch, num_epochs - 1, len(loader), dist.world_size, 'es' if dist.enabled else '', amp.precision,
                 ', channels-last' if channels_last else '', ', compiled' if compile else '')
    step = start_epoch * len(loader)
    last_save = time.monotonic()
    epoch = start_epoch - 1
    with logger:
        for epoch in range(start_epoch, num_epochs):
            if isinstance(loader.sampler, DistributedSampler):
                loader.sampler.set_epoch(epoch)
            bar = progress(loader, f'epoch {epoch + 1}/{num_epochs}', enabled=dist.is_main)
            for batch in bar:
                batch = to_device(batch, device, channels_last)
                values, generated = {}, None
                for phase in phases:
                    phase_values, generated = step_phase(phase, batch, epoch, models, train_params, generated, amp)
                    values.update(phase_values)
                amp.update()
                logger.log_iter(values, step)
                bar.set_postfix({k: f'{v:.3f}' for k, v in values.items()}, refresh=False)
                step += 1
                if dist.is_main and time.monotonic() - last_save > last_checkpoint_minutes * 60:
                    # Rolling mid-epoch checkpoint marked as the previous epoch: a resume redoes
                    # this epoch with the newer weights instead of losing hours of iterations.
                    logger.save_checkpoint(checkpoint_objects(models, optimizers, phases, train_params, epoch),
                                           epoch - 1, path=logger.last_checkpoint_path)
                    last_save = time.monotonic()
            with warnings.catch_warnings():
                # A scheduler whose optimizer never stepped (FOMM discriminator with GAN off)
                # still follows the epoch schedule, as in the reference; torch warns about it.
                warnings.filterwarnings('ignore', message=re.escape('Detected call of `lr_scheduler.step()`'))
                for phase in phases:
                    for sched in phase.schedulers.values():
                        sched.step()
            average_buffers(models, dist)
            lrs = {f'lr/{k}': o.param_groups[0]['lr'] for k, o in optimizers.items()}
            logger.log_epoch(epoch, checkpoint_objects(models, optimizers, phases, train_params, epoch),
                             inp=batch, out=to_float(generated), extra_scalars=lrs)
            last_save = time.monotonic()
            if max_minutes is not None and last_save - started > max_minutes * 60:
                log.info('time budget of %.1f min reached after epoch %d', max_minutes, epoch)
                break
        if epoch >= start_epoch:
            logger.save_final(checkpoint_objects(models, optimizers, phases, train_params, epoch), epoch)
    if dist.is_main and epoch >= start_epoch:
        log.info('trained epochs %d..%d; checkpoint: %s (continue with --checkpoint %s)', start_epoch, epoch,
                 logger.last_checkpoint_path, logger.last_checkpoint_path)
    return epoch
