"""``impl="triton"``: GN+ (every variant), CN and BGN on the kernels of triton_kernels.py.

Three launches forward (moments, coefficients, output) and three backward (sums, coefficients,
dx), whatever the variant; the activation is read as often as BN reads it. Triton is imported
only when a layer runs this path, so the package works where triton is missing.

Triton compiles kernels for CUDA. On CPU tensors the kernels run only under Triton's interpreter
(``TRITON_INTERPRET=1``, set before triton — or torch, which may import it — is first imported):
slow, exact, and how ``make test`` checks them on machines without a GPU. ``impl="auto"`` may
pick this path only for CUDA tensors, only where :func:`unsupported` finds nothing in the way,
and only once :data:`AUTO_PICKS_TRITON` is on.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import struct

import torch
from torch import Tensor

from robustbench_norm.errors import RobustBenchError
from robustbench_norm.norms.moments import compute_dtype

#: Whether ``impl="auto"`` uses these kernels for CUDA inputs. Off until they have been compiled
#: and timed on a GPU (``bash benchmarks/gpu/triton.sh``; issue 22): until then they are opt-in,
#: ``impl="triton"``, checked only through the interpreter.
AUTO_PICKS_TRITON = False
#: the most (samples × channels per group, both padded to powers of 2) the per-group coefficient
#: kernels hold at a time; a larger batch is walked in blocks (a bound against register spills,
#: to be revisited on a GPU)
MAX_COEFFICIENT_TILE = 4096
#: elements one program of a pass over the activation loads at a time
MAX_TILE = 4096
#: the kernels' ``VARIANT`` constexpr (CN runs as gn_first with λ = 0)
VARIANT_CODES = {"parallel": 0, "gn_first": 1, "bn_first": 2, "bgn": 3}
#: what the kernels accept; statistics accumulate in float32, or float64 for float64
DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


@functools.cache
def triton_available() -> bool:
    return importlib.util.find_spec("triton") is not None


def interpreting() -> bool:
    """Whether Triton runs kernels in its CPU interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on", "yes")


def _pow2(n: int) -> int:
    return 1 << max(0, n - 1).bit_length()


def unsupported(x: Tensor, channels_per_group: int) -> str | None:
    """Why the Triton kernels cannot normalize ``x``, or None if they can."""
    if not triton_available():
        return "triton is not installed (it ships with torch's CUDA wheels on Linux)"
    if not x.is_cuda and not interpreting():
        return (
            f"the input is on {x.device.type}: Triton compiles for CUDA (on CPU it runs only "
            "under TRITON_INTERPRET=1, slowly, for tests)"
        )
    if x.dtype not in DTYPES:
        return f"dtype {x.dtype} is not one of float16, bfloat16, float32, float64"
    if _pow2(channels_per_group) > MAX_COEFFICIENT_TILE:
        return (
            f"{channels_per_group} channels per group do not fit the coefficient kernels' "
            f"{MAX_COEFFICIENT_TILE} values"
        )
    return None


@functools.cache
def _pair(value: float) -> tuple[float, float]:
    """``value`` as float32 (hi, lo) with hi + lo == value to ~2⁻⁴⁸ (Triton passes floats as
    float32; a float64 layer needs eps and momentum to float64 precision)."""
    hi = _float32(value)
    return hi, _float32(value - hi)


def _float32(value: float) -> float:
    return struct.unpack("f", struct.pack("f", value))[0]


def _dense(x: Tensor) -> Tensor:
    """``x`` with (H, W) flattenable to one stride: NCHW or channels_last keep their layout,
    anything else is copied to NCHW."""
    h, w = x.shape[2:]
    if h == 1 or w == 1 or x.stride(2) == w * x.stride(3):
        return x
    return x.contiguous()


def _strides(t: Tensor) -> tuple[int, int, int]:
    """(n, c, hw) strides of a dense 4-D tensor, hw the flattened (H, W) index."""
    return t.stride(0), t.stride(1), t.stride(3) if t.shape[3] > 1 else t.stride(2)


