"""`make demo`'s path with the bundled model: the motion of the driving clip is transferred.

The bundled checkpoint (checkpoints/synthetic-fomm-64.pth.tar) was trained on the synthetic
data set; the sample is a held-out identity generated on the fly. Motion transfer is measured
with the model's own keypoint detector: the result's keypoints must follow the driving frames'
keypoints (relative to the first frame) better than the static source's keypoints do.
"""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch

import demo
from animate import Animator, to_tensor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHECKPOINT = os.path.join(ROOT, 'checkpoints', 'synthetic-fomm-64.pth.tar')
CONFIG = os.path.join(ROOT, 'config', 'synthetic', 'fomm-64.yaml')


@pytest.fixture(scope='module')
def animator():
    if not os.path.isfile(CHECKPOINT):
        pytest.fail(f'bundled example checkpoint missing: {CHECKPOINT}')
    return Animator.from_files(CONFIG, CHECKPOINT)


def test_example_transfers_motion(animator):
    torch.manual_seed(0)
    source, driving = demo.example_inputs(num_frames=16)
    source = source.astype(np.float32) / 255
    driving = driving.astype(np.float32) / 255
    result = np.concatenate(list(animator.animate(source, [driving[:8], driving[8:]], mode='relative')))
    assert result.shape == driving.shape

    kp = lambda frames: animator.keypoints(to_tensor(frames, 'cpu'))['value'].numpy()   # noqa: E731
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
