"""Every layer against the float64 definitions in norm_reference.py."""

from __future__ import annotations

import math

import norm_reference as ref
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from robustbench_norm.norms import GNPLUS_VARIANTS, make_norm

F64 = torch.float64


@pytest.fixture(autouse=True)
def _triton_on_cpu(request):
    """A test parametrized with ``impl="triton"`` runs the kernels in Triton's CPU interpreter."""
    call = getattr(request.node, "callspec", None)
    if call and any("triton" in str(v) for v in call.params.values()):
        request.getfixturevalue("triton_interpreter")


def randomize_affine(layer: torch.nn.Module) -> None:
    """Non-trivial γ, β (and θ, v) so that a wrong broadcast cannot hide behind ones and zeros."""
    with torch.no_grad():
        for name, p in layer.named_parameters():
            if name == "lambda_logit":
                p.copy_(torch.randn_like(p))
            elif name == "weight" or name == "v":
                p.copy_(1 + 0.5 * torch.randn_like(p))
            else:
                p.copy_(0.5 * torch.randn_like(p))


def sample(shape=(6, 8, 5, 4), offset=0.0) -> torch.Tensor:
    # Per-channel offsets and scales: batch statistics then differ from group statistics.
    c = shape[1]
    x = torch.randn(shape, dtype=F64)
    return x * (0.5 + torch.rand(1, c, 1, 1, dtype=F64) * 2) + offset + torch.randn(1, c, 1, 1)


