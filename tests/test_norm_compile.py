"""The kernel compositions under torch.compile: no graph break (so no host sync) in training or
eval, forward and backward; and ``impl="compiled"`` through inductor's CPU backend equals the
eager path."""

from __future__ import annotations

import pytest
import torch
from test_norm_layers import KERNELS, build, randomize_affine
from torch.utils._python_dispatch import TorchDispatchMode

from robustbench_norm.norms import make_norm
from robustbench_norm.norms.op_count import count_ops


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    """Each test compiles other layer instances: start from an empty dynamo cache, as a fresh
    process would (dynamo allows 8 compilations per code object, then fails under fullgraph)."""
    torch._dynamo.reset()
    yield


def _pair(spec: str, **extra):
    """Two identical layers: one to run eagerly, one to compile."""
    eager = build(spec, 16, **extra)
    randomize_affine(eager)
    other = build(spec, 16, **extra)
    other.load_state_dict(eager.state_dict())
    return eager, other


def _run(layer, x, dy, call=None):
    """Output, dx and parameter gradients of one call (``call``: a compiled wrapper of it)."""
    layer.zero_grad(set_to_none=True)
    x = x.detach().clone().requires_grad_(True)
    y = (layer if call is None else call)(x)
    y.backward(dy)
    return y.detach(), x.grad, {n: p.grad for n, p in layer.named_parameters()}


def _assert_same(a, b, rtol, atol):
    (ya, gxa, pa), (yb, gxb, pb) = a, b
    torch.testing.assert_close(yb, ya, rtol=rtol, atol=atol)
    torch.testing.assert_close(gxb, gxa, rtol=rtol, atol=atol)
    for name in pa:
        torch.testing.assert_close(pb[name], pa[name], rtol=rtol, atol=atol, msg=name)


