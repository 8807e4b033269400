"""Normalization as "per-(n, c) moments, then one affine pass".

Every layer built here (the GN+ variants, Batch Group Norm, Continual Norm) has the form

    y[n, c, h, w] = a[n, c] * x[n, c, h, w] + b[n, c]

where ``a`` and ``b`` depend on ``x`` only through its per-(n, c) mean and biased variance over
(H, W). Group statistics and batch statistics are both combinations of those moments (law of total
variance: var = mean of variances + variance of means), so no step ever forms E[x²] − E[x]² and
nothing cancels catastrophically.

That structure gives a cheap exact backward. With S1 = Σ_hw dy and S2 = Σ_hw dy·x per (n, c),
the gradients of the small coefficient graph are ∂L/∂a = S2 and ∂L/∂b = S1; autograd pushes them
through the (N, C)-sized graph to ∂L/∂mean, ∂L/∂var and the parameters, and then

    dx = a·dy + (2/M)·∂L/∂var·(x − mean) + (1/M)·∂L/∂mean,      M = H·W

so the whole layer costs one reduction and one elementwise pass over the activation in each
direction, whatever the variant. The same coefficient function also runs under plain autograd
(``impl="autograd"``) for double backward and as a cross-check.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from robustbench_norm.errors import NormInputError, RobustBenchError

#: ``coefficients(mean, var, *params) -> (a, b)``; mean/var are (N, C) float tensors and
#: a/b must broadcast to (N, C).
CoefficientFn = Callable[..., tuple[Tensor, Tensor]]

_LOW_PRECISION = (torch.float16, torch.bfloat16)


def compute_dtype(x: Tensor) -> torch.dtype:
    """Statistics are accumulated in float32 at least (float64 stays float64)."""
    return torch.float32 if x.dtype in _LOW_PRECISION else x.dtype


def group_norm_input(x: Tensor) -> Tensor:
    """The tensor ATen's group norm may read: contiguous NCHW.

    CUDA's kernel rejects channels_last (it checks ``is_contiguous()``), and CPU's channels_last
    kernel sums x and x² in one pass (relative error 0.1–0.7 at an offset of 1000 in float32).
    Both are avoided by one explicit copy, made only for a non-contiguous input."""
    return x if x.is_contiguous() else x.contiguous()


def per_channel_moments(x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Mean and biased variance over (H, W) for every (n, c), without autograd.

    ATen's group-norm kernel with one group per channel computes exactly these with a Welford
    reduction in a single pass, several times faster than ``torch.var_mean`` on CPU. With
    eps = 0 its rstd is 1/σ, so σ² = rstd⁻² (a constant channel gives rstd = inf and σ² = 0
    exactly). Its normalized output comes back as the third value: a contiguous buffer of x's
    shape that the caller may overwrite, which spares one large allocation (on CPU, fresh large
    buffers cost page faults comparable to the arithmetic). A channels_last input is read
    through a contiguous copy (:func:`group_norm_input`).
    """
    n, c = x.shape[:2]
    xs = group_norm_input(x.to(compute_dtype(x)))
    scratch, mean, rstd = torch.ops.aten.native_group_norm(
        xs.detach(), None, None, n, c, x.shape[2] * x.shape[3], c, 0.0
    )
    return mean.view(n, c), rstd.reciprocal().square().view(n, c), scratch


def differentiable_moments(x: Tensor) -> tuple[Tensor, Tensor]:
    """The same moments through plain autograd (for ``impl="autograd"``)."""
    var, mean = torch.var_mean(x.to(compute_dtype(x)), dim=(2, 3), correction=0)
    return mean, var


