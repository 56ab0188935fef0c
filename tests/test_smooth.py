"""--smooth: the causal One-Euro filter on the driving keypoints (modules/temporal_filter.py),
alone and inside the animation (animate.Animator, demo.py, animate_photo).

The animation tests use the tiny parity models (../shared/parity, 64x64) on short generated
clips, so each takes about a second."""
from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from modules.temporal_filter import KeypointSmoother, OneEuroFilter, OneEuroParams, smoothing_params  # noqa: E402

from conftest import PARITY_FOMM as FOMM, PARITY_TPS as TPS  # noqa: E402
from conftest import PARITY_DIR as PARITY  # noqa: E402
SIZE = 64


def jitter(track) -> float:
    track = np.asarray(track, dtype=np.float64)
    return float(np.abs(track[2:] - 2 * track[1:-1] + track[:-2]).mean())


def run_filter(params: OneEuroParams, x: torch.Tensor, fps: float = 25.0, point_dims: int = 1) -> torch.Tensor:
    flt = OneEuroFilter(params, point_dims)
    return torch.stack([flt(frame, i / fps) for i, frame in enumerate(x)])


# ----------------------------------------------------------------------------------------------
# The filter
# ----------------------------------------------------------------------------------------------

def test_constant_signal_comes_back_unchanged():
    x = torch.tensor([[0.3, -0.7], [0.1, 0.9]]).expand(50, 2, 2)       # (T, K, 2)
    torch.testing.assert_close(run_filter(OneEuroParams(), x), x, rtol=0, atol=1e-7)


@pytest.mark.parametrize('speed', [0.05, 0.5, 2.0])
def test_ramp_is_followed_with_a_bounded_settled_lag(speed):
    """A keypoint moving at a constant speed: the filtered track settles to a constant delay,
    no more than the delay of the slowest (min_cutoff) exponential average, fps / (2 pi fc)."""
    params, fps = OneEuroParams(min_cutoff=1.0, beta=5.0), 25.0
    t = torch.arange(200, dtype=torch.float64) / fps
    x = torch.stack([speed * t - 1, torch.zeros_like(t)], dim=-1)[:, None]    # (T, 1, 2)
    y = run_filter(params, x, fps)
    lag = (x - y)[:, 0, 0] / (speed / fps)                                    # frames behind
    assert torch.all(y[1:, 0, 0] > y[:-1, 0, 0]), 'the filtered track moves the same way'
    assert abs(lag[-1] - lag[-20]) < 1e-3, f'the lag has not settled: {lag[-20]:.4f} then {lag[-1]:.4f}'
    bound = fps / (2 * math.pi * params.min_cutoff)
    assert 0 < lag[-1] < bound, f'lag {lag[-1]:.2f} frames, bound {bound:.2f}'
    assert y[:, 0, 1].abs().max() == 0, 'the still coordinate stays still'


def test_faster_motion_lags_less_and_beta_zero_is_a_plain_average():
    def settled_lag(params, speed, fps=25.0):
        t = torch.arange(300, dtype=torch.float64) / fps
        x = torch.stack([speed * t, torch.zeros_like(t)], dim=-1)[:, None]
        return float((x - run_filter(params, x, fps))[-1, 0, 0] / (speed / fps))

    lags = [settled_lag(OneEuroParams(), v) for v in (0.1, 0.5, 2.0)]
    assert lags[0] > lags[1] > lags[2]
    # beta 0: an exponential average with alpha = 1 / (1 + 25 / (2 pi)), whose lag is (1 - alpha) / alpha
    plain = settled_lag(OneEuroParams(beta=0.0), 0.5)
    assert plain == pytest.approx(25 / (2 * math.pi), rel=1e-4)


def test_noisy_input_loses_most_of_its_jitter_with_the_defaults():
    noise = torch.from_numpy(np.random.default_rng(0).normal(0, 0.01, (200, 10, 2)))
    smoothed = run_filter(OneEuroParams(), noise)
    assert jitter(smoothed) < 0.4 * jitter(noise), (jitter(smoothed), jitter(noise))
    assert jitter(run_filter(OneEuroParams(min_cutoff=0.5), noise)) < jitter(smoothed), 'lower cutoff: smoother'


