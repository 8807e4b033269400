"""``impl="triton"`` (GN+, CN, BGN) entry by entry against the float64 autograd path, through Triton's CPU
interpreter (conftest): every gradient, running statistics, odd shapes that exercise the masks,
many tiles per reduction, and where the path refuses to run. The reference and gradcheck tests
shared with the other paths are in test_norm_layers.py."""

from __future__ import annotations

import pytest
import torch
from test_norm_layers import randomize_affine, sample

from robustbench_norm.errors import RobustBenchError
from robustbench_norm.norms import GNPLUS_VARIANTS, make_norm
from robustbench_norm.norms.base import MomentNorm

F64 = torch.float64
#: (family, variant, one λ per channel): every GN+ variant both ways, CN and BGN (no λ)
LAYERS = [("gnplus", v, pc) for v in GNPLUS_VARIANTS for pc in (False, True)] + [
    ("cn", None, False),
    ("bgn", None, False),
]


@pytest.fixture(autouse=True)
def _interpreter(triton_interpreter):
    return triton_interpreter


def pair(name: str, variant: str | None, channels: int, groups: int, **options):
    """The layer on ``triton`` and, with the same state, on the float64 ``autograd`` path."""
    if variant is not None:
        options["variant"] = variant
    ours = make_norm(name, channels, groups=groups, impl="triton", **options).double()
    randomize_affine(ours)
    plain = make_norm(name, channels, groups=groups, impl="autograd", **options).double()
    plain.load_state_dict(ours.state_dict())
    return ours, plain


