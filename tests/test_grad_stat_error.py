"""The gradient-statistics comparison the parity tests use (conftest.grad_stat_error).

It must tell a wrong gradient from float32 rounding noise; these cases pin both sides.
"""
import math

import torch

from conftest import grad_noise_floors, grad_stat_error

TOL = 2e-3


def stats(g: torch.Tensor) -> torch.Tensor:
    return torch.stack([g.double().norm(), g.double().sum()])


def test_same_gradient_and_rounding_noise_pass():
    g = torch.randn(64, 32, 3, 3, generator=torch.Generator().manual_seed(0))
    assert grad_stat_error(g, stats(g), g.shape, 1e-6) == 0.0
    noisy = g * (1 + 1e-6 * torch.randn(g.shape, generator=torch.Generator().manual_seed(1)))
    assert grad_stat_error(noisy, stats(g), g.shape, 1e-6) < TOL


def test_cancelling_sum_is_measured_against_the_gradients_size():
    # weights feeding a softmax over channels: each column sums to zero, so the total is ~0 and
    # float32 leaves a residue that differs between machines
    g = torch.randn(4, 36, 7, 7, generator=torch.Generator().manual_seed(0))
    g = g - g.mean(dim=0, keepdim=True)
    expected = stats(g)
    expected[1] = -6.1e-5         # another machine's residue
    assert grad_stat_error(g, expected, g.shape, 1e-6) < TOL


def test_scaled_offset_or_missing_gradient_fails():
    g = torch.randn(256, generator=torch.Generator().manual_seed(0))
    rms = g.norm().item() / math.sqrt(g.numel())
    assert grad_stat_error(g * 1.01, stats(g), g.shape, 1e-6) > TOL            # 1% too large
    assert grad_stat_error(g + 0.01 * rms, stats(g), g.shape, 1e-6) > TOL      # offset: the sum moves
    assert grad_stat_error(None, stats(g), g.shape, 1e-6) > TOL                # no gradient at all


def test_true_zero_gradients_compare_as_noise_and_nan_means_none():
    floors = grad_noise_floors({'net.conv.weight': torch.tensor([40.0, 1.0]),
                                'net.conv.bias': torch.tensor([3e-6, -6e-6]),
                                'other.w': torch.tensor([2.0, 0.5])})
    assert floors == {'net': 40.0 * 1e-5, 'other': 2.0 * 1e-5}
    bias_noise = torch.full((16,), 2e-7)
    assert grad_stat_error(bias_noise, torch.tensor([3e-6, -6e-6]), (16,), floors['net']) == 0.0
    real = torch.full((16,), 1e-3)    # a bias ahead of a BatchNorm must not learn
    assert grad_stat_error(real, torch.tensor([3e-6, -6e-6]), (16,), floors['net']) == math.inf
    nan = torch.tensor([math.nan, math.nan])
    assert grad_stat_error(None, nan, (16,), 0.0) == 0.0
    assert grad_stat_error(torch.zeros(16), nan, (16,), 0.0) == 0.0
    assert grad_stat_error(real, nan, (16,), 0.0) == math.inf
