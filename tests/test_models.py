"""Networks of both families: building from every config, forward shapes and ranges, one
training step's losses and gradients, the geometry and motion-transfer equations, config errors.

Everything runs on CPU at reduced sizes. The official configs are built at their real widths
and run once at the smallest input their architecture allows (128x128, see `forward_size`).
"""
from __future__ import annotations

import math
import warnings
from unittest import mock
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import torchvision
import yaml

import modules
import loading  # noqa: E402
from modules import discriminator
from modules import losses as L
from modules.blocks import AntiAliasInterpolation2d
from modules.dense_motion import TpsDenseMotionNetwork
from modules.geometry import (apply_tps, fit_tps, heatmap_to_keypoints, keypoints_to_gaussian,
                              local_affine_motions, make_coordinate_grid, random_tps_kernel_fomm,
                              random_tps_kernel_tpsmm, tps_motions)
from modules.model import (DiscriminatorFullModel, GeneratorFullModel, ImagePyramide, RandomTps, Vgg19,
                           TpsSchedule)
from modules.motion_transfer import normalize_kp

from conftest import (CONFIG_DIR, OFFICIAL_CONFIGS, PARITY_CONFIGS, SYNTHETIC_CONFIGS, TINY_CONFIGS,
                      assert_all_finite, config_id, family, random_images, tiny_config)

pytestmark = pytest.mark.usefixtures('torch_one_thread')

FOMM_KEYS = {'kp_detector', 'generator', 'discriminator'}
TPS_KEYS = {'kp_detector', 'dense_motion_network', 'inpainting_network', 'avd_network'}


# ---------------------------------------------------------------------------------------------
# 1. Every config builds the official networks, and one eval forward pass has the right outputs
# ---------------------------------------------------------------------------------------------

def forward_size(config: dict) -> int:
    """Smallest square input every network of the config accepts.

    Each hourglass works at `scale_factor` of the input and halves it `num_blocks` times, so the
    input must be divisible by 2**num_blocks / scale_factor (vox-256: 32 / 0.25 = 128); the
    generators' encoders need 2**num_down_blocks; the multi-scale discriminator's smallest
    scale needs room for its 4x4 convolutions; 64 at least, to keep ResNet-18 meaningful.
    """
    mp = config['model_params']
    needs = [64, 2 ** mp['generator_params']['num_down_blocks']]
    hourglasses = [mp.get('kp_detector_params'), mp['generator_params'].get('dense_motion_params'),
                   mp.get('dense_motion_params')]
    for p in hourglasses:
        if p and 'num_blocks' in p:   # TPSMM's kp_detector_params name a backbone, not an hourglass
            needs.append(int(round(2 ** p['num_blocks'] / p.get('scale_factor', 1))))
    size = math.lcm(*needs)
    disc = mp.get('discriminator_params')
    if disc:
        while min(disc['scales']) * size < 32:
            size *= 2
    return size


def all_configs():
    """(id, loader) for the official, the synthetic, the shared parity and the inline tiny configs."""
    cases = [pytest.param(lambda p=p: loading.load_config(str(p)), id=config_id(p))
             for p in OFFICIAL_CONFIGS + SYNTHETIC_CONFIGS]
    cases += [pytest.param(lambda p=p: loading.load_config(str(p)), id=config_id(p)) for p in PARITY_CONFIGS]
    cases += [pytest.param(lambda n=n: tiny_config(n), id=n) for n in TINY_CONFIGS]
    return cases


def test_every_official_config_is_covered():
    names = {config_id(p) for p in OFFICIAL_CONFIGS}
    assert len([n for n in names if n.startswith('fomm/')]) == 8, names
    assert len([n for n in names if n.startswith('tps/')]) == 4, names


def assert_in_range(t: torch.Tensor, lo: float, hi: float, what: str) -> None:
    assert t.min().item() >= lo and t.max().item() <= hi, \
        f'{what} outside [{lo}, {hi}]: [{t.min().item():.4f}, {t.max().item():.4f}]'