def test_frame_rate_sets_the_time_scale():
    """The same motion sampled at 50 fps instead of 25 lags the same time (twice the frames):
    1 / (2 pi fc) seconds, fc = min_cutoff + beta * speed."""
    def lag_seconds(fps):
        t = torch.arange(int(8 * fps), dtype=torch.float64) / fps
        x = torch.stack([0.5 * t, torch.zeros_like(t)], dim=-1)[:, None]
        return float((x - run_filter(OneEuroParams(), x, fps))[-1, 0, 0] / 0.5)

    expected = 1 / (2 * math.pi * (1.0 + 5.0 * 0.5))
    assert lag_seconds(50.0) == pytest.approx(expected, rel=1e-3)
    assert lag_seconds(25.0) == pytest.approx(expected, rel=1e-3)


def test_speed_is_per_keypoint_so_direction_does_not_matter():
    t = torch.arange(60, dtype=torch.float64) / 25
    along_x = torch.stack([0.5 * t, 0 * t], dim=-1)[:, None]
    diagonal = torch.stack([0.5 * t, 0.5 * t], dim=-1)[:, None] / math.sqrt(2)
    a, b = run_filter(OneEuroParams(), along_x), run_filter(OneEuroParams(), diagonal)
    torch.testing.assert_close(b[:, 0, 0] * math.sqrt(2), a[:, 0, 0])


def keypoint_stream(frames: int = 23, jacobians: bool = True, seed: int = 0) -> dict:
    """Still keypoints (and jacobians) with noise of sd 0.01, as (frames, 10, ...) tensors."""
    g = torch.Generator().manual_seed(seed)
    kp = {'value': torch.rand(1, 10, 2, generator=g) * 2 - 1 + 0.01 * torch.randn(frames, 10, 2, generator=g)}
    if jacobians:
        kp['jacobian'] = torch.eye(2) + 0.01 * torch.randn(frames, 10, 2, 2, generator=g)
    return kp


@pytest.mark.parametrize('sizes', [[1] * 23, [4] * 5 + [3], [23], [7, 1, 15]])
def test_batches_give_the_frame_by_frame_result(sizes):
    kp = keypoint_stream()
    one = KeypointSmoother(OneEuroParams(), 25)
    per_frame = [one({k: v[i:i + 1] for k, v in kp.items()}) for i in range(23)]
    expected = {k: torch.cat([f[k] for f in per_frame]) for k in kp}
    smoother, start, got = KeypointSmoother(OneEuroParams(), 25), 0, []
    for size in sizes:
        got.append(smoother({k: v[start:start + size] for k, v in kp.items()}))
        start += size
    for key in kp:
        assert torch.equal(torch.cat([g[key] for g in got]), expected[key]), key
    assert torch.equal(expected['value'][0], kp['value'][0]), 'the first frame comes out as it went in'


def test_jacobians_are_smoothed_too_and_other_entries_pass_through():
    kp = keypoint_stream()
    kp['extra'] = torch.arange(23.0)
    out = KeypointSmoother(OneEuroParams(), 25)(kp)
    for key in ('value', 'jacobian'):
        assert jitter(out[key]) < 0.5 * jitter(kp[key]), key
    assert out['extra'] is kp['extra']


def test_frame_times_can_be_given():
    """The app's Live tab passes camera frames' own times: a frame twice as late moves further."""
    kp = keypoint_stream(3, jacobians=False)
    regular = KeypointSmoother(OneEuroParams(), 25)(kp)
    late = KeypointSmoother(OneEuroParams(), 25)(kp, times=[0.0, 0.04, 0.2])
    assert torch.equal(regular['value'][:2], late['value'][:2])
    assert (late['value'][2] - kp['value'][2]).abs().sum() < (regular['value'][2] - kp['value'][2]).abs().sum()
    with pytest.raises(ValueError, match='increase'):
        KeypointSmoother(OneEuroParams(), 25)(kp, times=[0.0, 0.0, 0.1])