@pytest.mark.parametrize("spec", KERNELS)
@pytest.mark.parametrize("training", [True, False])
def test_kernel_compositions_trace_whole_with_no_graph_break(spec, training):
    """``fullgraph=True`` turns any graph break, a ``.item()`` or other host sync included, into
    an error; the traced graph must also compute exactly what the eager layer does."""
    eager, traced = _pair(spec)
    warm = torch.randn(4, 16, 6, 6)
    for layer in (eager, traced):
        layer.train()(warm)  # running statistics off their init values
        layer.train(training)
    compiled = torch.compile(traced, fullgraph=True, backend="aot_eager")
    x, dy = torch.randn(4, 16, 6, 6) * 2 + 1, torch.randn(4, 16, 6, 6)
    _assert_same(_run(eager, x, dy), _run(traced, x, dy, compiled), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(traced.running_var, eager.running_var)
    assert int(traced.num_batches_tracked) == int(eager.num_batches_tracked)


@pytest.mark.parametrize("spec", KERNELS)
@pytest.mark.parametrize("training", [True, False])
def test_the_functional_composition_is_the_kernel_function_in_float64(spec, training):
    """Compiled code runs the layer's functional composition (on CUDA a traced custom Function
    got zero gradients, see kernels.py): it must be the same function, outputs, gradients and
    running statistics, to float64 precision."""
    torch.manual_seed(0)
    a = build(spec, 16).double()
    randomize_affine(a)
    b = build(spec, 16).double()
    b.load_state_dict(a.state_dict())
    a.train()(torch.randn(4, 16, 6, 6, dtype=torch.float64))  # running stats off their init
    b.train()(torch.randn(4, 16, 6, 6, dtype=torch.float64))
    b.load_state_dict(a.state_dict())
    x = torch.randn(4, 16, 6, 6, dtype=torch.float64) * 2 + 1
    dy = torch.randn_like(x)
    results = []
    for layer, route in ((a, "function"), (b, "functional")):
        layer.train(training)
        layer.zero_grad(set_to_none=True)
        xi = x.clone().requires_grad_(True)
        momentum = layer.momentum if training else 0.0
        if training:
            layer.num_batches_tracked.add_(1)
        args = layer._kernel_args(xi, momentum)
        y = (
            layer._kernel_function.apply(*args)
            if route == "function"
            else (layer._kernel_functional(*args))
        )
        y.backward(dy)
        grads = {n: p.grad for n, p in layer.named_parameters()}
        results.append((y.detach(), xi.grad, grads, layer.running_mean.clone()))
    (ya, gxa, pa, rma), (yb, gxb, pb, rmb) = results
    torch.testing.assert_close(yb, ya, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(gxb, gxa, rtol=1e-10, atol=1e-10)
    for name in pa:
        torch.testing.assert_close(pb[name], pa[name], rtol=1e-9, atol=1e-10, msg=name)
    torch.testing.assert_close(rmb, rma, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("spec", KERNELS)
def test_compiled_code_never_calls_the_custom_function(spec, monkeypatch):
    """A compiled model must not trace the Function (its backward came back zero on CUDA)."""
    eager, traced = _pair(spec)
    x, dy = torch.randn(4, 16, 6, 6), torch.randn(4, 16, 6, 6)
    expected = _run(eager, x, dy)

    def refuse(*args, **kwargs):
        raise AssertionError("the custom Function ran under torch.compile")

    monkeypatch.setattr(traced._kernel_function, "forward", staticmethod(refuse))
    with pytest.raises(AssertionError, match="custom Function"):
        traced(x)  # eager: the Function, as patched
    compiled = torch.compile(traced, fullgraph=True, backend="aot_eager")
    _assert_same(expected, _run(traced, x, dy, compiled), rtol=1e-6, atol=1e-6)


def test_the_default_path_traces_whole_and_the_one_pass_path_does_not():
    """``auto`` is the kernel composition: it compiles with no graph break. The one-pass path
    differentiates its coefficient graph with autograd.grad, which dynamo cannot trace (why it
    is not the default)."""
    layer = make_norm("gnplus", 16, groups=4)
    assert layer.resolved_impl() == "kernels"
    compiled = torch.compile(layer, fullgraph=True, backend="aot_eager")
    assert compiled(torch.randn(4, 16, 6, 6).requires_grad_()).shape == (4, 16, 6, 6)
    one_pass = make_norm("gnplus", 16, groups=4, impl="fused")
    x = torch.randn(4, 16, 6, 6, requires_grad=True)
    with pytest.raises(Exception, match="autograd"):
        torch.compile(one_pass, fullgraph=True, backend="aot_eager")(x).sum().backward()


def test_compiled_impl_equals_the_eager_kernels_under_inductor():
    torch.manual_seed(0)
    eager = make_norm("gnplus", 16, groups=4, impl="kernels")
    randomize_affine(eager)
    compiled = make_norm("gnplus", 16, groups=4, impl="compiled")
    compiled.load_state_dict(eager.state_dict())
    for step in range(2):  # the second call reuses the compiled code
        x, dy = torch.randn(4, 16, 8, 8) * 3 + step, torch.randn(4, 16, 8, 8)
        _assert_same(_run(eager, x, dy), _run(compiled, x, dy), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(compiled.running_mean, eager.running_mean)
    torch.testing.assert_close(compiled.running_var, eager.running_var)
    eager.eval(), compiled.eval()
    x = torch.randn(2, 16, 8, 8)
    torch.testing.assert_close(compiled(x), eager(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    ("spec", "forward", "backward"),
    [
        ("gnplus:kernels", 20, 30),
        ("gnplus-gn_first:kernels", 20, 30),
        ("gnplus-bn_first:kernels", 20, 30),
        ("bgn:kernels", 20, 30),
        ("cn:kernels", 20, 30),
    ],
)
def test_kernel_compositions_stay_within_their_op_budget(spec, forward, backward):
    """A GPU pays a launch per op: the issue's budget is 20 forward, 30 backward per call."""
    ops = count_ops(build(spec, 64), torch.randn(8, 64, 8, 8))
    assert sum(ops["forward"].values()) <= forward
    assert sum(ops["backward"].values()) <= backward
    assert ops["forward"]["native_group_norm"] + ops["forward"]["native_batch_norm"] >= 1


class _GroupNormSpy(TorchDispatchMode):
    """Records, for every group-norm kernel call, whether its 4-D tensors were contiguous."""

    def __init__(self) -> None:
        super().__init__()
        self.contiguous: list[bool] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.overloadpacket.__name__ in ("native_group_norm", "native_group_norm_backward"):
            tensors = [a for a in args if isinstance(a, torch.Tensor) and a.dim() == 4]
            self.contiguous.append(all(t.is_contiguous() for t in tensors))
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize(
    "spec", ["gnplus:fused", "cn:fused", "bgn:fused", *(k for k in KERNELS if k != "bgn:kernels")]
)
def test_group_norm_kernels_only_ever_see_contiguous_input(spec):
    """CUDA's native_group_norm raises on channels_last input (every GN+ job of a GPU suite
    failed); the layers give it a contiguous copy. Checked on CPU at the dispatcher."""
    layer = build(spec, 16)
    x = torch.randn(4, 16, 6, 6).contiguous(memory_format=torch.channels_last)
    dy = torch.randn(4, 16, 6, 6).contiguous(memory_format=torch.channels_last)
    spy = _GroupNormSpy()
    with spy:
        layer(x.requires_grad_()).backward(dy)
    assert spy.contiguous and all(spy.contiguous)