@pytest.mark.parametrize('load', all_configs())
def test_build_and_forward(load):
    config = load()
    torch.manual_seed(0)
    models = modules.build_models(config)
    mp = config['model_params']
    common = mp['common_params']
    for m in models.values():
        m.eval()
    size = forward_size(config)
    big = size > 64
    batch = 1 if big else 2        # the official configs are big: keep their batch at 1
    images = random_images(2 * batch, size, seed=1)
    source, driving = images[:batch], images[batch:]

    with torch.no_grad():
        if family(config) == 'fomm':
            assert set(models) == (FOMM_KEYS if 'discriminator_params' in mp else {'kp_detector', 'generator'})
            k = common['num_kp']
            kp = models['kp_detector'](images)
            assert kp['value'].shape == (2 * batch, k, 2)
            assert_in_range(kp['value'], -1, 1, 'keypoints')
            assert ('jacobian' in kp) == bool(common.get('estimate_jacobian', False))
            if 'jacobian' in kp:
                assert kp['jacobian'].shape == (2 * batch, k, 2, 2)
            kp_source = {key: v[:batch] for key, v in kp.items()}
            kp_driving = {key: v[batch:] for key, v in kp.items()}
            out = models['generator'](source, kp_driving=kp_driving, kp_source=kp_source)
            gp = mp['generator_params']
            dense_scale = gp['dense_motion_params'].get('scale_factor', 1)
            h = int(size * dense_scale)
            expected_keys = {'prediction', 'deformed', 'mask', 'sparse_deformed'}
            if gp.get('estimate_occlusion_map'):
                expected_keys.add('occlusion_map')
            assert set(out) == expected_keys
            assert out['prediction'].shape == (batch, 3, size, size)
            assert_in_range(out['prediction'], 0, 1, 'prediction')
            assert out['deformed'].shape == (batch, 3, size, size)
            assert out['mask'].shape == (batch, k + 1, h, h)
            torch.testing.assert_close(out['mask'].sum(1), torch.ones(batch, h, h))
            assert out['sparse_deformed'].shape == (batch, k + 1, 3, h, h)
            if 'occlusion_map' in out:
                assert out['occlusion_map'].shape == (batch, 1, h, h)
                assert_in_range(out['occlusion_map'], 0, 1, 'occlusion map')
            assert_all_finite(kp, 'keypoints')
            assert_all_finite(out, 'generator')
            if 'discriminator' in models:
                dp = mp['discriminator_params']
                disc = models['discriminator'](ImagePyramide(dp['scales'], 3)(driving), kp=kp_driving)
                assert set(disc) == {f'{p}_{s}' for s in dp['scales'] for p in ('feature_maps', 'prediction_map')}
                for s in dp['scales']:
                    assert len(disc[f'feature_maps_{s}']) == dp.get('num_blocks', 4)
                    pm = disc[f'prediction_map_{s}']
                    assert pm.shape[:2] == (batch, 1) and pm.shape[2] >= 1
                assert_all_finite(disc, 'discriminator')
        else:
            expected = TPS_KEYS | ({'bg_predictor'} if common.get('bg') else set())
            assert set(models) == expected
            n = 5 * common['num_tps']
            kp = models['kp_detector'](images)
            assert set(kp) == {'fg_kp'} and kp['fg_kp'].shape == (2 * batch, n, 2)
            assert_in_range(kp['fg_kp'], -1, 1, 'keypoints')
            kp_source, kp_driving = {'fg_kp': kp['fg_kp'][:batch]}, {'fg_kp': kp['fg_kp'][batch:]}
            bg_param = None
            if 'bg_predictor' in models:
                bg_param = models['bg_predictor'](source, driving)
                assert bg_param.shape == (batch, 3, 3)
                assert torch.equal(bg_param[:, 2], torch.tensor([[0., 0., 1.]]).expand(batch, 3))
                # initialised to the identity transform (zero weights, identity bias)
                torch.testing.assert_close(bg_param, torch.eye(3).expand(batch, 3, 3))
            dm = models['dense_motion_network'](source_image=source, kp_driving=kp_driving, kp_source=kp_source,
                                                bg_param=bg_param, dropout_flag=False)
            dp = mp['dense_motion_params']
            h = int(size * dp.get('scale_factor', 0.25))
            num_tps = common['num_tps']
            assert {'deformed_source', 'contribution_maps', 'deformation', 'occlusion_map'} <= set(dm)
            assert dm['deformed_source'].shape == (batch, num_tps + 1, 3, h, h)
            assert dm['contribution_maps'].shape == (batch, num_tps + 1, h, h)
            torch.testing.assert_close(dm['contribution_maps'].sum(1), torch.ones(batch, h, h))
            assert dm['deformation'].shape == (batch, h, h, 2)
            occ = dm['occlusion_map']
            assert isinstance(occ, list)
            if common.get('multi_mask', True):
                assert len(occ) == 4
                # coarse to fine, ending at the input resolution: one per inpainting level
                assert [o.shape[-1] for o in occ] == [size // 8, size // 4, size // 2, size]
            else:
                assert len(occ) == 1 and occ[0].shape[-1] == h
            for o in occ:
                assert o.shape[:2] == (batch, 1)
                assert_in_range(o, 0, 1, 'occlusion map')
            out = models['inpainting_network'](source, dm)
            assert out['prediction'].shape == (batch, 3, size, size)
            assert_in_range(out['prediction'], 0, 1, 'prediction')
            assert out['deformed'].shape == (batch, 3, size, size)
            assert len(out['warped_encoder_maps']) == mp['generator_params']['num_down_blocks'] + 1
            avd = models['avd_network'](kp_source, kp_driving)
            assert set(avd) == {'fg_kp'} and avd['fg_kp'].shape == (batch, n, 2)
            assert_all_finite([kp, bg_param, dm, out, avd], 'tps outputs')


# ---------------------------------------------------------------------------------------------
# 2. One training step: finite losses, and a finite gradient for every trainable parameter
# ---------------------------------------------------------------------------------------------

def training_cases():
    cases = []
    for p in PARITY_CONFIGS + SYNTHETIC_CONFIGS:
        config = yaml.safe_load(p.read_text())
        epochs = [0]
        if family(config) == 'tps':
            tp = config['train_params']
            epochs = sorted({0, tp['dropout_epoch'], tp.get('bg_start', 0)})
        cases += [pytest.param(lambda p=p: loading.load_config(str(p)), e, id=f'{config_id(p)}-epoch{e}')
                  for e in epochs]
    cases.append(pytest.param(lambda: tiny_config('tiny/fomm'), 0, id='tiny/fomm-epoch0'))
    # tiny/tps: epoch 0 dropout on + background off; epoch 2 dropout off + background on
    cases += [pytest.param(lambda: tiny_config('tiny/tps'), e, id=f'tiny/tps-epoch{e}') for e in (0, 2)]
    cases.append(pytest.param(lambda: tiny_config('tiny/tps-single-mask'), 0, id='tiny/tps-single-mask-epoch0'))
    if not PARITY_CONFIGS:
        cases.append(pytest.param(None, 0, id='parity-configs',
                                  marks=pytest.mark.skip(reason='../shared/parity configs absent')))
    return cases


def check_gradients(net: torch.nn.Module, what: str) -> None:
    """Every parameter has a finite gradient, and the network as a whole learns something.

    Conv biases directly followed by a normalisation have a true gradient of 0 (only rounding
    noise reaches them), so 'nonzero' is asked of the network, and of most of its tensors.
    """
    params = dict(net.named_parameters())
    missing = [n for n, p in params.items() if p.grad is None]
    assert not missing, f'{what}: no gradient for {missing[:5]} ({len(missing)} of {len(params)})'
    bad = [n for n, p in params.items() if not torch.isfinite(p.grad).all()]
    assert not bad, f'{what}: non-finite gradient in {bad[:5]}'
    nonzero = {n for n, p in params.items() if p.grad.abs().max() > 1e-8}
    if what == 'bg_predictor':
        # Initialised to the identity with a zero last layer: on the first step only that layer
        # learns, and the gradient reaching everything before it is exactly zero.
        assert nonzero == {'bg_encoder.fc.weight', 'bg_encoder.fc.bias'}, sorted(nonzero)
        return
    assert len(nonzero) >= 0.5 * len(params), \
        f'{what}: only {len(nonzero)} of {len(params)} parameters have a nonzero gradient'


@pytest.mark.parametrize('load, epoch', training_cases())
def test_training_step(load, epoch, random_vgg):
    config = load()
    tp = config['train_params']
    torch.manual_seed(0)
    models = modules.build_models(config)
    full = GeneratorFullModel(models, tp, vgg=random_vgg)
    full.train()
    images = random_images(4, 64, seed=2)
    x = {'source': images[:2], 'driving': images[2:]}
    losses, generated = full(x, epoch=epoch)

    w = tp['loss_weights']
    if family(config) == 'fomm':
        expected = {'perceptual'}
        if w.get('generator_gan', 0):
            expected |= {'gen_gan'} | ({'feature_matching'} if sum(w.get('feature_matching', [])) else set())
        expected |= {k for k in ('equivariance_value', 'equivariance_jacobian') if w.get(k, 0)}
        trained = ['kp_detector', 'generator']
    else:
        bg_on = config['model_params']['common_params'].get('bg', False) and epoch >= tp.get('bg_start', 0)
        expected = {'perceptual', 'equivariance_value', 'warp_loss'} | ({'bg'} if bg_on and w.get('bg') else set())
        trained = ['kp_detector', 'dense_motion_network', 'inpainting_network'] + (['bg_predictor'] if bg_on else [])
    assert set(losses) == expected
    for name, value in losses.items():
        assert value.dim() == 0 and torch.isfinite(value), f'loss {name} = {value}'
    assert_all_finite(generated['prediction'], 'prediction')

    sum(losses.values()).backward()
    for key in trained:
        check_gradients(models[key], key)
    if 'bg_predictor' in models and 'bg_predictor' not in trained:
        # before bg_start the background predictor is not used at all
        assert all(p.grad is None for p in models['bg_predictor'].parameters())
    if 'avd_network' in models:
        # the AVD network is trained separately (train_avd), never by the main full model
        assert all(p.grad is None for p in models['avd_network'].parameters())

    if family(config) == 'fomm' and 'discriminator' in models and w.get('discriminator_gan', 0):
        for p in models['discriminator'].parameters():
            p.grad = None
        before = {k: [p.grad.clone() for p in models[k].parameters()] for k in trained}
        disc_losses = DiscriminatorFullModel(models, tp)(x, generated)
        assert set(disc_losses) == {'disc_gan'}
        assert torch.isfinite(disc_losses['disc_gan']) and disc_losses['disc_gan'] > 0
        sum(disc_losses.values()).backward()
        check_gradients(models['discriminator'], 'discriminator')
        # the discriminator loss sees the prediction detached: generator gradients unchanged
        for k in trained:
            for g0, p in zip(before[k], models[k].parameters()):
                assert torch.equal(g0, p.grad), f'discriminator loss changed the gradient of {k}'


def test_tps_dropout_schedule():
    s = TpsSchedule(dropout_epoch=35, dropout_maxp=0.3, dropout_startp=0.1, dropout_inc_epoch=10)
    assert s.dropout(0) == (True, pytest.approx(0.1))
    assert s.dropout(5) == (True, pytest.approx(0.25))
    assert s.dropout(20) == (True, pytest.approx(0.3))     # capped at dropout_maxp
    assert s.dropout(35) == (False, 0.0)
    assert s.dropout(100) == (False, 0.0)


# ---------------------------------------------------------------------------------------------
# 3. Equations and building blocks
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize('name', ['tiny/fomm', 'fomm/vox-256', 'fomm/mgif-256'])
def test_fomm_jacobian_is_identity_at_initialisation(name):
    config = tiny_config(name) if name.startswith('tiny') else loading.load_config(str(CONFIG_DIR / f'{name}.yaml'))
    torch.manual_seed(3)
    kp_detector = modules.build_models(config)['kp_detector'].eval()
    size = forward_size(config)
    with torch.no_grad():
        kp = kp_detector(random_images(2, size, seed=4))
    k = config['model_params']['common_params']['num_kp']
    torch.testing.assert_close(kp['jacobian'], torch.eye(2).expand(2, k, 2, 2), atol=1e-5, rtol=0)


def test_coordinate_grid_layout():
    grid = make_coordinate_grid((3, 5))
    assert grid.shape == (3, 5, 2)
    torch.testing.assert_close(grid[0, 0], torch.tensor([-1., -1.]))
    torch.testing.assert_close(grid[0, 4], torch.tensor([1., -1.]))     # x runs along the width
    torch.testing.assert_close(grid[2, 0], torch.tensor([-1., 1.]))
    torch.testing.assert_close(grid[1, 2], torch.tensor([0., 0.]))


def test_keypoints_to_gaussian_peaks_at_keypoint():
    h, w = 17, 21
    grid = make_coordinate_grid((h, w))
    pixels = [(3, 5), (16, 0), (8, 10)]
    kp = torch.stack([grid[i, j] for i, j in pixels]).view(1, 3, 2)
    heat = keypoints_to_gaussian(kp, (h, w), kp_variance=0.01)
    assert heat.shape == (1, 3, h, w)
    for k, (i, j) in enumerate(pixels):
        flat = heat[0, k].argmax().item()
        assert divmod(flat, w) == (i, j)
        assert heat[0, k, i, j].item() == pytest.approx(1.0)
    # a variance-0.01 gaussian: exp(-d^2 / 0.02) at distance d
    d2 = ((grid[3, 6] - grid[3, 5]) ** 2).sum()
    assert heat[0, 0, 3, 6].item() == pytest.approx(math.exp(-d2.item() / 0.02), rel=1e-5)


def test_heatmap_to_keypoints_of_one_hot():
    h, w = 9, 13
    heat = torch.zeros(2, 2, h, w)
    pixels = [[(0, 0), (4, 7)], [(8, 12), (2, 11)]]
    for b, pair in enumerate(pixels):
        for k, (i, j) in enumerate(pair):
            heat[b, k, i, j] = 1
    kp = heatmap_to_keypoints(heat)
    expected = torch.tensor([[[2 * j / (w - 1) - 1, 2 * i / (h - 1) - 1] for i, j in pair] for pair in pixels])
    torch.testing.assert_close(kp, expected)


def _spread_keypoints(batch: int, groups: int, seed: int) -> torch.Tensor:
    """(B, G, 5, 2) well-conditioned TPS control points: a jittered square and its centre."""
    g = torch.Generator().manual_seed(seed)
    base = torch.tensor([[-.5, -.5], [.5, -.5], [.5, .5], [-.5, .5], [0., 0.]])
    return base + 0.1 * torch.randn(batch, groups, 5, 2, generator=g)


def _apply_at_own_points(kp_from, affine, weights):
    """Evaluate each group's TPS at its own control points: (B, G, 5, 2)."""
    b, g = kp_from.shape[:2]
    out = torch.empty_like(kp_from)
    for i in range(b):
        for j in range(g):
            out[i, j] = apply_tps(kp_from[i, j], kp_from[i:i + 1, j:j + 1], affine[i:i + 1, j:j + 1],
                                  weights[i:i + 1, j:j + 1])[0, 0]
    return out


def test_fit_tps_maps_control_points_onto_targets():
    kp_from = _spread_keypoints(2, 3, seed=0)
    kp_to = kp_from + 0.15 * torch.randn(kp_from.shape, generator=torch.Generator().manual_seed(1))
    # without the ridge the spline interpolates exactly
    affine, weights = fit_tps(kp_from, kp_to, regularization=0)
    assert affine.shape == (2, 3, 2, 3) and weights.shape == (2, 3, 5, 2)
    torch.testing.assert_close(_apply_at_own_points(kp_from, affine, weights), kp_to, atol=1e-4, rtol=0)
    # with the reference's 0.01 ridge it is a smoothing spline: close, and off by exactly
    # 0.01 * w_i at control point i (the first block row of the regularised system)
    affine, weights = fit_tps(kp_from, kp_to)
    mapped = _apply_at_own_points(kp_from, affine, weights)
    torch.testing.assert_close(mapped, kp_to, atol=1e-2, rtol=0)
    torch.testing.assert_close(mapped, kp_to - 0.01 * weights, atol=1e-5, rtol=0)


def test_tps_motions_with_equal_keypoints_is_near_identity():
    h = w = 33
    grid = make_coordinate_grid((h, w))
    kp = _spread_keypoints(2, 4, seed=5).view(2, 20, 2)
    motions = tps_motions(grid, kp, kp)
    assert motions.shape == (2, 4, h, w, 2)
    err = (motions - grid).abs()
    # The ridge also sits on the affine block of the system, which pulls the affine part
    # towards 0: measured on these layouts, max 0.04 and mean 0.03 over the image, well under
    # one pixel of a 64-pixel motion field (2/63 = 0.032) on average. It is the reference's
    # behaviour (the parity fixtures depend on it), so it must not vanish either.
    assert err.max() < 0.06, err.max()
    assert err.mean() < 0.02, err.mean()
    assert err.max() > 1e-3
    # and exactly the identity without the ridge
    kp_g = kp.view(2, 4, 5, 2)
    affine, weights = fit_tps(kp_g, kp_g, regularization=0)
    torch.testing.assert_close(apply_tps(grid.view(-1, 2), kp_g, affine, weights),
                               grid.view(1, 1, -1, 2).expand(2, 4, -1, 2), atol=1e-4, rtol=0)


def test_local_affine_motions_identity():
    grid = make_coordinate_grid((8, 10))
    torch.manual_seed(0)
    value = torch.rand(2, 3, 2) * 2 - 1
    kp = {'value': value, 'jacobian': torch.eye(2).expand(2, 3, 2, 2).clone()}
    motions = local_affine_motions(grid, kp, kp)
    assert motions.shape == (2, 3, 8, 10, 2)
    torch.testing.assert_close(motions, grid.expand(2, 3, 8, 10, 2), atol=1e-6, rtol=0)
    # zero-order (no jacobians): a pure translation by kp_source - kp_driving
    shifted = {'value': value + 0.1}
    motions = local_affine_motions(grid, {'value': value}, shifted)
    torch.testing.assert_close(motions, grid.expand(2, 3, 8, 10, 2) + 0.1, atol=1e-6, rtol=0)
    # first order: T(z) = kp_S + J_S J_D^-1 (z - kp_D), checked at one pixel
    jd = torch.tensor([[2., 0.], [0., 1.]]).expand(2, 3, 2, 2)
    js = torch.tensor([[0., -1.], [1., 0.]]).expand(2, 3, 2, 2)
    motions = local_affine_motions(grid, {'value': value, 'jacobian': jd}, {'value': value, 'jacobian': js})
    z = grid[5, 7]
    expected = value[1, 2] + js[1, 2] @ torch.inverse(jd[1, 2]) @ (z - value[1, 2])
    torch.testing.assert_close(motions[1, 2, 5, 7], expected)


def test_fomm_dense_motion_with_equal_keypoints_is_identity():
    torch.manual_seed(0)
    models = modules.build_models(tiny_config('tiny/fomm'))
    dm = models['generator'].dense_motion_network.eval()
    src = random_images(2, 64, seed=6)
    with torch.no_grad():
        kp = models['kp_detector'].eval()(src)
        kp['jacobian'] = kp['jacobian'] + 0.2 * torch.randn_like(kp['jacobian'])
        out = dm(source_image=src, kp_driving=kp, kp_source=kp)
    grid = make_coordinate_grid((32, 32))
    torch.testing.assert_close(out['deformation'], grid.expand(2, 32, 32, 2), atol=1e-5, rtol=0)


def test_tps_identity_background_equals_no_background():
    torch.manual_seed(0)
    models = modules.build_models(tiny_config('tiny/tps'))
    dm = models['dense_motion_network'].eval()
    src = random_images(2, 64, seed=7)
    with torch.no_grad():
        kp_s = models['kp_detector'].eval()(src)
        kp_d = {'fg_kp': kp_s['fg_kp'] + 0.05}
        plain = dm(source_image=src, kp_driving=kp_d, kp_source=kp_s)
        eye = dm(source_image=src, kp_driving=kp_d, kp_source=kp_s, bg_param=torch.eye(3).expand(2, 3, 3))
        shifted = torch.eye(3).repeat(2, 1, 1)
        shifted[:, 0, 2] = 0.3
        moved = dm(source_image=src, kp_driving=kp_d, kp_source=kp_s, bg_param=shifted)
    torch.testing.assert_close(eye['deformation'], plain['deformation'], atol=1e-6, rtol=0)
    # the background candidate (index 0) follows the affine: x shifted by 0.3
    bg_plain, bg_moved = plain['deformed_source'][:, 0], moved['deformed_source'][:, 0]
    assert (bg_plain - bg_moved).abs().max() > 1e-2


@pytest.mark.parametrize('size, nearest, expected', [(64, True, 16), (64, False, 16), (66, True, 16), (66, False, 17)])
def test_anti_alias_output_size(size, nearest, expected):
    down = AntiAliasInterpolation2d(3, 0.25, nearest_resize=nearest)
    out = down(torch.rand(1, 3, size, size))
    assert out.shape == (1, 3, expected, expected)


def test_warp_keeps_a_channels_last_map_channels_last():
    """CPU inference keeps its maps channels-last; grid_sample writes NCHW, and warp gives the
    input's layout back (the same values), so later adds pair maps of one layout."""
    from modules.geometry import warp
    torch.manual_seed(0)
    maps = torch.rand(2, 8, 16, 16)
    field = torch.rand(2, 8, 8, 2) * 2 - 1
    plain = warp(maps, field)
    last = warp(maps.contiguous(memory_format=torch.channels_last), field)
    assert plain.is_contiguous() and not last.is_contiguous()
    assert last.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(last, plain, rtol=0, atol=0)


@pytest.mark.parametrize('scale', [0.5, 0.25, 0.125])
@pytest.mark.parametrize('nearest', [False, True])
@pytest.mark.parametrize('size', [64, 66, 37])
def test_anti_alias_blurs_only_the_kept_pixels(scale, nearest, size):
    """The strided blur equals blurring every pixel then subsampling (the references' way), in
    value and in gradient."""
    down = AntiAliasInterpolation2d(3, scale, nearest_resize=nearest)
    x = torch.rand(2, 3, size, size + 3, requires_grad=True)
    blurred = F.conv2d(F.pad(x, (down.ka, down.kb, down.ka, down.kb)), down.weight, groups=3)
    expected = (F.interpolate(blurred, scale_factor=(scale, scale)) if nearest
                else blurred[:, :, ::down.step, ::down.step])
    out = down(x)
    assert out.shape == expected.shape
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=0)
    weights = torch.rand_like(out)
    grad, = torch.autograd.grad((out * weights).sum(), x)
    expected_grad, = torch.autograd.grad((expected * weights).sum(), x)
    torch.testing.assert_close(grad, expected_grad, atol=1e-6, rtol=0)


