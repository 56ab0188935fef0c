"""animate.Animator, the Python API: keypoint normalisation options and what it accepts."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch
import yaml

from conftest import TINY_FOMM, tiny_config


@pytest.fixture(scope='module')
def fomm_models():
    import modules
    torch.manual_seed(0)
    models = modules.build_models(tiny_config('tiny/fomm'))
    with torch.no_grad():          # jacobians away from the identity they start at
        models['kp_detector'].jacobian.weight.normal_(0, 0.05)
    return models


def _frames(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random((n, 64, 64, 3), dtype=np.float32)


def test_relative_jacobian_can_be_turned_off(fomm_models):
    from animate import Animator
    animator = Animator(TINY_FOMM, fomm_models, 'cpu')
    source, driving = _frames(1, 0)[0], torch.from_numpy(_frames(3, 1)).permute(0, 3, 1, 2)
    outs = {}
    for relative_jacobian in (True, False):
        state = animator.prepare(source, driving[0].permute(1, 2, 0).numpy(), 'relative', False, relative_jacobian)
        outs[relative_jacobian] = animator.animate_batch(state, driving, full=True)
    raw, on, off = outs[False]['kp_driving'], outs[True]['kp_norm'], outs[False]['kp_norm']
    torch.testing.assert_close(off['jacobian'], raw['jacobian'])                  # the driving jacobians
    torch.testing.assert_close(on['value'], off['value'])                         # positions still relative
    assert (on['jacobian'] - off['jacobian']).abs().max() > 1e-3
    assert (outs[True]['prediction'] - outs[False]['prediction']).abs().max() > 1e-6


@pytest.mark.parametrize('given, expected', [({'use_relative_movement': True, 'use_relative_jacobian': True}, True),
                                             ({'use_relative_movement': True, 'use_relative_jacobian': False}, False),
                                             ({'use_relative_movement': True}, False)])
def test_animate_mode_reads_use_relative_jacobian(tmp_path, monkeypatch, fomm_models, given, expected):
    """run.py --mode animate passes normalization_params as the reference's normalize_kp(**params)
    reads them: a key that is absent means False."""
    import animate
    import run
    from synthetic import data as synthetic_data
    data = tmp_path / 'data'
    synthetic_data.generate_dataset(str(data), size=64, num_ids=2, videos_per_id=1, frames=3, test_ids=1, seed=0,
                                    progress=False)
    config = yaml.safe_load(yaml.safe_dump(dict(TINY_FOMM)))
    config['dataset_params'] = {'root_dir': str(data), 'frame_shape': [64, 64, 3]}
    config['animate_params'] = {'num_pairs': 1, 'format': '.mp4', 'normalization_params': given}
    (tmp_path / 'c.yaml').write_text(yaml.safe_dump(config))
    torch.save({k: m.state_dict() for k, m in fomm_models.items()}, tmp_path / 'k.pth.tar')
    seen = []
    prepare = animate.Animator.prepare

    def spy(self, source, initial, mode, adapt_scale, relative_jacobian=True, **options):
        seen.append((mode, relative_jacobian))
        return prepare(self, source, initial, mode, adapt_scale, relative_jacobian, **options)
    monkeypatch.setattr(animate.Animator, 'prepare', spy)
    assert run.main(['--config', str(tmp_path / 'c.yaml'), '--mode', 'animate', '--checkpoint',
                     str(tmp_path / 'k.pth.tar'), '--log_dir', str(tmp_path / 'log')]) == 0
    assert seen == [('relative', expected)]
    (run_dir,) = os.listdir(tmp_path / 'log')
    assert os.listdir(tmp_path / 'log' / run_dir / 'animation')


@pytest.fixture(scope='module')
def tps_animator():
    import modules
    from animate import Animator
    from conftest import TINY_TPS
    torch.manual_seed(1)
    animator = Animator(TINY_TPS, modules.build_models(tiny_config('tiny/tps')), 'cpu')
    animator.frame_size = (64, 64)      # TINY_TPS has frame_shape null (so 256x256 by default)
    return animator


def _animate(animator, source, driving, **kw):
    return np.concatenate(list(animator.animate(source, [driving[:2], driving[2:]], mode='relative', **kw)))


def test_api_accepts_uint8_and_float_alike(tps_animator):
    rng = np.random.default_rng(3)
    source8, driving8 = rng.integers(0, 256, (64, 64, 3), np.uint8), rng.integers(0, 256, (3, 64, 64, 3), np.uint8)
    from_uint8 = _animate(tps_animator, source8, driving8)
    from_float = _animate(tps_animator, source8 / np.float32(255), driving8 / np.float32(255))
    assert from_uint8.shape == (3, 64, 64, 3) and from_uint8.dtype == np.float32
    np.testing.assert_allclose(from_uint8, from_float, atol=1e-5)


def test_api_resizes_any_size_as_the_cli(tps_animator):
    from media import resize_frame, resize_frames
    rng = np.random.default_rng(4)
    source, driving = rng.random((150, 120, 3), np.float32), rng.random((3, 90, 110, 3), np.float32)
    big = _animate(tps_animator, source, driving)
    small = _animate(tps_animator, resize_frame(source, (64, 64)), resize_frames(driving, (64, 64)))
    assert big.shape == (3, 64, 64, 3)
    np.testing.assert_allclose(big, small, atol=1e-5)
    assert _animate(tps_animator, source, driving, size=(128, 128)).shape == (3, 128, 128, 3)


@pytest.mark.parametrize('source, message', [
    (np.full((64, 64, 3), 200.0, np.float32), 'float frames must lie in \\[0, 1\\]'),
    (np.zeros((3, 64, 64), np.float32), 'channels last'),
    (np.zeros((64, 64, 3), np.int64), 'unsupported dtype'),
])
def test_api_says_what_it_was_given(tps_animator, source, message):
    with pytest.raises(ValueError, match=message):
        _animate(tps_animator, source, np.zeros((3, 64, 64, 3), np.float32))


def test_mode_outputs_are_named_without_the_videos_extension(tmp_path, fomm_models, capsys):
    """Reconstruction wrote 'x.mp4.mp4' for a video 'x.mp4'; animate mode wrote silently."""
    import run
    from synthetic import data as synthetic_data
    data = tmp_path / 'data'
    synthetic_data.generate_dataset(str(data), size=64, num_ids=2, videos_per_id=1, frames=3, test_ids=1, seed=0,
                                    progress=False, fmt='mp4')
    config = yaml.safe_load(yaml.safe_dump(dict(TINY_FOMM)))
    config['dataset_params'] = {'root_dir': str(data), 'frame_shape': [64, 64, 3]}
    config['reconstruction_params'] = {'num_videos': 1, 'format': '.mp4', 'face_metrics': False}
    config['animate_params'] = {'num_pairs': 1, 'format': '.gif', 'normalization_params': {}}
    (tmp_path / 'c.yaml').write_text(yaml.safe_dump(config))
    torch.save({k: m.state_dict() for k, m in fomm_models.items()}, tmp_path / 'k.pth.tar')
    (video,) = os.listdir(data / 'test')
    assert video.endswith('.mp4')
    stem = video[:-len('.mp4')]
    for mode in ('reconstruction', 'animate'):
        assert run.main(['--config', str(tmp_path / 'c.yaml'), '--mode', mode, '--checkpoint',
                         str(tmp_path / 'k.pth.tar'), '--log_dir', str(tmp_path / mode)]) == 0
    (rec,) = os.listdir(tmp_path / 'reconstruction')
    assert sorted(os.listdir(tmp_path / 'reconstruction' / rec / 'reconstruction')) == \
        sorted(['metrics.json', 'png', f'{stem}.mp4'])
    (anim,) = os.listdir(tmp_path / 'animate')
    out_dir = tmp_path / 'animate' / anim / 'animation'
    assert sorted(os.listdir(out_dir)) == [f'{stem}-{stem}.gif', 'png']
    assert os.listdir(out_dir / 'png') == [f'{stem}-{stem}.png']            # the strip, as the reference writes
    assert f'to {out_dir}' in capsys.readouterr().out
