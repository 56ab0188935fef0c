"""CUDA-only checks (benchmarks/device_check.sh runs them first on a GPU machine); they skip on
the CPU. Each compares a CUDA path with the CPU's output."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from conftest import NO_PARITY, PARITY_DIR

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU')


@pytest.fixture
def fixture_model():
    from modules import build_models
    from loading import load_config
    if not PARITY_DIR.is_dir():
        pytest.skip(NO_PARITY)
    name = PARITY_DIR / 'fomm-public'
    config = load_config(f'{name}.yaml')
    models = build_models(config)
    checkpoint = torch.load(f'{name}.pth.tar', map_location='cpu', weights_only=True)
    for key, net in models.items():
        net.load_state_dict(checkpoint[key])
    fixture = torch.load(f'{name}.fixture.pt', map_location='cpu', weights_only=True)
    return config, models, fixture


def animate(config, models, device, precision, fixture, **options):
    from animate import Animator
    animator = Animator(config, copy.deepcopy(models), device, precision, **options)
    source, driving = (fixture['inputs'][k].permute(0, 2, 3, 1).numpy() for k in ('source', 'driving'))
    return np.concatenate(list(animator.animate(source[0], [driving], mode='relative', adapt_scale=True)))


@pytest.mark.parametrize('precision', ['fp32', 'bf16', 'fp16'])
def test_cuda_animation_follows_the_cpu(fixture_model, precision):
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    cpu = animate(*fixture_model[:2], 'cpu', 'fp32', fixture_model[2])
    gpu = animate(*fixture_model[:2], 'cuda', precision, fixture_model[2])
    if precision == 'fp32':
        assert np.abs(gpu - cpu).max() <= 1e-4
    else:
        assert 10 * np.log10(1 / np.mean((gpu - cpu) ** 2)) >= 30


def test_cuda_compile_equals_eager(fixture_model):
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    eager = animate(*fixture_model[:2], 'cuda', 'fp32', fixture_model[2])
    compiled = animate(*fixture_model[:2], 'cuda', 'fp32', fixture_model[2], compile=True)
    assert np.abs(compiled - eager).max() <= 1e-4