def test_anti_alias_floor_and_ceil_pick_the_same_pixels():
    x = torch.rand(2, 3, 66, 66)
    tps = AntiAliasInterpolation2d(3, 0.25, nearest_resize=True)(x)
    fomm = AntiAliasInterpolation2d(3, 0.25, nearest_resize=False)(x)
    torch.testing.assert_close(fomm[:, :, :16, :16], tps)
    # blur kernel normalised: an interior pixel of a constant image keeps its value
    const = AntiAliasInterpolation2d(1, 0.25)(torch.full((1, 1, 64, 64), 0.7))
    assert const[0, 0, 8, 8].item() == pytest.approx(0.7, abs=1e-6)
    assert AntiAliasInterpolation2d(3, 1)(x) is x


@pytest.mark.parametrize('kernel', [random_tps_kernel_fomm, random_tps_kernel_tpsmm], ids=['fomm', 'tpsmm'])
def test_random_tps_identity(kernel):
    b = 2
    identity = RandomTps(torch.eye(2, 3).expand(b, 2, 3), make_coordinate_grid((5, 5)).view(1, 25, 2),
                         torch.zeros(b, 1, 25), kernel)
    frames = random_images(b, 32, seed=8)
    torch.testing.assert_close(identity.transform_frame(frames), frames, atol=1e-5, rtol=0)
    coords = (torch.rand(b, 7, 2) * 2 - 1).requires_grad_(True)
    torch.testing.assert_close(identity.warp_coordinates(coords), coords)
    torch.testing.assert_close(identity.jacobian(coords), torch.eye(2).expand(b, 7, 2, 2))
    # a pure shift moves the coordinates and has the identity jacobian
    theta = torch.eye(2, 3).repeat(b, 1, 1)
    theta[:, 1, 2] = 0.25
    shift = RandomTps(theta, make_coordinate_grid((5, 5)), torch.zeros(b, 1, 25), kernel)
    torch.testing.assert_close(shift.warp_coordinates(coords), coords + torch.tensor([0., 0.25]))
    torch.testing.assert_close(shift.jacobian(coords), torch.eye(2).expand(b, 7, 2, 2))


