"""Shared paths, comparison helpers and small configs for the model tests.

The parity fixtures live outside the repository, in ``../shared/parity`` (made by running the
official FOMM and TPSMM code); tests that need them skip, saying why, when that folder is absent.
"""
from __future__ import annotations

import contextlib
import functools
import copy
import math
import sys
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / 'shared'
PARITY_DIR = SHARED / 'parity'
# The reference-parity models (config, checkpoint) that tests animate with.
PARITY_FOMM = (PARITY_DIR / 'fomm-public.yaml', PARITY_DIR / 'fomm-public.pth.tar')
PARITY_TPS = (PARITY_DIR / 'tps-public.yaml', PARITY_DIR / 'tps-public.pth.tar')
CONFIG_DIR = REPO_ROOT / 'config'

if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))


@functools.lru_cache(maxsize=1)
def ffmpeg_exe() -> str:
    """Path of the ffmpeg program bundled with imageio-ffmpeg. The project never runs it (PyAV does
    all its media work in-process); tests make fixtures with it, a tool independent of the code
    under test."""
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


NO_PARITY = f'reference-parity fixtures not found at {PARITY_DIR}'

OFFICIAL_CONFIGS = sorted(CONFIG_DIR.glob('fomm/*.yaml')) + sorted(CONFIG_DIR.glob('tps/*.yaml'))
SYNTHETIC_CONFIGS = sorted(CONFIG_DIR.glob('synthetic/*.yaml'))   # the project's own small models
PARITY_CONFIGS = sorted(PARITY_DIR.glob('*.yaml')) if PARITY_DIR.is_dir() else []
PARITY_FIXTURES = sorted(p.name[:-len('.fixture.pt')] for p in PARITY_DIR.glob('*.fixture.pt')) \
    if PARITY_DIR.is_dir() else []


def config_id(path: Path) -> str:
    """'fomm/vox-256' for config/fomm/vox-256.yaml, 'parity/tps-public' for the shared ones."""
    return f'{path.parent.name}/{path.stem}'


# ---------------------------------------------------------------------------------------------
# Comparing (nested) outputs
# ---------------------------------------------------------------------------------------------

def max_abs_err(actual, expected) -> float:
    """Largest |actual - expected| over nested dicts / lists of tensors.

    Every key of `expected` must be in `actual` (extra keys in `actual` are allowed: the
    references' dicts are the minimum); lists must have equal length; shapes must be equal.
    """
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f'expected a dict, got {type(actual).__name__}'
        missing = sorted(set(expected) - set(actual))
        assert not missing, f'missing keys {missing}'
        return max([max_abs_err(actual[k], expected[k]) for k in expected] or [0.0])
    if isinstance(expected, (list, tuple)):
        assert isinstance(actual, (list, tuple)), f'expected a list, got {type(actual).__name__}'
        assert len(actual) == len(expected), f'length {len(actual)} != {len(expected)}'
        return max([max_abs_err(a, e) for a, e in zip(actual, expected)] or [0.0])
    a = torch.as_tensor(actual).detach().float().cpu()
    e = torch.as_tensor(expected).detach().float().cpu()
    assert a.shape == e.shape, f'shape {tuple(a.shape)} != {tuple(e.shape)}'
    if not a.numel():
        return 0.0
    err = (a - e).abs().max().item()
    return math.inf if math.isnan(err) else err


def assert_close(actual, expected, atol: float, what: str = '') -> None:
    err = max_abs_err(actual, expected)
    assert err <= atol, f'{what}: max abs err {err:.3e} > {atol:.0e}'


def relative_err(actual, expected) -> float:
    a, e = float(actual), float(expected)
    return abs(a - e) / max(abs(e), 1e-8)


# Gradients below this fraction of the largest gradient norm in their network are float32
# rounding noise around a true zero: a conv bias ahead of a BatchNorm, a heatmap bias ahead of a
# spatial softmax. In the fixtures they sit at <= 5.1e-7 of the network's largest norm (float64
# gives ~1e-13), every real gradient at >= 5.6e-4, so 1e-5 separates the two with room.
GRAD_NOISE_FLOOR = 1e-5


def grad_noise_floors(expected: dict[str, torch.Tensor]) -> dict[str, float]:
    """Per network (first name component): GRAD_NOISE_FLOOR x its largest expected gradient norm."""
    floors: dict[str, float] = {}
    for name, stats in expected.items():
        if not torch.isnan(stats).any():
            net = name.split('.')[0]
            floors[net] = max(floors.get(net, 0.0), GRAD_NOISE_FLOOR * float(stats[0]))
    return floors


