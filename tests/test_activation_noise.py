"""Activation perturbation: off in eval, and in training drawn from the configured distribution."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

from robustbench_norm.errors import RobustBenchError
from robustbench_norm.norms import make_norm
from robustbench_norm.training.activation_noise import ActivationNoise, attach_activation_noise
from robustbench_norm.training.models import build_model


def probe(
    noise: ActivationNoise, shape=(16, 1024, 16, 16), layout=torch.contiguous_format
) -> tuple[nn.Module, torch.Tensor]:
    """An identity 'norm' with the noise hooked after it: zeros in → the noise itself out."""
    model = nn.Sequential(make_norm("none", shape[1]))
    attach_activation_noise(model, noise)
    return model, torch.zeros(shape).contiguous(memory_format=layout)


def test_no_effect_in_eval_mode():
    model = build_model("resnet20", "bn", 10, 1, width=4)
    x = torch.rand(4, 1, 32, 32)
    model.eval()
    clean = model(x)
    handles = attach_activation_noise(model, ActivationNoise(mode="time_varying"))
    assert len(handles) == 19  # one after every norm layer
    torch.testing.assert_close(model(x), clean, rtol=0, atol=0)


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_time_varying_noise_has_the_configured_per_channel_distribution(layout):
    """channels_last runs draw the noise in their own memory order (a faster path): the
    distribution must be the same, and the output must keep the activations' layout."""
    torch.manual_seed(0)
    noise = ActivationNoise(mode="time_varying", mean_range=0.5, std_low=0.2, std_high=0.6)
    model, zeros = probe(noise, layout=layout)
    out = model.train()(zeros)
    assert out.is_contiguous(memory_format=layout)
    per_channel = out.transpose(0, 1).reshape(1024, -1)
    mu, sigma = per_channel.mean(1).numpy(), per_channel.std(1).numpy()
    # 4096 draws per channel: the channel's μ and σ are recovered to ~0.01
    assert np.abs(mu).max() < 0.5 + 0.03
    assert sigma.min() > 0.2 - 0.02 and sigma.max() < 0.6 + 0.02
    # μ_c ~ U(−0.5, 0.5) and σ_c ~ U(0.2, 0.6); a normal μ_c or a fixed σ would fail these
    assert stats.kstest(mu, stats.uniform(-0.5, 1.0).cdf).pvalue > 1e-3
    assert stats.kstest(sigma, stats.uniform(0.2, 0.4).cdf).pvalue > 1e-3
    assert stats.kstest(mu, stats.norm(0, 0.29).cdf).pvalue < 1e-3
    # within a channel, the noise is Gaussian around its μ_c
    z = (per_channel[0] - mu[0]) / sigma[0]
    assert stats.kstest(z.numpy(), "norm").pvalue > 1e-3


def test_time_varying_distribution_is_redrawn_every_step():
    torch.manual_seed(1)
    model, zeros = probe(ActivationNoise(mode="time_varying"), shape=(8, 512, 8, 8))
    first = model.train()(zeros).mean((0, 2, 3))
    second = model(zeros).mean((0, 2, 3))
    assert abs(np.corrcoef(first.numpy(), second.numpy())[0, 1]) < 0.2


def test_shared_shift_is_one_gaussian_shift_per_sample_and_group():
    torch.manual_seed(2)
    model, zeros = probe(ActivationNoise(mode="shared_shift", shift_std=0.7, groups=4),
                         shape=(256, 16, 4, 4))  # fmt: skip
    out = model.train()(zeros).reshape(256, 4, 4 * 16)
    spread = out - out[..., :1]
    assert torch.equal(spread, torch.zeros_like(spread))  # constant within (sample, group)
    shifts = out[..., 0].flatten().numpy()
    assert stats.kstest(shifts / 0.7, "norm").pvalue > 1e-3


def test_bad_perturbation_settings_are_named():
    with pytest.raises(RobustBenchError, match="perturbation.mode='loud'"):
        ActivationNoise(mode="loud")
    with pytest.raises(RobustBenchError, match="std_low <= std_high"):
        ActivationNoise(mode="time_varying", std_low=2.0, std_high=1.0)
