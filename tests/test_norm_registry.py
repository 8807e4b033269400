"""The registry: names, options, errors, third-party layers and whole-model conversion."""

from __future__ import annotations

import re

import pytest
import torch
import torchvision
from torch import nn

import robustbench_norm as rbn
from robustbench_norm.errors import NormInputError, RobustBenchError
from robustbench_norm.norms import norm_name, norm_options
from robustbench_norm.norms.registry import _REGISTRY

EXPECTED = {"bn", "gn", "gnplus", "ln", "in", "bgn", "cn", "evonorm_s0", "none"}


def test_available_lists_every_documented_layer():
    assert set(rbn.available()) >= EXPECTED
    assert rbn.available() == sorted(rbn.available())


def test_unknown_name_lists_the_valid_names():
    with pytest.raises(RobustBenchError, match="unknown norm 'batchnorm'") as e:
        rbn.make_norm("batchnorm", 16)
    for name in EXPECTED:
        assert name in str(e.value)


def test_unknown_option_is_named_with_the_valid_ones():
    with pytest.raises(RobustBenchError, match="no option 'group'.*valid options: groups"):
        rbn.make_norm("gn", 16, group=4)


def test_groups_not_dividing_channels_names_both_numbers():
    with pytest.raises(RobustBenchError, match="num_channels=24 is not divisible by groups=32"):
        rbn.make_norm("gn", 24)
    with pytest.raises(RobustBenchError, match="num_channels=10 is not divisible by groups=4"):
        rbn.make_norm("gnplus", 10, groups=4)


def test_auto_groups_takes_the_largest_divisor_not_above_32():
    assert rbn.make_norm("gn", 24, groups="auto").num_groups == 24
    assert rbn.make_norm("gn", 48, groups="auto").num_groups == 24
    assert rbn.make_norm("gnplus", 64, groups="auto").groups == 32
    assert rbn.make_norm("gn", 7, groups="auto").num_groups == 7


@pytest.mark.parametrize("bad", [0, -2, 2.5, "four", True])
def test_bad_groups_value_is_rejected(bad):
    with pytest.raises(RobustBenchError, match="groups="):
        rbn.make_norm("gn", 16, groups=bad)


@pytest.mark.parametrize("name", sorted(EXPECTED - {"none"}))
@pytest.mark.parametrize("shape", [(4, 16), (4, 16, 8), (2, 4, 16, 8, 8)])
def test_non_4d_input_error_shows_the_shape(name, shape):
    layer = rbn.make_norm(name, 16, **({"groups": 4} if name not in ("bn", "ln", "in") else {}))
    with pytest.raises(
        NormInputError,
        match=r"expects a 4-D input.*" + re.escape(str(tuple(shape))),
    ):
        layer(torch.randn(*shape))


def test_wrong_channel_count_is_named():
    with pytest.raises(NormInputError, match="built for 16 channels.*8 channels"):
        rbn.make_norm("gnplus", 16, groups=4)(torch.randn(2, 8, 4, 4))


def test_bad_gnplus_options_are_named():
    with pytest.raises(RobustBenchError, match="variant='serial'"):
        rbn.make_norm("gnplus", 16, variant="serial")
    with pytest.raises(RobustBenchError, match=r"lambda_init=1.0 must lie in \(0, 1\)"):
        rbn.make_norm("gnplus", 16, lambda_init=1.0)
    with pytest.raises(RobustBenchError, match="impl='numba' is not one of.*'triton'"):
        rbn.make_norm("gnplus", 32, impl="numba")


def test_third_party_layer_registers_and_converts():
    class Scale(nn.Module):
        """A made-up layer: a learned per-channel scale."""

        def __init__(self, num_channels: int, init: float = 1.0):
            super().__init__()
            self.weight = nn.Parameter(torch.full((num_channels,), init))

        def forward(self, x):
            return x * self.weight.view(1, -1, 1, 1)

    try:
        rbn.register_norm("scale_test", Scale)
        assert "scale_test" in rbn.available()
        assert norm_options("scale_test") == ["init"]
        layer = rbn.make_norm("scale_test", 8, init=2.0)
        assert norm_name(layer) == "scale_test"
        with pytest.raises(RobustBenchError, match="already registered"):
            rbn.register_norm("scale_test", Scale)
        model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU())
        rbn.convert_norms(model, "scale_test")
        assert isinstance(model[1], Scale)
        # a registry layer is itself convertible again
        rbn.convert_norms(model, "gn", groups=4)
        assert isinstance(model[1], nn.GroupNorm)
    finally:
        _REGISTRY.pop("scale_test", None)


def test_convert_norms_on_torchvision_resnet18():
    model = torchvision.models.resnet18(num_classes=10)
    bn_count = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
    old = {n: m for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)}
    old_state = {n: {k: v.clone() for k, v in m.state_dict().items()} for n, m in old.items()}
    model.eval()

    rbn.convert_norms(model, "gnplus", groups="auto")
    new = {n: m for n, m in model.named_modules() if isinstance(m, rbn.GNPlus)}
    assert len(new) == bn_count == 20
    assert not any(type(m) is nn.BatchNorm2d for m in model.modules())
    assert set(new) == set(old)
    for name, layer in new.items():
        for key in ("weight", "bias", "running_mean", "running_var"):
            assert torch.equal(getattr(layer, key).detach(), old_state[name][key]), (name, key)
        assert not layer.training  # mode kept
    y = model(torch.rand(2, 3, 64, 64))
    assert y.shape == (2, 10) and torch.isfinite(y).all()

    model.train()
    model(torch.rand(2, 3, 64, 64)).sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_convert_norms_keeps_dtype_and_replaces_a_bare_layer():
    bn = nn.BatchNorm2d(8).double()
    gn = rbn.convert_norms(bn, "gn", groups=2)
    assert isinstance(gn, nn.GroupNorm) and gn.weight.dtype == torch.float64


def test_convert_norms_unknown_name_fails_before_changing_the_model():
    model = nn.Sequential(nn.BatchNorm2d(4))
    with pytest.raises(RobustBenchError, match="unknown norm"):
        rbn.convert_norms(model, "nope")
    assert isinstance(model[0], nn.BatchNorm2d)