def grad_stat_error(grad: torch.Tensor | None, expected: torch.Tensor, shape, noise_floor: float) -> float:
    """Error of a gradient's (L2 norm, sum) against the reference's, in units of its tolerance scale.

    Compare the result with the relative tolerance (2e-3):
    - NaN statistics mean "no gradient flows": ours must be missing or all zero.
    - An expected norm below `noise_floor` is rounding noise around a true zero; ours must be
      noise too (below the floor), and the two noises are not compared with each other.
    - The norm is compared relative to the expected norm.
    - The sum is compared relative to sqrt(numel) * expected norm, the largest a sum of that
      gradient can be. For a gradient of one sign that is the sum itself (a plain relative
      error); for one whose sum cancels to ~0 (the weights feeding a softmax over channels sum
      to exactly zero) it keeps the float32 leftovers of the cancellation from counting as a
      relative error of 100%. Those leftovers differ between CPUs: measured on the TPSMM fixture,
      -6.1e-5 (the reference's machine) vs 4.1e-5 (here) vs -1e-13 (float64) for a norm of 40.7.
    """
    if torch.isnan(expected).any():
        return math.inf if grad is not None and grad.abs().sum() > 0 else 0.0
    g = grad if grad is not None else torch.zeros(shape)
    norm, total = g.double().norm().item(), g.double().sum().item()
    exp_norm, exp_sum = float(expected[0]), float(expected[1])
    if exp_norm < noise_floor:
        return 0.0 if norm < noise_floor else math.inf
    sum_scale = math.sqrt(math.prod(shape)) * exp_norm
    return max(abs(norm - exp_norm) / exp_norm, abs(total - exp_sum) / sum_scale)


def iter_tensors(tree, prefix=''):
    """(name, tensor) for every tensor in nested dicts / lists."""
    if isinstance(tree, dict):
        for k, v in tree.items():
            yield from iter_tensors(v, f'{prefix}.{k}' if prefix else str(k))
    elif isinstance(tree, (list, tuple)):
        for i, v in enumerate(tree):
            yield from iter_tensors(v, f'{prefix}[{i}]')
    elif isinstance(tree, torch.Tensor):
        yield prefix, tree


def assert_all_finite(tree, what: str = '') -> None:
    bad = [name for name, t in iter_tensors(tree) if not torch.isfinite(t).all()]
    assert not bad, f'{what}: NaN/inf in {bad}'


def slice_kp(kp: dict, b: int) -> dict:
    return {k: v[b:b + 1] for k, v in kp.items()}


@contextlib.contextmanager
def num_threads(n: int):
    """torch.set_num_threads(n) for the block, restoring the previous value afterwards.

    Gradient statistics of near-zero (noise-level) parameters depend on the reduction order and
    so on the thread count; the parity fixtures were checked with 2 threads.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def random_images(batch: int, size: int, seed: int) -> torch.Tensor:
    """Smooth-ish random RGB images in [0, 1]: (batch, 3, size, size)."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(batch, 3, max(size // 8, 2), max(size // 8, 2), generator=g)
    img = torch.nn.functional.interpolate(coarse, size=(size, size), mode='bilinear', align_corners=False)
    return (0.8 * img + 0.2 * torch.rand(batch, 3, size, size, generator=g)).clamp(0, 1)


def load_vgg_int8(fx: dict):
    """VGG-19 with the parity fixtures' int8-quantised weights (float = int8 * scale)."""
    from modules.model import Vgg19
    q = torch.load(PARITY_DIR / fx['vgg19'], map_location='cpu', weights_only=True)
    vgg = Vgg19(pretrained=False)
    state = {k: v.float() * q['scale'][k] for k, v in q['int8'].items()}
    missing, unexpected = vgg.features.load_state_dict(state, strict=False)
    assert not unexpected, f'Vgg19.features lacks {unexpected[:3]}'
    return vgg


# ---------------------------------------------------------------------------------------------
# Tiny configs written here, so that the model tests run without ../shared
# ---------------------------------------------------------------------------------------------

_TINY_TRAIN_COMMON = {
    'num_epochs': 2, 'num_repeats': 1, 'epoch_milestones': [1], 'batch_size': 2,
    'checkpoint_freq': 1,
    'transform_params': {'sigma_affine': 0.05, 'sigma_tps': 0.005, 'points_tps': 5},
}