# -- GN+ -----------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", GNPLUS_VARIANTS)
@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("impl", ["fused", "kernels", "triton", "autograd"])
def test_gnplus_matches_reference_train_then_eval(variant, per_channel, impl):
    layer = make_norm(
        "gnplus", 8, groups=4, variant=variant, per_channel_lambda=per_channel, impl=impl
    ).double()
    randomize_affine(layer)
    running = ref.RunningStats(8)
    kw = dict(
        variant=variant,
        lam=torch.sigmoid(layer.lambda_logit.detach()),
        gamma=layer.weight.detach(),
        beta=layer.bias.detach(),
        groups=4,
        running=running,
    )
    for step in range(4):  # several steps: running statistics accumulate
        x = sample(offset=step)
        torch.testing.assert_close(
            layer(x), ref.gnplus(x, training=True, **kw), rtol=1e-10, atol=1e-10
        )
    torch.testing.assert_close(layer.running_mean, running.mean, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(layer.running_var, running.var, rtol=1e-12, atol=1e-12)
    assert int(layer.num_batches_tracked) == 4

    layer.eval()
    x = sample(offset=2.0)
    torch.testing.assert_close(
        layer(x), ref.gnplus(x, training=False, **kw), rtol=1e-10, atol=1e-10
    )


@pytest.mark.parametrize("variant", GNPLUS_VARIANTS)
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("impl", ["fused", "kernels", "triton"])
def test_gnplus_hand_derived_backward_passes_gradcheck(variant, training, per_channel, impl):
    layer = make_norm(
        "gnplus", 6, groups=3, variant=variant, per_channel_lambda=per_channel, impl=impl
    ).double()
    randomize_affine(layer)
    if not training:
        layer.train()(sample((5, 6, 3, 3)))  # move running stats off their init values
        layer.eval()
    x = sample((3, 6, 3, 2)).requires_grad_()

    def f(x, w, b, t):
        return torch.func.functional_call(
            layer, {"weight": w, "bias": b, "lambda_logit": t}, (x,), strict=False
        )

    params = [
        p.detach().clone().requires_grad_() for p in (layer.weight, layer.bias, layer.lambda_logit)
    ]
    layer.train(training)
    # Triton's interpreter costs ~80 ms a call, and the full check ~350 calls: there it checks
    # the Jacobian along random directions instead (a wrong entry still fails it), and
    # test_norm_triton compares every gradient with the float64 autograd path entry by entry.
    fast = impl == "triton"
    assert torch.autograd.gradcheck(f, (x, *params), eps=1e-6, atol=1e-7, fast_mode=fast)


@pytest.mark.parametrize("variant", GNPLUS_VARIANTS)
@pytest.mark.parametrize("impl", ["fused", "kernels", "triton"])
def test_hand_derived_and_autograd_paths_agree_in_float32(variant, impl):
    torch.manual_seed(1)
    fused = make_norm("gnplus", 64, variant=variant, impl=impl)
    randomize_affine(fused)
    plain = make_norm("gnplus", 64, variant=variant, impl="autograd")
    plain.load_state_dict(fused.state_dict())
    x = (torch.randn(8, 64, 16, 16) * 3 + 1).requires_grad_()
    x2 = x.detach().clone().requires_grad_()
    dy = torch.randn(8, 64, 16, 16)
    fused(x).backward(dy)
    plain(x2).backward(dy)
    torch.testing.assert_close(x.grad, x2.grad, rtol=1e-4, atol=1e-5)
    for (name, p), q in zip(fused.named_parameters(), plain.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-4, msg=name)


def test_gnplus_float32_accuracy_with_large_offset_is_as_good_as_torch_group_norm():
    """No E[x²]−E[x]² anywhere: a mean of 1000 over a std of 1 must not wreck float32."""
    x64 = torch.randn(4, 32, 8, 8, dtype=F64) + 1000.0
    layer = make_norm("gnplus", 32, groups=8, lambda_init=0.5)
    expected = ref.gnplus(
        x64,
        variant="parallel",
        lam=torch.tensor(0.5, dtype=F64),
        gamma=torch.ones(32, dtype=F64),
        beta=torch.zeros(32, dtype=F64),
        groups=8,
        training=True,
        running=ref.RunningStats(32),
    )
    ours = (layer(x64.float()).double() - expected).abs().max().item()
    torch_gn = (torch.group_norm(x64.float(), 8).double() - ref.gn(x64, 8)).abs().max().item()
    assert ours < max(4 * torch_gn, 1e-3), (ours, torch_gn)


def test_gnplus_with_lambda_frozen_at_one_is_group_norm_and_at_zero_is_batch_norm():
    x = sample()
    as_gn = make_norm("gnplus", 8, groups=4, lambda_init=1.0, learn_lambda=False).double()
    torch.testing.assert_close(as_gn(x), ref.gn(x, 4))
    as_bn = make_norm("gnplus", 8, groups=4, lambda_init=0.0, learn_lambda=False).double()
    torch.testing.assert_close(as_bn(x), ref.bn(x, *ref.batch_stats(x)))
    assert "lambda_logit" not in dict(as_gn.named_parameters())
    assert "lambda_logit" in as_gn.state_dict()


def test_gnplus_lambda_defaults_to_sigmoid_one_and_learns():
    layer = make_norm("gnplus", 8, groups=4)
    assert layer.mixing_weight.item() == pytest.approx(1 / (1 + math.exp(-1)))
    layer(torch.randn(4, 8, 4, 4)).pow(3).sum().backward()
    assert layer.lambda_logit.grad is not None and layer.lambda_logit.grad.abs() > 0


def test_gnplus_state_dict_is_a_superset_of_batchnorm2d_and_loads_a_bn_checkpoint():
    bn = torch.nn.BatchNorm2d(8)
    bn.train()(torch.randn(4, 8, 3, 3) * 2 + 1)
    gnp = make_norm("gnplus", 8, groups=4)
    assert set(bn.state_dict()) < set(gnp.state_dict())
    assert set(gnp.state_dict()) - set(bn.state_dict()) == {"lambda_logit"}
    theta = gnp.lambda_logit.detach().clone()
    gnp.load_state_dict(bn.state_dict())  # strict
    torch.testing.assert_close(gnp.running_mean, bn.running_mean)
    torch.testing.assert_close(gnp.running_var, bn.running_var)
    assert torch.equal(gnp.lambda_logit.detach(), theta)


@pytest.mark.parametrize("variant", GNPLUS_VARIANTS)
def test_gnplus_batch_of_one_with_spatial_extent_trains(variant):
    layer = make_norm("gnplus", 8, groups=4, variant=variant)
    y = layer(torch.randn(1, 8, 4, 4))
    assert torch.isfinite(y).all()


# -- peers -------------------------------------------------------------------------------------


@pytest.mark.parametrize("impl", ["fused", "kernels", "autograd"])
def test_batch_group_norm_matches_reference(impl):
    layer = make_norm("bgn", 8, groups=2, impl=impl).double()
    randomize_affine(layer)
    running = ref.RunningStats(2)
    g, b = layer.weight.detach(), layer.bias.detach()
    for step in range(3):
        x = sample(offset=step)
        torch.testing.assert_close(layer(x), ref.affine(ref.bgn(x, 2, True, running), g, b))
    torch.testing.assert_close(layer.running_mean, running.mean)
    torch.testing.assert_close(layer.running_var, running.var)
    layer.eval()
    x = sample()
    torch.testing.assert_close(layer(x), ref.affine(ref.bgn(x, 2, False, running), g, b))


@pytest.mark.parametrize("impl", ["fused", "kernels", "triton", "autograd"])
def test_continual_norm_matches_reference(impl):
    layer = make_norm("cn", 8, groups=4, impl=impl).double()
    randomize_affine(layer)
    running = ref.RunningStats(8)
    g, b = layer.weight.detach(), layer.bias.detach()
    for step in range(3):
        x = sample(offset=step)
        torch.testing.assert_close(layer(x), ref.affine(ref.cn(x, 4, True, running), g, b))
    torch.testing.assert_close(layer.running_mean, running.mean)
    torch.testing.assert_close(layer.running_var, running.var)
    layer.eval()
    x = sample()
    torch.testing.assert_close(layer(x), ref.affine(ref.cn(x, 4, False, running), g, b))


def test_evonorm_s0_matches_reference():
    layer = make_norm("evonorm_s0", 8, groups=4).double()
    randomize_affine(layer)
    x = sample()
    expected = ref.affine(
        ref.evonorm_s0(x, 4, layer.v.detach()), layer.weight.detach(), layer.bias.detach()
    )
    torch.testing.assert_close(layer(x), expected)


@pytest.mark.parametrize(
    "name, options, groups",
    [("gn", {"groups": 4}, 4), ("ln", {}, 1), ("in", {}, 8)],
)
def test_group_norm_family_matches_reference(name, options, groups):
    layer = make_norm(name, 8, **options).double()
    randomize_affine(layer)
    x = sample()
    expected = ref.affine(ref.gn(x, groups), layer.weight.detach(), layer.bias.detach())
    torch.testing.assert_close(layer(x), expected)


def test_bn_matches_reference_and_running_stats():
    layer = make_norm("bn", 8).double()
    randomize_affine(layer)
    running = ref.RunningStats(8)
    g, b = layer.weight.detach(), layer.bias.detach()
    for step in range(3):
        x = sample(offset=step)
        mu, var = ref.batch_stats(x)
        running.update(mu, var, x.shape[0] * x.shape[2] * x.shape[3])
        torch.testing.assert_close(layer(x), ref.affine(ref.bn(x, mu, var), g, b))
    layer.eval()
    x = sample()
    torch.testing.assert_close(layer(x), ref.affine(ref.bn(x, running.mean, running.var), g, b))


@pytest.mark.parametrize(
    ("name", "impl"),
    [
        ("bgn", "fused"),
        ("bgn", "kernels"),
        ("cn", "fused"),
        ("cn", "kernels"),
        ("cn", "triton"),
        ("bgn", "triton"),
        ("evonorm_s0", None),
    ],
)
@pytest.mark.parametrize("training", [True, False])
def test_peer_layers_pass_gradcheck(name, impl, training):
    layer = make_norm(name, 6, groups=3, **({"impl": impl} if impl else {})).double()
    randomize_affine(layer)
    layer.train()(sample((4, 6, 3, 3)))
    layer.train(training)
    names = [n for n, _ in layer.named_parameters()]
    params = [p.detach().clone().requires_grad_() for _, p in layer.named_parameters()]
    x = sample((3, 6, 3, 2)).requires_grad_()

    def f(x, *ps):
        return torch.func.functional_call(
            layer, dict(zip(names, ps, strict=True)), (x,), strict=False
        )

    fast = impl == "triton"  # see test_gnplus_hand_derived_backward_passes_gradcheck
    assert torch.autograd.gradcheck(f, (x, *params), eps=1e-6, atol=1e-7, fast_mode=fast)


# -- properties shared by every layer ------------------------------------------------------

ALL = ["bn", "gn", "ln", "in", "gnplus", "bgn", "cn", "evonorm_s0", "none"]
GROUPED = {"gn", "gnplus", "bgn", "cn", "evonorm_s0"}
#: the moment layers again, on ATen's norm kernels (the CUDA default) instead of one-pass moments
KERNELS = [
    "gnplus:kernels",
    "gnplus-gn_first:kernels",
    "gnplus-bn_first:kernels",
    "bgn:kernels",
    "cn:kernels",
]
#: the moment layers again, on the Triton kernels (through Triton's CPU interpreter here)
TRITON = [
    "gnplus:triton",
    "gnplus-gn_first:triton",
    "gnplus-bn_first:triton",
    "bgn:triton",
    "cn:triton",
]


def build(name: str, channels: int = 16, **extra) -> torch.nn.Module:
    """``name`` is a registry name, optionally ``-variant`` and ``:impl``."""
    name, _, impl = name.partition(":")
    name, _, variant = name.partition("-")
    options = {"groups": 4} if name in GROUPED else {}
    options.update({"impl": impl} if impl else {}, **({"variant": variant} if variant else {}))
    return make_norm(name, channels, **options, **extra)


@pytest.mark.parametrize("name", ALL + KERNELS + TRITON)
def test_eval_output_of_a_sample_does_not_depend_on_its_batch(name):
    layer = build(name)
    randomize_affine(layer)
    for _ in range(3):
        layer(torch.randn(8, 16, 6, 6) * 2 + 0.5)
    layer.eval()
    batch = torch.randn(5, 16, 6, 6)
    together = layer(batch)
    for i in range(5):
        torch.testing.assert_close(
            layer(batch[i : i + 1]), together[i : i + 1], rtol=1e-5, atol=1e-6
        )


@pytest.mark.parametrize("name", ALL + KERNELS + TRITON)
@pytest.mark.parametrize("training", [True, False])
def test_channels_last_gives_the_contiguous_result(name, training):
    layer = build(name)
    randomize_affine(layer)
    layer(torch.randn(4, 16, 6, 6))
    layer.train(training)
    x = torch.randn(4, 16, 6, 6, requires_grad=True)
    xc = x.detach().contiguous(memory_format=torch.channels_last).requires_grad_()
    dy = torch.randn(4, 16, 6, 6)
    state = {k: v.clone() for k, v in layer.state_dict().items()}
    y = layer(x)
    y.backward(dy)
    layer.load_state_dict(state)
    yc = layer(xc)
    yc.backward(dy.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(yc, y, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(xc.grad, x.grad, rtol=1e-4, atol=1e-5)
    # a channels_last model keeps channels_last activations and gradients
    assert yc.is_contiguous(memory_format=torch.channels_last)
    assert xc.grad.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("name", ALL + KERNELS + TRITON)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast_matches_float32_within_low_precision_tolerance(name, dtype):
    torch.manual_seed(3)
    conv = torch.nn.Conv2d(3, 16, 3, padding=1)
    layer = build(name)
    randomize_affine(layer)
    x = torch.rand(4, 3, 8, 8)
    expected = layer(conv(x))
    with torch.autocast("cpu", dtype=dtype):
        h = conv(x)
        y = layer(h)
    assert h.dtype == dtype  # the norm really saw a low-precision input
    # two low-precision roundings (conv output, norm output) on O(1) values
    torch.testing.assert_close(y.float(), expected, rtol=0.05, atol=0.08)
    y.float().sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in layer.parameters())


@pytest.mark.parametrize("name", ["bn", "gnplus", "bgn", "cn", *KERNELS, *TRITON])
def test_single_value_per_statistic_in_training_raises_like_batchnorm(name):
    layer = build(name, 4) if name != "bn" else make_norm("bn", 4)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        layer(torch.randn(1, 4, 1, 1))
    layer.eval()
    assert torch.isfinite(layer(torch.randn(1, 4, 1, 1))).all()


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 4),
    groups=st.sampled_from([1, 2, 4]),
    per_group=st.integers(1, 3),
    hw=st.tuples(st.integers(1, 4), st.integers(2, 4)),
    variant=st.sampled_from(GNPLUS_VARIANTS),
    lam=st.floats(0.05, 0.95),
)
def test_gnplus_matches_reference_on_random_shapes(n, groups, per_group, hw, variant, lam):
    c = groups * per_group
    layer = make_norm("gnplus", c, groups=groups, variant=variant, lambda_init=lam).double()
    x = torch.randn(n, c, *hw, dtype=F64) * 3 + 1
    expected = ref.gnplus(
        x,
        variant=variant,
        lam=layer.mixing_weight,  # θ was stored in float32, so λ is lam to ~1e-8
        gamma=torch.ones(c, dtype=F64),
        beta=torch.zeros(c, dtype=F64),
        groups=groups,
        training=True,
        running=ref.RunningStats(c),
    )
    torch.testing.assert_close(layer(x), expected, rtol=1e-9, atol=1e-9)