def group_moments(mean: Tensor, var: Tensor, groups: int) -> tuple[Tensor, Tensor]:
    """Per-(n, group) mean and variance over (channels of the group, H, W), expanded to (N, C)."""
    n, c = mean.shape
    m = mean.reshape(n, groups, c // groups)
    v = var.reshape(n, groups, c // groups)
    gm = m.mean(-1, keepdim=True)
    gv = v.mean(-1, keepdim=True) + (m - gm).square().mean(-1, keepdim=True)
    return gm.expand_as(m).reshape(n, c), gv.expand_as(m).reshape(n, c)


def batch_moments(mean: Tensor, var: Tensor) -> tuple[Tensor, Tensor]:
    """Per-channel mean and biased variance over (N, H, W), shape (C,)."""
    bm = mean.mean(0)
    bv = var.mean(0) + (mean - bm).square().mean(0)
    return bm, bv


def batch_group_moments(mean: Tensor, var: Tensor, groups: int) -> tuple[Tensor, Tensor]:
    """Per-group mean and variance over (N, channels of the group, H, W), shape (G,)."""
    n, c = mean.shape
    m = mean.reshape(n, groups, c // groups).transpose(0, 1).reshape(groups, -1)
    v = var.reshape(n, groups, c // groups).transpose(0, 1).reshape(groups, -1)
    gm = m.mean(-1)
    gv = v.mean(-1) + (m - gm[:, None]).square().mean(-1)
    return gm, gv


def normalizer(mu: Tensor, var: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    """(scale, shift) such that scale·x + shift == (x − mu) / sqrt(var + eps)."""
    scale = torch.rsqrt(var + eps)
    return scale, -mu * scale


def update_running_stats(
    running_mean: Tensor,
    running_var: Tensor,
    batch_mean: Tensor,
    batch_var: Tensor,
    count: int,
    momentum: float,
) -> None:
    """Exactly torch.nn.BatchNorm2d's update: biased variance normalizes, unbiased is tracked."""
    with torch.no_grad():
        unbiased = batch_var * (count / (count - 1))
        running_mean.lerp_(batch_mean.to(running_mean.dtype), momentum)
        running_var.lerp_(unbiased.to(running_var.dtype), momentum)


def check_trainable_batch(x: Tensor, count: int) -> None:
    """Raise the error BatchNorm2d raises when a batch statistic would be over a single value."""
    if count <= 1:
        raise NormInputError(
            "Expected more than 1 value per channel when training, got input size "
            f"{tuple(x.shape)}: use a batch with N·H·W > 1 or call .eval()"
        )


def _bcast(t: Tensor) -> Tensor:
    return t.reshape(*t.shape, 1, 1) if t.dim() == 2 else t.reshape(-1, 1, 1)


def _apply_forward(
    x: Tensor,
    coefficients: CoefficientFn,
    observe: Callable[[Tensor, Tensor], None] | None,
    params: tuple[Tensor, ...],
) -> tuple[Tensor, Tensor, Tensor]:
    """Moments → running-stat hook → coefficients → output, reusing the moments' scratch buffer."""
    mean, var, scratch = per_channel_moments(x)
    if observe is not None:
        observe(mean, var)
    a, b = coefficients(mean, var, *params)
    out = scratch if x.is_contiguous() else None  # else y keeps x's layout (channels_last)
    y = torch.addcmul(_bcast(b), x.to(mean.dtype), _bcast(a), out=out).to(x.dtype)
    return y, mean, var


class _MomentAffine(torch.autograd.Function):
    """y = a(mean, var, params)·x + b(mean, var, params) with a one-pass hand-derived backward.

    Only (N, C)-sized tensors are recomputed in backward: autograd records nothing inside a
    Function's forward, so the small coefficient graph is rebuilt there and differentiated.
    """

    @staticmethod
    def forward(ctx, x: Tensor, coefficients: CoefficientFn, observe, *params: Tensor) -> Tensor:
        with torch.no_grad():
            y, mean, var = _apply_forward(x, coefficients, observe, params)
        ctx.coefficients = coefficients
        ctx.save_for_backward(x, mean, var, *params)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, dy: Tensor):
        x, mean, var, *params = ctx.saved_tensors
        wants = ctx.needs_input_grad[3:]
        dtype = mean.dtype
        xs, dys = x.to(dtype), dy.to(dtype)
        buffer = torch.mul(dys, xs)  # becomes dx below: one large allocation, as in BN
        s2 = buffer.sum((2, 3))
        s1 = dys.sum((2, 3))
        with torch.enable_grad():
            m = mean.detach().requires_grad_(True)
            v = var.detach().requires_grad_(True)
            ps = [p.detach().requires_grad_(w) for p, w in zip(params, wants, strict=True)]
            a, b = ctx.coefficients(m, v, *ps)
            leaves = [m, v] + [p for p, w in zip(ps, wants, strict=True) if w]
            grads = torch.autograd.grad(
                (a.expand_as(s2), b.expand_as(s1)), leaves, (s2, s1), allow_unused=True
            )
        dmean, dvar = (torch.zeros_like(mean) if g is None else g for g in grads[:2])
        param_grads = iter(grads[2:])

        dx = None
        if ctx.needs_input_grad[0]:
            inv_m = 1.0 / (x.shape[2] * x.shape[3])
            k = 2.0 * inv_m * dvar
            c = inv_m * dmean - k * mean
            dx = torch.addcmul(_bcast(c), xs, _bcast(k), out=buffer)
            dx.addcmul_(dys, _bcast(a.detach()))
            dx = dx.to(x.dtype)
        out = [dx, None, None]
        for p, w in zip(params, wants, strict=True):
            g = next(param_grads) if w else None
            out.append(None if g is None else g.to(p.dtype))
        return tuple(out)


def moment_affine(
    x: Tensor,
    coefficients: CoefficientFn,
    *params: Tensor,
    impl: str = "fused",
    observe: Callable[[Tensor, Tensor], None] | None = None,
) -> Tensor:
    """Apply ``y = a·x + b`` where (a, b) = coefficients(per-(n, c) mean, var, *params).

    ``observe(mean, var)`` sees the detached moments once, before the output is formed: layers
    update their running statistics there without computing the moments a second time.

    ``impl="fused"`` (default) uses the one-pass custom backward; ``impl="autograd"`` builds the
    same computation from differentiable ops (slower, supports double backward). Autocast is
    switched off inside: statistics are always accumulated in float32 or better, and the output
    keeps the input's dtype.
    """
    if impl not in ("fused", "autograd"):
        raise RobustBenchError(f"impl={impl!r} is not one of 'fused', 'autograd'")
    with torch.autocast(device_type=x.device.type, enabled=False):
        needs_grad = torch.is_grad_enabled() and (
            x.requires_grad or any(p.requires_grad for p in params)
        )
        if not needs_grad:
            with torch.no_grad():
                return _apply_forward(x, coefficients, observe, params)[0]
        if impl == "fused":
            return _MomentAffine.apply(x, coefficients, observe, *params)
        mean, var = differentiable_moments(x)
        if observe is not None:
            observe(mean.detach(), var.detach())
        a, b = coefficients(mean, var, *params)
        return (x.to(mean.dtype) * _bcast(a) + _bcast(b)).to(x.dtype)