def step(layer, x: torch.Tensor, dy: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Output, dx and every parameter's gradient of one forward and backward."""
    layer.zero_grad()
    x = x.detach().clone().requires_grad_()
    y = layer(x)
    y.backward(dy)
    return (y, x.grad, *(p.grad for p in layer.parameters()))


def assert_same(ours, plain, tol=1e-10):
    for i, (a, b) in enumerate(zip(ours, plain, strict=True)):
        torch.testing.assert_close(a, b, rtol=tol, atol=tol, msg=f"output {i}")


NCHW, CL = torch.contiguous_format, torch.channels_last


@pytest.mark.parametrize(
    ("name", "variant", "per_channel", "x_layout", "dy_layout"),
    [(*layer, NCHW, NCHW) for layer in LAYERS]
    # dy need not come in x's layout: the strides are each tensor's own, whatever the layer
    # (channels_last throughout, every layer: test_norm_layers)
    + [("gnplus", "bn_first", True, CL, NCHW), ("bgn", None, False, NCHW, CL)],
)
def test_every_gradient_and_running_statistic_match_float64_autograd(
    name, variant, per_channel, x_layout, dy_layout
):
    options = {"per_channel_lambda": per_channel} if name == "gnplus" else {}
    ours, plain = pair(name, variant, 8, 4, **options)
    for offset in (0.0, 3.0):  # two training steps: the running statistics accumulate
        x = sample((5, 8, 4, 3), offset=offset).contiguous(memory_format=x_layout)
        dy = torch.randn(5, 8, 4, 3, dtype=F64).contiguous(memory_format=dy_layout)
        assert_same(step(ours, x, dy), step(plain, x, dy))
    assert_same(ours.state_dict().values(), plain.state_dict().values(), tol=1e-12)
    ours.eval(), plain.eval()
    x = sample((3, 8, 4, 3), offset=1.0).contiguous(memory_format=x_layout)
    dy = torch.randn(3, 8, 4, 3, dtype=F64)
    assert_same(step(ours, x, dy), step(plain, x, dy))
    assert step(ours, x, dy)[0].is_contiguous(memory_format=x_layout)


@pytest.mark.parametrize(
    "shape",
    [(1, 9, 3, 5), (3, 9, 1, 1), (7, 9, 2, 3)],  # 3 channels a group; padded lanes everywhere
)
@pytest.mark.parametrize("variant", GNPLUS_VARIANTS)
def test_shapes_that_fill_no_tile_match(shape, variant):
    ours, plain = pair("gnplus", variant, 9, 3)
    if shape[0] * shape[2] * shape[3] > 1:
        x, dy = sample(shape, offset=2.0), torch.randn(shape, dtype=F64)
        assert_same(step(ours, x, dy), step(plain, x, dy))
    ours.eval(), plain.eval()
    x, dy = sample(shape), torch.randn(shape, dtype=F64)
    assert_same(step(ours, x, dy), step(plain, x, dy))


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_moments_merged_over_many_tiles_keep_float32_accuracy(monkeypatch, layout):
    """35 values per (n, c) in tiles of at most 16 values (NCHW: 3 tiles, one partial) or of
    two values per channel (channels_last: 18 tiles): the pairwise merge must lose nothing at
    an offset of 1000, where E[x²] − E[x]² would lose everything."""
    from robustbench_norm.norms import triton_layers

    monkeypatch.setattr(triton_layers, "MAX_TILE", 16)
    ours64, plain = pair("gnplus", "parallel", 8, 4)
    ours32 = make_norm("gnplus", 8, groups=4, impl="triton")
    ours32.load_state_dict(ours64.state_dict())
    x = sample((3, 8, 5, 7), offset=1000.0)
    dy = torch.randn(3, 8, 5, 7, dtype=F64)
    assert_same(step(ours64, x.contiguous(memory_format=layout), dy), step(plain, x, dy))
    y32 = ours32(x.float().contiguous(memory_format=layout)).double()
    expected = step(plain, x, dy)[0]
    # storing 1000 + x in float32 costs ~6e-5 absolute; after normalizing, about as much
    torch.testing.assert_close(y32, expected, rtol=0, atol=5e-4)


@pytest.mark.parametrize(("name", "variant", "per_channel"), LAYERS[:-2:2] + LAYERS[-2:])
def test_a_batch_walked_in_blocks_of_samples_matches(monkeypatch, name, variant, per_channel):
    """The coefficient kernels hold at most MAX_COEFFICIENT_TILE values at a time: here 8, so
    2 samples beside a group's 3 channels (padded to 4), and 7 samples take 4 blocks, the last
    one partial. The batch statistics (and the backward's batch means) span the blocks."""
    from robustbench_norm.norms import triton_layers

    monkeypatch.setattr(triton_layers, "MAX_COEFFICIENT_TILE", 8)
    options = {"per_channel_lambda": per_channel} if name == "gnplus" else {}
    ours, plain = pair(name, variant, 9, 3, **options)
    for training in (True, False):
        ours.train(training), plain.train(training)
        x, dy = sample((7, 9, 3, 2), offset=2.0), torch.randn(7, 9, 3, 2, dtype=F64)
        assert_same(step(ours, x, dy), step(plain, x, dy))
    assert_same(ours.state_dict().values(), plain.state_dict().values(), tol=1e-12)


def test_cumulative_momentum_and_frozen_lambda_follow_the_other_paths():
    ours, plain = pair("gnplus", "parallel", 8, 4, momentum=None)
    for offset in (0.0, 1.0, 5.0):
        x, dy = sample(offset=offset), torch.randn(6, 8, 5, 4, dtype=F64)
        assert_same(step(ours, x, dy), step(plain, x, dy))
    torch.testing.assert_close(ours.running_var, plain.running_var, rtol=1e-12, atol=1e-12)
    as_gn, gn = pair("gnplus", "parallel", 8, 4, lambda_init=1.0, learn_lambda=False)
    x = sample()
    torch.testing.assert_close(
        as_gn(x), torch.group_norm(x, 4, as_gn.weight, as_gn.bias), rtol=1e-10, atol=1e-10
    )
    assert_same(step(as_gn, x, torch.ones_like(x)), step(gn, x, torch.ones_like(x)))


def test_auto_picks_triton_only_for_cuda_inputs():
    layer = make_norm("gnplus", 16, groups=4)
    assert layer.resolved_impl(torch.randn(2, 16, 4, 4)) == "kernels"  # even in the interpreter
    assert make_norm("gnplus", 16, groups=4, impl="triton").resolved_impl() == "triton"


def test_where_triton_cannot_run_it_says_why_and_what_to_use(monkeypatch):
    class Halved(MomentNorm):
        """A moment layer of someone's own: coefficients the kernels do not know."""

        layer = "halved"

        def _coefficients(self, mean, var, weight, bias, *, training):
            return weight * 0.5, bias

    with pytest.raises(RobustBenchError, match="halved: impl='triton'.*impl='kernels'"):
        Halved(16, eps=1e-5, momentum=0.1, impl="triton")
    layer = make_norm("gnplus", 64, groups=2, impl="triton")
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(RobustBenchError, match="input is on cpu.*TRITON_INTERPRET=1"):
        layer(torch.randn(2, 64, 4, 4))


def test_inside_a_compiled_model_it_runs_the_traceable_composition(monkeypatch):
    """Dynamo must not trace the Triton Function (kernels.py: traced custom Functions returned
    zero gradients on CUDA); compiled code runs the same functional composition as ``kernels``."""
    from robustbench_norm.norms import triton_layers

    def refuse(*args, **kwargs):
        raise AssertionError("the Triton Function ran under torch.compile")

    monkeypatch.setattr(triton_layers.MomentTriton, "forward", staticmethod(refuse))
    torch._dynamo.reset()
    ours, plain = pair("gnplus", "bn_first", 8, 4)
    compiled = torch.compile(ours, fullgraph=True, backend="aot_eager")
    x, dy = sample(), torch.randn(6, 8, 5, 4, dtype=F64)
    layer_x = x.clone().requires_grad_()
    y = compiled(layer_x)
    y.backward(dy)
    assert_same((y, layer_x.grad), step(plain, x, dy)[:2])


@pytest.mark.slow  # ~25 s: 19 layers a step through the interpreter
def test_a_network_trains_through_the_kernels_along_the_kernels_path(tmp_path):
    """The project's training loop, channels_last, with every GN+ layer on ``triton``: the same
    losses as ``kernels`` up to float32 rounding (two paths sum in other orders)."""
    from robustbench_norm.training import TrainSpec, train

    losses = {}
    for impl in ("kernels", "triton"):
        spec = TrainSpec(
            model="resnet20", width=2, batch_size=16, steps=4, log_every=1, lr=0.05,
            norm="gnplus", norm_options={"groups": 2, "impl": impl}, channels_last=True,
        )  # fmt: skip
        result = train(spec, tmp_path / impl, quiet=True)
        assert result.status == "done"
        losses[impl] = result.log["loss"]
    assert losses["triton"] == pytest.approx(losses["kernels"], rel=1e-3)