LARGE_OFFSET = ["gnplus:fused", "gnplus:kernels", "gnplus:autograd", "bgn", "cn", "cn:kernels"]


@pytest.mark.parametrize(
    ("name", "threads"),
    [(name, threads) for name in LARGE_OFFSET for threads in (1, 2)]
    # the Triton kernels' arithmetic does not depend on torch's thread count
    + [
        (name, 1) for name in ("gnplus:triton", "gnplus-bn_first:triton", "bgn:triton", "cn:triton")
    ],
)
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_float32_at_a_large_offset_matches_float64_in_either_layout(name, threads, layout):
    """CPU group norm on channels_last accumulates E[x²] − E[x]², and so does CPU batch norm on
    channels_last with one thread (GN+'s kernels path missed by 9.7e-4 there until its BN
    branch read the contiguous copy too); every path here reads a contiguous copy instead, so
    an offset of 1000 costs no more than float32 rounding, at any thread count."""
    torch.set_num_threads(threads)  # restored after the test (conftest)
    layer64 = build(name, 16).double()
    randomize_affine(layer64)
    layer32 = build(name, 16)
    layer32.load_state_dict(layer64.state_dict())
    x64 = torch.randn(16, 16, 8, 8, dtype=F64) + 1000.0
    expected = layer64(x64)
    got = layer32(x64.float().contiguous(memory_format=layout)).double()
    # float32 holds 1000 + x to ~6e-5; normalizing by σ ≈ 1 keeps that absolute error
    torch.testing.assert_close(got, expected, rtol=0, atol=5e-4)