def test_dropout_softmax_respects_keep_mask():
    dm_cls = TpsDenseMotionNetwork
    torch.manual_seed(0)
    logits = torch.randn(3, 5, 6, 7)
    keep = torch.tensor([[True, True, False, True, False],
                         [False, False, True, False, False],    # background dropped: kept anyway
                         [True, True, True, True, True]])
    keep_before = keep.clone()
    out = dm_cls.dropout_softmax(logits.clone(), 0.4, keep=keep)
    assert torch.equal(keep, keep_before), 'keep mask modified in place'
    effective = keep.clone()
    effective[:, 0] = True
    for b in range(3):
        for k in range(5):
            if effective[b, k]:
                assert (out[b, k] > 0).all(), (b, k)
            else:
                assert (out[b, k] == 0).all(), (b, k)
    # Renormalised over the surviving maps, as the reference: exp(l - max over ALL maps) divided
    # by (sum of the kept ones + 1e-6); sums are 1 up to that 1e-6 (relative to the kept mass).
    shifted = (logits - logits.max(dim=1, keepdim=True).values).exp() * effective[:, :, None, None]
    kept_mass = shifted.sum(1, keepdim=True)
    torch.testing.assert_close(out, shifted / (kept_mass + 1e-6), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(out.sum(1), torch.ones(3, 6, 7), atol=1e-3, rtol=0)
    # nothing dropped: a plain softmax
    torch.testing.assert_close(out[2], torch.softmax(logits[2], dim=0), atol=1e-5, rtol=0)
    # random draw: p = 0 keeps every map, p = 1 keeps only the background
    torch.testing.assert_close(dm_cls.dropout_softmax(logits.clone(), 0.0), torch.softmax(logits, 1),
                               atol=1e-5, rtol=0)
    only_bg = dm_cls.dropout_softmax(logits.clone(), 1.0)
    assert (only_bg[:, 1:] == 0).all()
    bg = shifted[:, :1]
    torch.testing.assert_close(only_bg[:, 0], (bg / (bg + 1e-6))[:, 0], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(only_bg[:, 0], torch.ones(3, 6, 7), atol=1e-3, rtol=0)


def test_tps_dense_motion_dropout_drops_whole_maps():
    torch.manual_seed(0)
    models = modules.build_models(tiny_config('tiny/tps'))
    dm = models['dense_motion_network'].eval()
    src = random_images(2, 64, seed=9)
    with torch.no_grad():
        kp_s = models['kp_detector'].eval()(src)
        kp_d = {'fg_kp': kp_s['fg_kp'].flip(1)}
        torch.manual_seed(1)
        out = dm(source_image=src, kp_driving=kp_d, kp_source=kp_s, dropout_flag=True, dropout_p=0.999)
    maps = out['contribution_maps']
    assert (maps[:, 1:] == 0).all(), 'p ~ 1 must drop every TPS map'
    assert (maps[:, 0] > 0).all(), 'the background map is never dropped'
    # then the deformation is the background (identity) motion alone, up to the 1e-6 term
    grid = make_coordinate_grid((16, 16))
    torch.testing.assert_close(out['deformation'], grid.expand(2, 16, 16, 2), atol=1e-3, rtol=0)


def test_fomm_generator_precomputed_source_features():
    torch.manual_seed(0)
    models = modules.build_models(tiny_config('tiny/fomm'))
    gen, kp_detector = models['generator'].eval(), models['kp_detector'].eval()
    images = random_images(4, 64, seed=10)
    with torch.no_grad():
        kp = kp_detector(images)
        kp_s, kp_d = {k: v[:2] for k, v in kp.items()}, {k: v[2:] for k, v in kp.items()}
        direct = gen(images[:2], kp_driving=kp_d, kp_source=kp_s)
        cached = gen(images[:2], kp_driving=kp_d, kp_source=kp_s, source_features=gen.encode(images[:2]))
    torch.testing.assert_close(cached, direct, atol=0, rtol=0)


@pytest.mark.parametrize('name', ['tiny/tps', 'tiny/tps-single-mask'])
def test_tps_inpainting_same_numbers_with_and_without_autograd(name):
    """The inpainting network takes a cheaper path without autograd (no detached copies for the
    warp loss); outputs, warp-loss maps included, must be the same either way."""
    torch.manual_seed(0)
    models = modules.build_models(tiny_config(name))
    for m in models.values():
        m.eval()
    images = random_images(4, 64, seed=11)
    with torch.no_grad():
        kp = models['kp_detector'](images)
        kp_s, kp_d = {'fg_kp': kp['fg_kp'][:2]}, {'fg_kp': kp['fg_kp'][2:]}
        dm = models['dense_motion_network'](source_image=images[:2], kp_driving=kp_d, kp_source=kp_s)
        plain = models['inpainting_network'](images[:2], dm)
        cached = models['inpainting_network'](images[:2], dm,
                                              encoder_maps=models['inpainting_network'].encode(images[:2]))
    tracked = models['inpainting_network'](images[:2], dm)
    keys = ['prediction', 'deformed', 'warped_encoder_maps']
    torch.testing.assert_close({k: tracked[k] for k in keys}, {k: plain[k] for k in keys}, atol=1e-6, rtol=0)
    torch.testing.assert_close({k: cached[k] for k in keys}, {k: plain[k] for k in keys}, atol=0, rtol=0)
    levels = tiny_config(name)['model_params']['generator_params']['num_down_blocks'] + 1
    assert len(plain['warped_encoder_maps']) == levels


# ----- motion transfer: normalize_kp

def _square(center, half):
    c = torch.tensor(center, dtype=torch.float32)
    return c + half * torch.tensor([[-1., -1.], [1., -1.], [1., 1.], [-1., 1.], [0., 0.]])


def test_normalize_kp_absolute_returns_driving():
    torch.manual_seed(0)
    kp = {k: {'value': torch.rand(2, 5, 2), 'jacobian': torch.rand(2, 5, 2, 2)} for k in ('s', 'd', 'd0')}
    out = normalize_kp(kp['s'], kp['d'], kp['d0'], adapt_movement_scale=True, use_relative_movement=False,
                       use_relative_jacobian=True)
    assert set(out) == {'value', 'jacobian'}
    assert torch.equal(out['value'], kp['d']['value']) and torch.equal(out['jacobian'], kp['d']['jacobian'])


@pytest.mark.parametrize('key', ['value', 'fg_kp'])
def test_normalize_kp_relative_without_adapt(key):
    torch.manual_seed(0)
    s, d, d0 = (torch.rand(2, 10, 2) * 2 - 1 for _ in range(3))
    inputs = [{key: t} for t in (s, d, d0)]
    copies = [{key: t.clone()} for t in (s, d, d0)]
    out = normalize_kp(*inputs, adapt_movement_scale=False, use_relative_movement=True)
    torch.testing.assert_close(out[key], s + (d - d0))
    for a, b in zip(inputs, copies):
        assert torch.equal(a[key], b[key]), 'inputs modified'


def test_normalize_kp_relative_jacobian():
    torch.manual_seed(0)
    jac = [torch.eye(2) + 0.3 * torch.randn(2, 4, 2, 2) for _ in range(3)]
    kps = [{'value': torch.rand(2, 4, 2), 'jacobian': j} for j in jac]
    out = normalize_kp(*kps, use_relative_movement=True, use_relative_jacobian=True)
    torch.testing.assert_close(out['jacobian'], jac[1] @ torch.inverse(jac[2]) @ jac[0])
    out = normalize_kp(*kps, use_relative_movement=True, use_relative_jacobian=False)
    assert torch.equal(out['jacobian'], jac[1])


def test_normalize_kp_adapt_scale_is_per_sample():
    # sample 0: source square half-size 0.4, initial driving 0.2 -> area ratio 4, scale 2;
    # sample 1: source 0.1, initial driving 0.3 -> scale 1/3
    s = torch.stack([_square((0, 0), 0.4), _square((0.2, 0.1), 0.1)])
    d0 = torch.stack([_square((0.1, 0), 0.2), _square((0, 0), 0.3)])
    d = d0 + torch.linspace(-0.1, 0.1, 10).view(2, 5, 1)
    out = normalize_kp({'value': s}, {'value': d}, {'value': d0}, adapt_movement_scale=True,
                       use_relative_movement=True)
    scale = torch.tensor([2.0, 1 / 3]).view(2, 1, 1)
    torch.testing.assert_close(out['value'], s + scale * (d - d0))
    for b in range(2):
        alone = normalize_kp({'value': s[b:b + 1]}, {'value': d[b:b + 1]}, {'value': d0[b:b + 1]},
                             adapt_movement_scale=True, use_relative_movement=True)
        torch.testing.assert_close(out['value'][b:b + 1], alone['value'])
    # a precomputed per-sample scale gives the same
    pre = normalize_kp({'value': s}, {'value': d}, {'value': d0}, adapt_movement_scale=scale.view(2),
                       use_relative_movement=True)
    torch.testing.assert_close(pre['value'], out['value'])


def test_normalize_kp_degenerate_keypoints_scale_one_with_warning():
    s = torch.stack([_square((0, 0), 0.4), _square((0, 0), 0.4), _square((0, 0), 0.4)])
    diagonal = torch.linspace(-0.5, 0.5, 5).view(5, 1).expand(5, 2)
    horizontal = torch.stack([torch.linspace(-0.5, 0.5, 5), torch.full((5,), 0.1)], dim=-1)
    # sample 0 fine; samples 1 and 2 with (exactly) collinear initial driving keypoints
    d0 = torch.stack([_square((0, 0), 0.2), diagonal, horizontal])
    d = d0 + 0.05
    with pytest.warns(UserWarning, match='degenerate|collinear'):
        out = normalize_kp({'fg_kp': s}, {'fg_kp': d}, {'fg_kp': d0}, adapt_movement_scale=True,
                           use_relative_movement=True)
    assert torch.isfinite(out['fg_kp']).all()
    torch.testing.assert_close(out['fg_kp'][0], s[0] + 2 * 0.05)       # scale 2, unaffected
    torch.testing.assert_close(out['fg_kp'][1:], s[1:] + 0.05)         # scale 1


def test_normalize_kp_collinear_float32_keypoints_scale_one():
    s = _square((0, 0), 0.4)[None]
    x = torch.linspace(-0.5, 0.5, 5)
    line = torch.stack([x, 0.5 * x + 0.05], dim=-1)[None]          # collinear up to float32 rounding
    with pytest.warns(UserWarning, match='degenerate|collinear'):
        out = normalize_kp({'value': s}, {'value': line + 0.05}, {'value': line}, adapt_movement_scale=True,
                           use_relative_movement=True)
    torch.testing.assert_close(out['value'], s + 0.05)


def test_normalize_kp_non_degenerate_does_not_warn():
    s = _square((0, 0), 0.4)[None]
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        normalize_kp({'value': s}, {'value': s}, {'value': s}, adapt_movement_scale=True,
                     use_relative_movement=True)


def torch_and_ours(build) -> list:
    """`build()` twice from one seed: with torch's spectral norm, then with the discriminator's."""
    made = []
    for wrap in (torch.nn.utils.spectral_norm, discriminator.spectral_norm):
        with mock.patch.object(discriminator, 'spectral_norm', wrap):
            torch.manual_seed(0)
            made.append(build())
    return made


# Three output channels: with one (the discriminator's last layer, whose `weight_u` has size [1])
# u is +-1, and a u recomputed from the updated buffer happens to give the same v.
SPECTRAL_NORM_NETWORKS = {
    'layer': lambda: discriminator.spectral_norm(torch.nn.Conv2d(3, 3, 3)),
    'discriminator': lambda: discriminator.MultiScaleDiscriminator(scales=[1], block_expansion=4, num_blocks=2,
                                                                   max_features=8, sn=True),
}


def spectral_norm_steps(network, calls_per_step=(1, 2, 2)) -> list:
    """Training steps on fixed images: each step calls `network` once or twice (the GAN losses see
    generated, then real images) before one backward. Per step: the loss, every gradient, every
    buffer (u and v)."""
    torch.manual_seed(1)
    images = torch.randn(2, 3, 16, 16)
    steps = []
    for calls in calls_per_step:
        network.zero_grad()
        outputs = [network(images[i:i + 1]) if isinstance(network, torch.nn.Conv2d)
                   else network({'prediction_1': images[i:i + 1]})['prediction_map_1'] for i in range(calls)]
        loss = sum(out.square().mean() * (i + 1) for i, out in enumerate(outputs))
        loss.backward()
        steps.append([loss.detach()] + [p.grad.clone() for p in network.parameters()]
                     + [b.clone() for b in network.buffers()])
    return steps


@pytest.mark.parametrize('name', SPECTRAL_NORM_NETWORKS)
def test_discriminator_spectral_norm_is_torchs_in_eager(name):
    """Same numbers, names and state dicts as torch.nn.utils.spectral_norm, whether the layer runs
    its own power iteration or the discriminator runs them all first: only where the iteration
    runs under torch.compile differs."""
    theirs, ours = torch_and_ours(SPECTRAL_NORM_NETWORKS[name])
    assert any(isinstance(hook, discriminator.EagerPowerIteration) for _, hook in discriminator.spectral_hooks(ours))
    assert not any(True for _ in discriminator.spectral_hooks(theirs))
    assert ours.state_dict().keys() == theirs.state_dict().keys()
    assert {'weight_orig', 'weight_u', 'weight_v'} <= {key.split('.')[-1] for key in ours.state_dict()}
    torch.testing.assert_close(spectral_norm_steps(ours), spectral_norm_steps(theirs), rtol=0, atol=0)
    ours.load_state_dict(theirs.state_dict())           # checkpoints go both ways, metadata included
    theirs.load_state_dict(ours.state_dict())
    with torch.no_grad():                              # eval: no power iteration, the buffers as they are
        images = torch.randn(1, 3, 16, 16)
        run = (lambda net: net(images)) if name == 'layer' else (lambda net: net({'prediction_1': images}))
        torch.testing.assert_close(run(ours.eval()), run(theirs.eval()), rtol=0, atol=0)
    torch.testing.assert_close(list(ours.buffers()), list(theirs.buffers()), rtol=0, atol=0)


@pytest.mark.parametrize('name', SPECTRAL_NORM_NETWORKS)
def test_compiled_spectral_norm_trains_as_eager(name):
    """torch.compile of torch's spectral norm (torch 2.14, Inductor, CPU) recomputes u and v in the
    backward from the buffers the forward has already updated. Measured on the layer: the first
    step's `weight_orig` gradient off by 0.14 (largest element 0.73), and the second step (two
    calls) fails as train.py --compile did ("modified by an inplace operation"). The
    discriminator's spectral norm updates u and v outside the graph: the compiled steps follow
    eager torch within float32 rounding of Inductor's kernels (tolerance 1e-5; measured 3.6e-7 on
    the layer's gradients, largest 1.5). The discriminator runs all its iterations before its
    graph: one graph break there, one graph, no recompilation."""
    from torch._dynamo.utils import counters
    theirs, ours = torch_and_ours(SPECTRAL_NORM_NETWORKS[name])
    torch._dynamo.reset()
    counters.clear()
    if name == 'layer':
        discriminator.run_power_iterations_outside_graphs()    # the discriminator's compile() does it itself
    ours.compile()
    torch.testing.assert_close(spectral_norm_steps(ours), spectral_norm_steps(theirs), rtol=1e-5, atol=1e-5)
    if name == 'discriminator':
        assert counters['stats']['unique_graphs'] == 1 and sum(counters['graph_break'].values()) == 1, dict(counters)


# ---------------------------------------------------------------------------------------------
# 4. Config errors: one ConfigError naming the file and the key
# ---------------------------------------------------------------------------------------------

def _official(name: str) -> dict:
    return yaml.safe_load((CONFIG_DIR / f'{name}.yaml').read_text())


def _write(tmp_path: Path, data, name='bad.yaml') -> str:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return str(path)


def _load_and_build(path: str):
    return modules.build_models(loading.load_config(path))


@pytest.mark.parametrize('name, marker', [('fomm/vox-256', 'num_kp'), ('tps/vox-256', 'num_tps')])
def test_config_without_family_marker(tmp_path, name, marker):
    data = _official(name)
    del data['model_params']['common_params'][marker]
    path = _write(tmp_path, data)
    with pytest.raises(modules.ConfigError) as e:
        loading.load_config(path)
    assert path in str(e.value) and marker in str(e.value)


@pytest.mark.parametrize('name, section, wrong, right', [
    ('fomm/vox-256', 'kp_detector_params', 'num_blocs', 'num_blocks'),
    ('fomm/vox-256', 'generator_params', 'num_bottleneck_block', 'num_bottleneck_blocks'),
    ('fomm/vox-256', 'common_params', 'estimate_jacobians', 'estimate_jacobian'),
    ('tps/vox-256', 'dense_motion_params', 'num_blocs', 'num_blocks'),
    ('tps/vox-256', 'generator_params', 'max_feature', 'max_features'),
])
def test_config_misspelt_key(tmp_path, name, section, wrong, right):
    data = _official(name)
    sec = data['model_params'][section]
    sec[wrong] = sec.pop(right)
    path = _write(tmp_path, data)
    with pytest.raises(modules.ConfigError) as e:
        _load_and_build(path)
    msg = str(e.value)
    assert path in msg and f"'model_params.{section}.{wrong}'" in msg and f"'{right}'" in msg, msg


def test_config_misspelt_nested_dense_motion_key(tmp_path):
    data = _official('fomm/vox-256')
    dense = data['model_params']['generator_params']['dense_motion_params']
    dense['scale_facter'] = dense.pop('scale_factor')
    path = _write(tmp_path, data)
    with pytest.raises(modules.ConfigError) as e:
        _load_and_build(path)
    assert path in str(e.value) and 'scale_facter' in str(e.value) and "'scale_factor'" in str(e.value)


@pytest.mark.parametrize('name, dotted', [
    ('fomm/vox-256', 'model_params.kp_detector_params.temperature'),
    ('fomm/vox-256', 'model_params.generator_params'),
    ('fomm/vox-256', 'model_params.generator_params.dense_motion_params.num_blocks'),
    ('tps/vox-256', 'model_params.generator_params.num_down_blocks'),
    ('tps/vox-256', 'model_params.dense_motion_params'),
    ('tps/vox-256', 'model_params'),
])
def test_config_missing_required_key(tmp_path, name, dotted):
    data = _official(name)
    *parents, last = dotted.split('.')
    node = data
    for p in parents:
        node = node[p]
    del node[last]
    path = _write(tmp_path, data)
    with pytest.raises(modules.ConfigError) as e:
        _load_and_build(path)
    assert path in str(e.value) and last in str(e.value), str(e.value)


def test_config_with_both_family_markers(tmp_path):
    data = _official('fomm/vox-256')
    data['model_params']['common_params']['num_tps'] = 10
    path = _write(tmp_path, data)
    with pytest.raises(modules.ConfigError) as e:
        loading.load_config(path)
    assert path in str(e.value) and 'num_kp' in str(e.value) and 'num_tps' in str(e.value)


def test_config_dense_motion_occlusion_clash_names_the_right_section(tmp_path):
    data = _official('fomm/vox-256')
    data['model_params']['generator_params']['dense_motion_params']['estimate_occlusion_map'] = True
    path = _write(tmp_path, data)
    with pytest.raises(modules.ConfigError) as e:
        _load_and_build(path)
    msg = str(e.value)
    assert path in msg and 'estimate_occlusion_map' in msg
    assert 'common_params' not in msg, msg


def test_config_invalid_yaml(tmp_path):
    path = _write(tmp_path, 'model_params:\n  common_params: {num_kp: 10\n  generator_params: [1, 2\n')
    with pytest.raises(modules.ConfigError) as e:
        loading.load_config(path)
    assert path in str(e.value)


def test_config_not_a_mapping(tmp_path):
    path = _write(tmp_path, '- just\n- a list\n')
    with pytest.raises(modules.ConfigError) as e:
        loading.load_config(path)
    assert path in str(e.value)


def test_config_missing_file(tmp_path):
    path = str(tmp_path / 'nope.yaml')
    with pytest.raises(modules.ConfigError) as e:
        loading.load_config(path)
    assert path in str(e.value)


@pytest.mark.parametrize('path', OFFICIAL_CONFIGS, ids=config_id)
def test_official_configs_load_cleanly(path):
    config = loading.load_config(str(path))
    assert config.path == str(path)
    assert modules.family_of_config(config).name == path.parent.name


def test_perceptual_loss_skips_zero_weighted_vgg_layers(random_vgg):
    # weights [1, 1, 0, 0, 0]: only relu1_1 and relu2_1 are computed, and the loss is the one
    # the full five-layer pass gives
    config = tiny_config('tiny/fomm')
    tp = config['train_params']
    tp['loss_weights']['perceptual'] = [1.0, 2.0, 0, 0, 0]
    full = GeneratorFullModel(modules.build_models(config), tp, vgg=random_vgg)
    images = random_images(2, 64, seed=3)
    calls = []
    hook = random_vgg.features[7].register_forward_hook(lambda *a: calls.append(1))   # first layer of slice 3
    try:
        losses, pyr_real, pyr_gen = full.perceptual(images[:1], images[1:])
    finally:
        hook.remove()
    assert not calls
    everything = L.perceptual_pyramid_loss(random_vgg, pyr_real, pyr_gen, full.scales, [1.0, 2.0, 0, 0, 0])
    assert torch.equal(losses['perceptual'], everything)
    assert len(random_vgg(images[:1])) == 5 and len(random_vgg(images[:1], depth=2)) == 2


def test_checkpoint_description_reads_the_config_back():
    # the one-line diagnosis of a checkpoint that does not fit states the sizes it was made with
    from loading.checkpoint import describe_size
    config = tiny_config('tiny/fomm')
    models = modules.build_models(config)
    ckpt = {k: m.state_dict() for k, m in models.items()}
    kp = config['model_params']['kp_detector_params']
    num_kp = config['model_params']['common_params']['num_kp']
    assert describe_size(ckpt) == (f"FOMM, num_kp={num_kp}, with jacobians, "
                                   f"kp block_expansion={kp['block_expansion']}")
    tps = {k: m.state_dict() for k, m in modules.build_models(tiny_config('tiny/tps')).items()}
    assert describe_size(tps) == 'TPSMM, num_tps=2, with bg_predictor and avd_network'
    del tps['bg_predictor'], tps['avd_network']
    assert describe_size(tps) == 'TPSMM, num_tps=2, with neither bg_predictor nor avd_network'



@pytest.mark.parametrize('name', ['tiny/fomm', 'tiny/tps'])
def test_networks_from_a_checkpoint_are_built_without_random_init(tmp_path, name):
    """Built on the meta device, the networks take the checkpoint's tensors: the same state as
    building and loading, nothing left on meta, float32 whatever the file held, parameters still
    trainable. A network the checkpoint lacks (TPSMM's AVD) is built the usual way."""
    from loading.checkpoint import load_models, networks_from_checkpoint
    config = tiny_config(name)
    torch.manual_seed(0)
    saved = modules.build_models(config)
    state = {k: m.state_dict() for k, m in saved.items()}
    if name == 'tiny/tps':
        del state['avd_network']
    state['kp_detector'] = {k: v.half() if v.is_floating_point() else v for k, v in state['kp_detector'].items()}
    path = str(tmp_path / 'model.pth.tar')
    torch.save(state, path)
    torch.manual_seed(1)       # another random init: only the checkpoint can make the two agree
    expected = modules.build_models(config, without=('discriminator',))
    load_models(path, expected, config)
    models, ckpt = networks_from_checkpoint(config, path)
    assert set(models) == set(expected) and 'discriminator' not in models
    for key, model in models.items():
        assert not any(t.is_meta for t in (*model.parameters(), *model.buffers())), key
        assert all(p.dtype == torch.float32 and p.requires_grad for p in model.parameters()), key
        if key in ckpt:
            mine, theirs = model.state_dict(), expected[key].state_dict()
            assert mine.keys() == theirs.keys()
            for k in mine:
                torch.testing.assert_close(mine[k], theirs[k], rtol=0, atol=0, check_dtype=False, msg=f'{key}.{k}')
    if name == 'tiny/tps':
        kp = {'fg_kp': torch.rand(1, 10, 2) * 2 - 1}
        assert torch.isfinite(models['avd_network'].eval()(kp, kp)['fg_kp']).all()


def test_random_vgg_is_one_fixed_function_whatever_the_global_seed():
    # `vgg19_weights: random` defines the loss: two ranks (seeded seed + rank) or two runs must
    # optimise the same one, and building it must not shift the global random stream
    torch.manual_seed(1)
    a = Vgg19.from_setting('random')
    after_a = torch.rand(3)
    torch.manual_seed(2)
    b = Vgg19.from_setting('random')
    torch.manual_seed(1)
    assert torch.equal(torch.rand(3), after_a)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(pa, pb), name
    torch.manual_seed(2)
    assert not torch.equal(Vgg19(pretrained=False).features[0].weight, a.features[0].weight)


@pytest.mark.parametrize('backbone, problem', [('resnet19', 'unknown torchvision model'),
                                               ('mobilenet_v3_small', 'does not end in an `fc` layer')])
def test_config_tps_backbone_that_cannot_regress_keypoints(tmp_path, backbone, problem):
    data = _official('tps/vox-256')
    data['model_params']['kp_detector_params'] = {'backbone': backbone}
    path = _write(tmp_path, data)
    with pytest.raises(modules.ConfigError) as e:
        _load_and_build(path)
    msg = str(e.value)
    assert path in msg and 'kp_detector_params.backbone' in msg and problem in msg, msg


def test_tps_backbone_option_keeps_the_official_layout_by_default():
    # no kp_detector_params: the paper's ResNet-18 under the official key names; another
    # backbone regresses the same keypoints under the same `fg_encoder` prefix
    config = tiny_config('tiny/tps')
    default = modules.build_models(config)['kp_detector']
    assert isinstance(default.fg_encoder, torchvision.models.ResNet) and len(default.fg_encoder.layer1) == 2
    config['model_params']['kp_detector_params'] = {'backbone': 'shufflenet_v2_x0_5'}
    small = modules.build_models(config)['kp_detector']
    assert isinstance(small.fg_encoder, torchvision.models.ShuffleNetV2)
    assert 'fg_encoder.fc.weight' in small.state_dict()
    kp = small.eval()(random_images(2, 64, seed=0))['fg_kp']
    assert kp.shape == (2, 5 * config['model_params']['common_params']['num_tps'], 2)
    assert kp.abs().max() <= 1


def test_each_family_subsamples_as_its_reference():
    """FOMM's current code slices every 1/scale-th pixel (size rounded up); TPSMM calls nearest
    interpolate (rounded down). Visible only when a size is not a multiple of 1/scale."""
    from modules import build_models
    fomm = build_models(tiny_config('tiny/fomm'))          # kp detector and dense motion at 0.5
    tps = build_models(tiny_config('tiny/tps'))            # dense motion at 0.25
    assert fomm['kp_detector'].down(torch.rand(1, 3, 33, 33)).shape[-1] == 17
    assert fomm['generator'].dense_motion_network.down(torch.rand(1, 3, 33, 33)).shape[-1] == 17
    assert tps['dense_motion_network'].down(torch.rand(1, 3, 66, 66)).shape[-1] == 16
    from modules.model import FommGeneratorFullModel, TpsGeneratorFullModel
    for full, size in ((FommGeneratorFullModel, 17), (TpsGeneratorFullModel, 16)):
        pyramid = ImagePyramide([0.5], 3, full.nearest_resize)
        assert pyramid(torch.rand(1, 3, 33, 33))['prediction_0.5'].shape[-1] == size
