"""GN+, CN and BGN composed from ATen's own group- and batch-norm kernels (``impl="kernels"``).

The moment path (moments.py) reads the activation once per direction, but then runs dozens of
small (N, C)-sized ops per call (59 forward and 158 backward for GN+ parallel), each a kernel
launch on a GPU. Here each layer is instead a composition of the two normalizations ATen already
has, whose forward *and* backward kernels return everything needed:

* ``parallel``:  y = GN(x; w = γλ, b = β) + BN(x; w = γ(1 − λ))
* ``gn_first``:  z = GN(x);  y = BN(z; w = γ(1 − λ), b = β) + γλ·z
* ``bn_first``:  z = BN(x);  y = GN(z; w = γλ, b = β) + γ(1 − λ)·z
* CN:            z = GN(x);  y = BN(z; w = γ, b = β)
* BGN:           z = BN over (N, group·H·W) of x viewed as (N, G, C/G·H·W);  y = γ·z + β

The backward is closed form: each kernel's backward gives dx and the gradient of its own weight
and bias; λ and γ enter only through those weights (w_g = γλ, w_b = γ(1 − λ)) or through a
product with z, so, with s = Σ dy·z where needed,

    dγ = λ·dw_g + (1 − λ)·dw_b,   dλ = γ·(dw_g − dw_b),   dθ = Σ dλ · λ(1 − λ)

(for ``gn_first``/``bn_first`` the z term's Σ dy·z stands in for dw_g or dw_b). A call is then a
handful of ops in each direction, whatever the variant (``benchmarks/norm_speed.py
--count-ops``). The kernels use Welford or two-pass reductions; the exceptions are ATen's CPU
group norm on a channels_last tensor, and its CPU batch norm on one with a single thread, which
accumulate E[x²] − E[x]² and lose float32 precision at large offsets (9.7e-4 at an offset of
1000 through GN+'s BN branch); and CUDA's group norm refuses channels_last input. Both branches
therefore read the contiguous copy (:func:`group_norm_input`), and the output is returned in
the input's memory format.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import Tensor

from robustbench_norm.norms.moments import compute_dtype, group_norm_input

_gn = torch.ops.aten.native_group_norm
_gn_backward = torch.ops.aten.native_group_norm_backward
_bn = torch.ops.aten.native_batch_norm
_bn_backward = torch.ops.aten.native_batch_norm_backward


def _layout(x: Tensor) -> bool:
    """True for a channels_last (and not also contiguous) tensor."""
    return x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


def in_format_of(y: Tensor, like: Tensor | bool) -> Tensor:
    """``y`` in the memory format of ``like`` (a tensor, or :func:`_layout`'s answer for one):
    channels_last models keep channels_last activations and gradients."""
    channels_last = _layout(like) if isinstance(like, Tensor) else like
    if channels_last and not y.is_contiguous(memory_format=torch.channels_last):
        return y.contiguous(memory_format=torch.channels_last)
    return y


def _channel_view(t: Tensor) -> Tensor:
    return t.reshape(-1, 1, 1)


def _keep(ctx, x: Tensor, y: Tensor, saved: tuple, buffers: tuple, state, training) -> Tensor:
    """Save what a backward needs; return ``y`` as ``x`` came: its memory format and dtype."""
    ctx.save_for_backward(*saved)
    ctx.buffers, ctx.state, ctx.training, ctx.layout = buffers, state, training, _layout(x)
    return in_format_of(y, x).to(x.dtype)


def _lambda_grad(dlam: Tensor, lam: Tensor) -> Tensor:
    """dθ from dλ (per channel) for λ = sigmoid(θ), θ a scalar or one per channel."""
    if lam.dim() == 0:
        dlam = dlam.sum()
    return dlam * lam * (1 - lam)


class GNPlusKernels(torch.autograd.Function):
    """The three GN+ variants on ATen kernels. ``state`` = (groups, eps, momentum, variant)."""

    @staticmethod
    def forward(ctx, x, weight, bias, theta, running_mean, running_var, training, state):
        groups, eps, momentum, variant = state
        xs = x.to(compute_dtype(x))
        n, c, h, w = xs.shape
        lam = torch.sigmoid(theta.to(xs.dtype))
        w_g = weight * lam
        w_b = weight - w_g
        if variant == "parallel":
            xg = group_norm_input(xs)  # both branches read it (see group_norm_input)
            y_g, g_mean, g_rstd = _gn(xg, w_g, bias, n, c, h * w, groups, eps)
            y, b_mean, b_invstd = _bn(
                xg, w_b, None, running_mean, running_var, training, momentum, eps
            )
            y = y.add_(y_g)
            saved = (xg, xg, xg)
        elif variant == "gn_first":
            xg = group_norm_input(xs)
            z, g_mean, g_rstd = _gn(xg, None, None, n, c, h * w, groups, eps)
            y, b_mean, b_invstd = _bn(
                z, w_b, bias, running_mean, running_var, training, momentum, eps
            )
            y = y.addcmul_(z, _channel_view(w_g))
            saved = (z, xg, z)
        else:  # bn_first
            xg = group_norm_input(xs)
            z, b_mean, b_invstd = _bn(
                xg, None, None, running_mean, running_var, training, momentum, eps
            )
            y, g_mean, g_rstd = _gn(z, w_g, bias, n, c, h * w, groups, eps)
            y = y.addcmul_(z, _channel_view(w_b))
            saved = (xg, z, z)
        saved += (weight, lam, w_g, w_b, g_mean, g_rstd, b_mean, b_invstd)
        return _keep(ctx, x, y, saved, (running_mean, running_var), state, training)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dy):
        bn_in, gn_in, z, weight, lam, w_g, w_b, g_mean, g_rstd, b_mean, b_invstd = ctx.saved_tensors
        groups, eps, _, variant = ctx.state
        rm, rv = ctx.buffers
        train = ctx.training
        dy = dy.to(g_rstd.dtype)
        n, c, h, w = dy.shape
        if variant == "parallel":
            dx_g, dw_g, dbias = _gn_backward(
                group_norm_input(dy), gn_in, g_mean, g_rstd, w_g, n, c, h * w, groups, [True] * 3
            )
            dx, dw_b, _ = _bn_backward(
                dy, bn_in, w_b, rm, rv, b_mean, b_invstd, train, eps, [True, True, False]
            )
            dx = dx.add_(dx_g)
        elif variant == "gn_first":
            dy = group_norm_input(dy)  # z (and so the whole chain) is contiguous
            dz, dw_b, dbias = _bn_backward(
                dy, z, w_b, rm, rv, b_mean, b_invstd, train, eps, [True] * 3
            )
            dw_g = torch.mul(dy, z).sum((0, 2, 3))  # Σ dy·z: the gradient of z's weight γλ
            dz = dz.addcmul_(dy, _channel_view(w_g))
            dx = _gn_backward(
                group_norm_input(dz), gn_in, g_mean, g_rstd, None, n, c, h * w, groups,
                [True, False, False],
            )[0]  # fmt: skip
        else:  # bn_first
            dz, dw_g, dbias = _gn_backward(
                group_norm_input(dy), gn_in, g_mean, g_rstd, w_g, n, c, h * w, groups, [True] * 3
            )
            dw_b = torch.mul(dy, z).sum((0, 2, 3))  # Σ dy·z: the gradient of z's weight γ(1−λ)
            dz = in_format_of(dz, dy).addcmul_(dy, _channel_view(w_b))
            dx = _bn_backward(
                dz, bn_in, None, rm, rv, b_mean, b_invstd, train, eps, [True, False, False]
            )[0]
        dweight = torch.lerp(dw_b, dw_g, lam)
        dtheta = _lambda_grad(weight * (dw_g - dw_b), lam)
        return in_format_of(dx, ctx.layout), dweight, dbias, dtheta, None, None, None, None


class ContinualKernels(torch.autograd.Function):
    """CN = BN(GN(x)) with γ, β on the BN step. ``state`` = (groups, eps, momentum)."""

    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, training, state):
        groups, eps, momentum = state
        xs = x.to(compute_dtype(x))
        n, c, h, w = xs.shape
        xg = group_norm_input(xs)
        z, g_mean, g_rstd = _gn(xg, None, None, n, c, h * w, groups, eps)
        y, b_mean, b_invstd = _bn(
            z, weight, bias, running_mean, running_var, training, momentum, eps
        )
        saved = (xg, z, weight, g_mean, g_rstd, b_mean, b_invstd)
        return _keep(ctx, x, y, saved, (running_mean, running_var), state, training)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dy):
        xg, z, weight, g_mean, g_rstd, b_mean, b_invstd = ctx.saved_tensors
        groups, eps, _ = ctx.state
        dy = group_norm_input(dy.to(g_rstd.dtype))
        n, c, h, w = dy.shape
        dz, dweight, dbias = _bn_backward(
            dy, z, weight, *ctx.buffers, b_mean, b_invstd, ctx.training, eps, [True] * 3
        )
        dx = _gn_backward(dz, xg, g_mean, g_rstd, None, n, c, h * w, groups, [True, False, False])[
            0
        ]
        return in_format_of(dx, ctx.layout), dweight, dbias, None, None, None, None


class BatchGroupKernels(torch.autograd.Function):
    """BGN: BN over x viewed as (N, G, C/G·H·W), then γ, β per channel."""

    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, training, state):
        groups, eps, momentum = state
        xs = group_norm_input(x.to(compute_dtype(x)))
        n, c, h, w = xs.shape
        zv, b_mean, b_invstd = _bn(
            xs.view(n, groups, -1), None, None, running_mean, running_var, training, momentum, eps
        )
        z = zv.view(n, c, h, w)
        y = torch.addcmul(_channel_view(bias), z, _channel_view(weight))
        saved = (xs, z, weight, b_mean, b_invstd)
        return _keep(ctx, x, y, saved, (running_mean, running_var), state, training)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dy):
        xs, z, weight, b_mean, b_invstd = ctx.saved_tensors
        groups, eps, _ = ctx.state
        dy = group_norm_input(dy.to(z.dtype))
        n = dy.shape[0]
        dweight = torch.mul(dy, z).sum((0, 2, 3))
        dbias = dy.sum((0, 2, 3))
        dz = torch.mul(dy, _channel_view(weight)).view(n, groups, -1)
        dx = _bn_backward(
            dz, xs.view(n, groups, -1), None, *ctx.buffers, b_mean, b_invstd, ctx.training, eps,
            [True, False, False],
        )[0].view_as(dy)  # fmt: skip
        return in_format_of(dx, ctx.layout), dweight, dbias, None, None, None, None


# -- under torch.compile: the same compositions from differentiable functional ops ---------------
# Dynamo traces a custom autograd.Function, but on CUDA (torch 2.11, H100) the traced backward of
# these Functions returned zeros, with every backend (eager, aot_eager, inductor) and with or
# without once_differentiable: a compiled GN+ ResNet-18 trained its classifier alone, since 80
# of its 82 parameters got zero gradients. On CPU the same graphs are correct. Under compile the
# layers therefore run these compositions of F.group_norm and F.batch_norm instead: the same
# arithmetic, differentiated by AOTAutograd through ops it knows, with no Function to trace.


def gnplus_functional(x, weight, bias, theta, running_mean, running_var, training, state):
    groups, eps, momentum, variant = state
    xs = x.to(compute_dtype(x))
    lam = torch.sigmoid(theta.to(xs.dtype))
    w_g = weight * lam
    w_b = weight - w_g
    stats = (running_mean, running_var)
    if variant == "parallel":
        y_g = F.group_norm(group_norm_input(xs), groups, w_g, bias, eps)
        y = F.batch_norm(xs, *stats, w_b, None, training, momentum, eps) + y_g
    elif variant == "gn_first":
        z = F.group_norm(group_norm_input(xs), groups, None, None, eps)
        y = F.batch_norm(z, *stats, w_b, bias, training, momentum, eps) + z * _channel_view(w_g)
    else:  # bn_first
        z = F.batch_norm(xs, *stats, None, None, training, momentum, eps)
        y = F.group_norm(group_norm_input(z), groups, w_g, bias, eps) + z * _channel_view(w_b)
    return in_format_of(y, x).to(x.dtype)


def continual_functional(x, weight, bias, running_mean, running_var, training, state):
    groups, eps, momentum = state
    z = F.group_norm(group_norm_input(x.to(compute_dtype(x))), groups, None, None, eps)
    y = F.batch_norm(z, running_mean, running_var, weight, bias, training, momentum, eps)
    return in_format_of(y, x).to(x.dtype)


def batch_group_functional(x, weight, bias, running_mean, running_var, training, state):
    groups, eps, momentum = state
    xs = group_norm_input(x.to(compute_dtype(x)))
    n = xs.shape[0]
    zv = F.batch_norm(
        xs.view(n, groups, -1), running_mean, running_var, None, None, training, momentum, eps
    )
    y = torch.addcmul(_channel_view(bias), zv.view_as(xs), _channel_view(weight))
    return in_format_of(y, x).to(x.dtype)


@functools.cache
def compiled(functional):
    """``impl="compiled"``: a layer's functional composition (``gnplus_functional``, …) under
    ``torch.compile(fullgraph=True)``. Inductor fuses the norm kernels, their backward and the
    mixing into a few generated kernels (on CUDA, Triton; on CPU, C++); ``fullgraph`` makes any
    graph break (a host sync, an untraceable call) an error instead of a silent slowdown. One
    compiled function per family: dynamo keeps at most 8 graphs per function, enough for one
    variant in training and eval, both layouts and a few shapes (shapes become dynamic after
    the first recompile), not for every variant in one process."""
    return torch.compile(functional, fullgraph=True)