def test_numpy_arrays_are_filtered_as_tensors_are():
    """ONNX Runtime alone hands numpy arrays (docs/cpu-inference.md)."""
    kp = keypoint_stream()
    as_tensors = KeypointSmoother(OneEuroParams(), 25)(kp)
    as_arrays = KeypointSmoother(OneEuroParams(), 25)({k: v.numpy() for k, v in kp.items()})
    for key in kp:
        assert isinstance(as_arrays[key], np.ndarray) and as_arrays[key].dtype == np.float32
        np.testing.assert_allclose(as_arrays[key], as_tensors[key].numpy(), atol=1e-6)


@pytest.mark.parametrize('bad', [dict(min_cutoff=0), dict(beta=-1), dict(d_cutoff=float('nan'))])
def test_bad_parameters_say_which(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        OneEuroParams(**bad)


def test_smoothing_params_accepts_the_api_forms():
    assert smoothing_params(None) is None and smoothing_params(False) is None
    assert smoothing_params(True) == OneEuroParams()
    assert smoothing_params({'beta': 2.0}) == OneEuroParams(beta=2.0)
    with pytest.raises(ValueError):
        smoothing_params('yes')


# ----------------------------------------------------------------------------------------------
# Inside the animation: Animator, animate_photo, demo.py
# ----------------------------------------------------------------------------------------------

need_parity = pytest.mark.skipif(not PARITY.is_dir(), reason=f'the parity models are not at {PARITY} (../shared)')


pytestmark = pytest.mark.usefixtures('one_torch_thread')


def moving_clip(n: int = 9, size: int = SIZE, seed: int = 0) -> np.ndarray:
    """float32 (n, size, size, 3): a textured blob wandering over a gradient, with a little noise
    so that keypoints jitter."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    texture = rng.uniform(0, 1, (size // 8, size // 8, 3)).repeat(8, 0).repeat(8, 1)
    frames = []
    for t in range(n):
        cx, cy = 0.35 + 0.04 * t, 0.5 + 0.05 * np.sin(t)
        blob = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / 0.02)[..., None]
        frame = np.stack([x, y, 0.5 * (x + y)], axis=-1) * (1 - blob) + texture * blob
        frames.append(frame + rng.normal(0, 0.03, frame.shape))
    return np.clip(np.stack(frames), 0, 1).astype(np.float32)


_ANIMATORS: dict = {}


def animator_of(family: str, precision: str = 'fp32'):
    from animate import Animator
    if (family, precision) not in _ANIMATORS:
        config, checkpoint = FOMM if family == 'fomm' else TPS
        _ANIMATORS[family, precision] = Animator.from_files(str(config), str(checkpoint), precision=precision,
                                                            need_avd=family == 'tps')
    return _ANIMATORS[family, precision]


def animate_all(animator, clip: np.ndarray, batch: int, mode: str, **options) -> np.ndarray:
    source = moving_clip(12, seed=5)[-1]
    batches = (clip[i:i + batch] for i in range(0, len(clip), batch))
    return np.concatenate(list(animator.animate(source, batches, mode, size=(SIZE, SIZE), **options)))


@torch.no_grad()
def per_frame_with_filtered_keypoints(family: str, clip: np.ndarray, mode: str, fps: float) -> np.ndarray:
    """The networks called one frame at a time, each frame's driving keypoints put through a
    KeypointSmoother first (then moved onto the source as `mode` says): what --smooth means."""
    from animate import normalize_kp, to_tensor
    animator = animator_of(family)
    m = animator.models
    source = to_tensor(moving_clip(12, seed=5)[-1], 'cpu')
    kp_source = m['kp_detector'](source)
    kp_initial = m['kp_detector'](to_tensor(clip[0], 'cpu'))
    smoother, out = KeypointSmoother(OneEuroParams(), fps), []
    for frame in clip:
        kp_driving = smoother(m['kp_detector'](to_tensor(frame, 'cpu')))
        if mode == 'relative':
            kp_norm = normalize_kp(kp_source, kp_driving, kp_initial, adapt_movement_scale=family == 'tps',
                                   use_relative_movement=True, use_relative_jacobian=True)
        else:
            kp_norm = m['avd_network'](kp_source, kp_driving)
        if family == 'fomm':
            pred = m['generator'](source, kp_driving=kp_norm, kp_source=kp_source)['prediction']
        else:
            motion = m['dense_motion_network'](source_image=source, kp_driving=kp_norm, kp_source=kp_source,
                                               bg_param=None, dropout_flag=False)
            pred = m['inpainting_network'](source, motion)['prediction']
        out.append(pred[0].permute(1, 2, 0).clamp(0, 1).numpy())
    return np.stack(out)


@need_parity
@pytest.mark.parametrize('family, mode', [('fomm', 'relative'), ('tps', 'relative'), ('tps', 'avd')])
def test_smoothed_stream_is_the_networks_on_filtered_keypoints(family, mode):
    """FOMM: keypoints and jacobians filtered; TPSMM: keypoints, before AVD re-targets them."""
    clip = moving_clip()
    got = animate_all(animator_of(family), clip, 1, mode, smooth=True, fps=10)
    expected = per_frame_with_filtered_keypoints(family, clip, mode, fps=10)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    plain = animate_all(animator_of(family), clip, 1, mode)
    assert np.abs(got - plain).max() > 1e-3, 'smoothing changes the result'
    np.testing.assert_array_equal(got[0], plain[0])     # the first frame is as it was


@need_parity
@pytest.mark.parametrize('family', ['fomm', 'tps'])
def test_smoothing_is_deterministic_and_batch_size_does_not_change_it(family):
    """Batches give what batch 1 gives, up to what batching changes without smoothing (the
    networks round differently per batch size: TPSMM's results move by up to ~0.005 here); a
    filter run out of frame order would be off by far more."""
    clip = moving_clip()
    animator = animator_of(family)
    smooth = {b: animate_all(animator, clip, b, 'relative', smooth=True, fps=25) for b in (1, 3, 9)}
    plain = {b: animate_all(animator, clip, b, 'relative') for b in (1, 3, 9)}
    np.testing.assert_array_equal(animate_all(animator, clip, 3, 'relative', smooth=True, fps=25), smooth[3])
    assert np.abs(smooth[1] - plain[1]).max() > 1e-2, 'smoothing changes the result'
    for b in (3, 9):
        rounding = np.abs(plain[b] - plain[1]).max()
        assert np.abs(smooth[b] - smooth[1]).max() <= 2 * rounding + 1e-5, b


@need_parity
def test_off_by_default_is_the_unsmoothed_animation(monkeypatch):
    """Without `smooth` nothing is filtered: the result is the one of smooth=False, and the
    filter never runs."""
    import modules.temporal_filter as tf
    clip = moving_clip()
    animator = animator_of('fomm')
    off = animate_all(animator, clip, 4, 'relative', smooth=False)

    def never(*args, **kwargs):
        raise AssertionError('the filter ran although smoothing is off')
    monkeypatch.setattr(tf.KeypointSmoother, '__call__', never)
    np.testing.assert_array_equal(animate_all(animator, clip, 4, 'relative'), off)
    assert animator.prepare(clip[0], clip[0], 'relative', False)['smoother'] is None


@need_parity
def test_frame_rate_changes_the_smoothed_result():
    clip = moving_clip()
    slow = animate_all(animator_of('tps'), clip, 4, 'relative', smooth=True, fps=5)
    fast = animate_all(animator_of('tps'), clip, 4, 'relative', smooth=True, fps=50)
    assert np.abs(slow - fast).max() > 1e-3


@need_parity
def test_int8_with_smoothing_runs_in_frame_order_across_batches(tmp_path, monkeypatch):
    """int8 reads the first frames ahead to calibrate; the filter still sees each frame once, in
    order, whatever the batch size, and the result differs from batch 1's no more than int8's
    own batch rounding does without smoothing (a float32 difference between batch sizes can move
    a value across a step of the 8-bit grid)."""
    monkeypatch.setenv('KEYPOINT_ANIMATION_CACHE', str(tmp_path / 'cache'))
    from animate import Animator
    config, checkpoint = TPS
    clip = moving_clip()
    seen = []
    call = KeypointSmoother.__call__

    def record(self, kp, times=None):
        seen.append(self.frames)
        return call(self, kp, times)
    monkeypatch.setattr(KeypointSmoother, '__call__', record)
    smooth, plain = {}, {}
    for b in (1, 4):
        animator = Animator.from_files(str(config), str(checkpoint), precision='int8', calibration_frames=6)
        seen.clear()
        smooth[b] = animate_all(animator, clip, b, 'relative', smooth=True, fps=25)
        assert seen == list(range(0, len(clip), b)), f'batch {b}: filter calls started at frames {seen}'
        plain[b] = animate_all(animator, clip, b, 'relative')
    rounding = np.abs(plain[4] - plain[1]).max()
    assert np.abs(smooth[4] - smooth[1]).max() <= 2 * rounding + 1e-4
    effect, mean_rounding = np.abs(smooth[1] - plain[1]).mean(), np.abs(plain[4] - plain[1]).mean()
    assert effect > 3 * mean_rounding, f'smoothing changes the int8 result: {effect} against {mean_rounding}'


@need_parity
def test_animate_photo_passes_smoothing_through():
    from animate import animate_photo
    clip = (moving_clip() * 255).round().astype(np.uint8)
    photo = (moving_clip(12, seed=5)[-1] * 255).round().astype(np.uint8)
    kwargs = dict(crop=False, batch_size=4, fps=25.0)
    plain = np.concatenate(list(animate_photo(animator_of('tps'), photo, clip, **kwargs)))
    smooth = np.concatenate(list(animate_photo(animator_of('tps'), photo, clip, smooth=True, **kwargs)))
    assert plain.shape == smooth.shape and not np.array_equal(plain, smooth)


# demo.py

def write_clip(path: Path, clip: np.ndarray, fps: int = 10) -> str:
    from media import VideoWriter
    with VideoWriter(str(path), fps) as writer:
        writer.write((clip * 255).round().astype(np.uint8))
    return str(path)


def run_demo(capsys, tmp_path, name: str, *extra) -> tuple[int, np.ndarray | None, str, str]:
    import demo
    from PIL import Image
    from media import VideoReader
    source = tmp_path / 'source.png'
    if not source.exists():
        Image.fromarray((moving_clip(12, seed=5)[-1] * 255).round().astype(np.uint8)).save(source)
        write_clip(tmp_path / 'driving.mp4', moving_clip())
    config, checkpoint = FOMM
    result = str(tmp_path / name) + '/'                        # lossless PNG frames
    code = demo.main([str(a) for a in ('--config', config, '--checkpoint', checkpoint, '--source_image', source,
                                       '--driving_video', tmp_path / 'driving.mp4', '--result_video', result,
                                       '--cpu', '--relative', '--quiet', *extra)])
    out, err = capsys.readouterr()
    frames = np.stack(list(VideoReader(result))) if code == 0 else None
    return code, frames, out, err


@need_parity
def test_demo_smooth_differs_from_without_and_is_deterministic(capsys, tmp_path):
    code, plain, out, err = run_demo(capsys, tmp_path, 'plain', '--batch_size', 4)
    assert code == 0, err
    assert 'smoothed' not in out
    code, smooth, out, err = run_demo(capsys, tmp_path, 'smooth', '--smooth', '--batch_size', 4)
    assert code == 0, err
    assert 'fomm relative smoothed' in out
    assert smooth.shape == plain.shape and np.abs(smooth.astype(int) - plain).max() > 2
    _, again, _, _ = run_demo(capsys, tmp_path, 'again', '--smooth', '--batch_size', 4)
    np.testing.assert_array_equal(again, smooth)
    _, one, _, _ = run_demo(capsys, tmp_path, 'one', '--smooth', '--batch_size', 1)
    assert np.abs(one.astype(int) - smooth).max() <= 1
    # A parameter alone turns smoothing on; another value gives another result.
    _, beta, out, _ = run_demo(capsys, tmp_path, 'beta', '--smooth_beta', '0', '--batch_size', 4)
    assert 'smoothed' in out and not np.array_equal(beta, smooth)


@need_parity
@pytest.mark.parametrize('option, value', [('--smooth_min_cutoff', '0'), ('--smooth_beta', '-2'),
                                           ('--smooth_d_cutoff', 'nan')])
def test_demo_bad_smoothing_parameter_is_one_line(capsys, tmp_path, option, value):
    code, _, out, err = run_demo(capsys, tmp_path, 'bad', option, value)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and option in lines[0] and 'must be' in lines[0], err
    assert not (tmp_path / 'bad').exists()