TINY_FOMM = {
    'dataset_params': {'root_dir': 'data/none', 'frame_shape': [64, 64, 3]},
    'model_params': {
        'common_params': {'num_kp': 4, 'num_channels': 3, 'estimate_jacobian': True},
        'kp_detector_params': {'temperature': 0.1, 'block_expansion': 8, 'max_features': 32,
                               'scale_factor': 0.5, 'num_blocks': 3, 'single_jacobian_map': True},
        'generator_params': {'block_expansion': 8, 'max_features': 32, 'num_down_blocks': 2,
                             'num_bottleneck_blocks': 1, 'estimate_occlusion_map': True,
                             'dense_motion_params': {'block_expansion': 8, 'max_features': 32,
                                                     'num_blocks': 3, 'scale_factor': 0.5}},
        # two discriminator scales, keypoint heatmaps as input and spectral norm: the variants
        # the parity configs do not use. 3 blocks so that the 32x32 scale fits.
        'discriminator_params': {'scales': [1, 0.5], 'block_expansion': 8, 'max_features': 32,
                                 'num_blocks': 3, 'sn': True, 'use_kp': True},
    },
    'train_params': {
        **_TINY_TRAIN_COMMON,
        'lr_generator': 2e-4, 'lr_discriminator': 2e-4, 'lr_kp_detector': 2e-4,
        'scales': [1, 0.5, 0.25],
        'loss_weights': {'generator_gan': 1, 'discriminator_gan': 1, 'feature_matching': [10, 10, 10],
                         'perceptual': [10, 10, 10, 10, 10], 'equivariance_value': 10,
                         'equivariance_jacobian': 10},
    },
}

TINY_TPS = {
    'dataset_params': {'root_dir': 'data/none', 'frame_shape': None},
    'model_params': {
        'common_params': {'num_tps': 2, 'num_channels': 3, 'bg': True, 'multi_mask': True},
        'generator_params': {'block_expansion': 8, 'max_features': 32, 'num_down_blocks': 3},
        'dense_motion_params': {'block_expansion': 8, 'max_features': 64, 'num_blocks': 3,
                                'scale_factor': 0.25},
        'avd_network_params': {'id_bottle_size': 8, 'pose_bottle_size': 8},
    },
    'train_params': {
        **_TINY_TRAIN_COMMON,
        'lr_generator': 2e-4, 'scales': [1, 0.5, 0.25],
        # dropout on for epochs 0-1, background predictor from epoch 1: epoch 0 has dropout
        # without background, epoch 2 background without dropout.
        'dropout_epoch': 2, 'dropout_maxp': 0.5, 'dropout_startp': 0.3, 'dropout_inc_epoch': 1,
        'bg_start': 1,
        'loss_weights': {'perceptual': [10, 10, 10, 10, 10], 'equivariance_value': 10, 'warp_loss': 10,
                         'bg': 10},
    },
}

# One occlusion map instead of four (TPSMM's `multi_mask: false`), no background predictor.
TINY_TPS_SINGLE_MASK = copy.deepcopy(TINY_TPS)
TINY_TPS_SINGLE_MASK['model_params']['common_params'].update(bg=False, multi_mask=False)
TINY_TPS_SINGLE_MASK['model_params']['dense_motion_params']['scale_factor'] = 0.5

TINY_CONFIGS = {'tiny/fomm': TINY_FOMM, 'tiny/tps': TINY_TPS, 'tiny/tps-single-mask': TINY_TPS_SINGLE_MASK}


def tiny_config(name: str):
    """A fresh modules.Config (deep copy) of one of the inline tiny configs."""
    from modules import Config
    config = Config(copy.deepcopy(TINY_CONFIGS[name]))
    config.path = f'<inline {name}>'
    return config


def family(config: dict) -> str:
    return 'fomm' if 'num_kp' in config['model_params']['common_params'] else 'tps'


@pytest.fixture(scope='module')
def torch_one_thread():
    """Run a module's tests on one intra-op thread (restored afterwards).

    These tensors are small, and on a machine whose cores are shared with other jobs
    (the 2-core CI box) two OpenMP threads spin against each other: measured here, a 64x64
    ResNet-18 forward took 0.9 s with 2 threads and 0.02 s with 1.
    """
    with num_threads(1):
        yield


@pytest.fixture(scope='session')
def random_vgg():
    """VGG-19 with random weights: the perceptual loss without a download. Frozen, so shared."""
    from modules.model import Vgg19
    torch.manual_seed(0)
    return Vgg19(pretrained=False)


@pytest.fixture
def parity_dir() -> Path:
    if not PARITY_DIR.is_dir():
        pytest.skip(NO_PARITY)
    return PARITY_DIR


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
    """A tiny synthetic data set (3 identities, 64x64, 6 frames) for the training tests, one per module."""
    from synthetic import data as synthetic_data
    root = tmp_path_factory.mktemp('synthetic')
    synthetic_data.generate_dataset(str(root), size=64, num_ids=3, videos_per_id=2, frames=6, test_ids=1, seed=0,
                                    progress=False)
    return str(root)


@pytest.fixture(scope='module')
def one_torch_thread():
    """Tiny networks gain nothing from threads, and one thread behaves better on a busy machine:
    modules of such tests use it (`pytestmark = pytest.mark.usefixtures('one_torch_thread')`)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