def _tiles(x: Tensor) -> tuple[int, int]:
    """(BLOCK_C, BLOCK_HW) for the passes over the activation: the contiguous axis is the long
    side of the tile (channels for channels_last, (H, W) for NCHW), so loads coalesce."""
    c, hw = x.shape[1], x.shape[2] * x.shape[3]
    if x.stride(1) == 1 and c > 1:  # channels_last
        block_c = min(_pow2(c), 64)
        return block_c, max(1, min(_pow2(hw), MAX_TILE // block_c))
    block_hw = min(_pow2(hw), 1024, MAX_TILE)
    return max(1, min(_pow2(c), MAX_TILE // block_hw)), block_hw


def _coefficient_blocks(n: int, per_group: int) -> dict[str, int]:
    """BLOCK_K holds a group's channels; BLOCK_N as many samples as fit beside them."""
    block_k = _pow2(per_group)
    return {"BLOCK_N": max(1, min(_pow2(n), MAX_COEFFICIENT_TILE // block_k)), "BLOCK_K": block_k}


def _acc(dtype: torch.dtype):
    from triton import language as tl

    return tl.float64 if dtype == torch.float64 else tl.float32


@functools.cache
def _kernels():
    """triton_kernels, imported on first use (its decorators read TRITON_INTERPRET)."""
    from robustbench_norm.norms import triton_kernels

    return triton_kernels


class MomentTriton(torch.autograd.Function):
    """``state`` = (groups, eps, momentum, variant code); ``theta`` is None for CN and BGN
    (no λ: the kernels run with λ = 0)."""

    @staticmethod
    def forward(ctx, x, weight, bias, theta, running_mean, running_var, training, state):
        k = _kernels()
        groups, eps, momentum, variant = state
        x = _dense(x)
        n, c, h, w = x.shape
        hw, per_group = h * w, c // groups
        acc = compute_dtype(x)
        block_c, block_hw = _tiles(x)
        mean, var, a, b = (x.new_empty((n, c), dtype=acc) for _ in range(4))
        k.moments_kernel[(n, _cdiv(c, block_c))](
            x, mean, var, c, hw, *_strides(x),
            ACC=_acc(acc), BLOCK_C=block_c, BLOCK_HW=block_hw,
        )  # fmt: skip
        bn_mean, bn_scale = (x.new_empty(c, dtype=acc) for _ in range(2))
        count = n * hw * (per_group if variant == VARIANT_CODES["bgn"] else 1)  # per statistic
        theta_arg = weight if theta is None else theta
        k.coefficients_kernel[(groups,)](
            mean, var, weight, bias, theta_arg, 1 if theta_arg.dim() else 0,
            running_mean, running_var, a, b, bn_mean, bn_scale, n, c, per_group,
            *_pair(eps), *_pair(momentum), *_pair(count / max(count - 1, 1)),
            VARIANT=variant, TRAINING=training, HAS_LAMBDA=theta is not None,
            ACC=_acc(acc), **_coefficient_blocks(n, per_group),
        )  # fmt: skip
        y = torch.empty_like(x)
        _affine(x, None, y, mean, a, None, b)
        ctx.save_for_backward(x, mean, var, weight, theta_arg, bn_mean, bn_scale)
        ctx.state, ctx.training, ctx.has_lambda = state, training, theta is not None
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dy):
        k = _kernels()
        x, mean, var, weight, theta, bn_mean, bn_scale = ctx.saved_tensors
        groups, eps, _, variant = ctx.state
        dy = _dense(dy)
        n, c, h, w = x.shape
        hw, per_group = h * w, c // groups
        acc = mean.dtype
        block_c, block_hw = _tiles(x)
        s1, s2, alpha, kappa, beta0 = (x.new_empty((n, c), dtype=acc) for _ in range(5))
        k.backward_sums_kernel[(n, _cdiv(c, block_c))](
            dy, x, mean, s1, s2, c, hw, *_strides(dy), *_strides(x),
            ACC=_acc(acc), BLOCK_C=block_c, BLOCK_HW=block_hw,
        )  # fmt: skip
        dweight, dbias, dtheta = (x.new_empty(c, dtype=acc) for _ in range(3))
        k.backward_coefficients_kernel[(groups,)](
            mean, var, s1, s2, weight, theta, 1 if theta.dim() else 0, bn_mean, bn_scale,
            alpha, kappa, beta0, dweight, dbias, dtheta, n, c, per_group, hw, *_pair(eps),
            VARIANT=variant, TRAINING=ctx.training, HAS_LAMBDA=ctx.has_lambda,
            ACC=_acc(acc), **_coefficient_blocks(n, per_group),
        )  # fmt: skip
        dx = torch.empty_like(x)
        _affine(x, dy, dx, mean, kappa, alpha, beta0)
        grad_theta = None
        if ctx.has_lambda:
            grad_theta = (dtheta if theta.dim() else dtheta.sum()).to(theta.dtype)
        return (
            dx, dweight.to(weight.dtype), dbias.to(weight.dtype), grad_theta,
            None, None, None, None,
        )  # fmt: skip


def _affine(x, u, out, mean, kx, ku, k0) -> None:
    n, c, h, w = x.shape
    block_c, block_hw = _tiles(x)
    grid = (_cdiv(h * w, block_hw), n, _cdiv(c, block_c))
    _kernels().affine_kernel[grid](
        x, x if u is None else u, out, mean, kx, kx if ku is None else ku, k0, c, h * w,
        *_strides(x), *_strides(x if u is None else u), *_strides(out),
        HAS_U=u is not None, ACC=_acc(mean.dtype), BLOCK_C=block_c, BLOCK_HW=block_hw,
    )  # fmt: skip


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def apply(
    x: Tensor,
    weight: Tensor,
    bias: Tensor,
    theta: Tensor | None,
    running_mean: Tensor,
    running_var: Tensor,
    training: bool,
    state: tuple,
) -> Tensor:
    """Run the layer (``state`` = (groups, eps, momentum, variant name)), or say why it can't."""
    groups, eps, momentum, variant = state
    reason = unsupported(x, x.shape[1] // groups)
    if reason is not None:
        raise RobustBenchError(
            f"impl='triton' cannot run here: {reason}; use impl='auto' (it falls back to "
            "'kernels') or impl='kernels'"
        )
    code = VARIANT_CODES[variant]
    return MomentTriton.apply(
        x, weight, bias, theta, running_mean, running_var, training, (groups, eps, momentum, code)
    )
