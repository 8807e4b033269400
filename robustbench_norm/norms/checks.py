"""Input and option checks shared by every layer, so each error names the layer and the fix."""

from __future__ import annotations

import math

from torch import Tensor

from robustbench_norm.errors import NormInputError, RobustBenchError

#: The GN default of Wu & He (2018); also the default for every grouped layer here.
DEFAULT_GROUPS = 32
#: how the moment layers compute: one-pass moments (moments.py), ATen's norm kernels
#: (kernels.py), those under torch.compile, Triton kernels (triton_layers.py, CUDA), plain
#: autograd, or ``auto`` (kernels; triton for CUDA inputs once timed on a GPU: base.py)
IMPLS = ("auto", "fused", "kernels", "compiled", "triton", "autograd")


def resolve_groups(groups: int | str, num_channels: int, layer: str) -> int:
    """Turn the ``groups`` option into a group count that divides ``num_channels``.

    A non-divisor is an error rather than a silent change: the group count is part of what is
    being benchmarked. ``groups="auto"`` opts into the largest divisor of ``num_channels`` that is
    at most 32, which lets one setting cover every width of a model.
    """
    if groups == "auto":
        return max(g for g in range(1, DEFAULT_GROUPS + 1) if num_channels % g == 0)
    if isinstance(groups, bool) or not isinstance(groups, int):
        raise RobustBenchError(f"{layer}: groups={groups!r} must be a positive integer or 'auto'")
    if groups < 1:
        raise RobustBenchError(f"{layer}: groups={groups} must be at least 1")
    if num_channels % groups:
        raise RobustBenchError(
            f"{layer}: num_channels={num_channels} is not divisible by groups={groups}; "
            f"pass a divisor of {num_channels} as groups, or groups='auto' for the largest "
            f"divisor <= {DEFAULT_GROUPS}"
        )
    return groups


def check_num_channels(num_channels: int, layer: str) -> None:
    if isinstance(num_channels, bool) or not isinstance(num_channels, int) or num_channels < 1:
        raise RobustBenchError(f"{layer}: num_channels={num_channels!r} must be a positive integer")


def check_options(layer: str, **options) -> None:
    """The options every norm family shares, checked when the layer is built (not at its first
    forward): a zero ``eps`` divides by zero on a constant channel, a ``momentum`` outside
    [0, 1] extrapolates the running statistics instead of averaging them."""
    if "eps" in options:
        eps = options["eps"]
        if isinstance(eps, bool) or not isinstance(eps, int | float) or not 0 < eps < math.inf:
            raise RobustBenchError(f"{layer}: eps={eps!r} must be a positive number, e.g. 1e-5")
    if "momentum" in options and options["momentum"] is not None:
        m = options["momentum"]
        if isinstance(m, bool) or not isinstance(m, int | float) or not 0 <= m <= 1:
            raise RobustBenchError(
                f"{layer}: momentum={m!r} must lie in [0, 1] (or be None for a cumulative "
                "average), e.g. 0.1"
            )
    if "impl" in options and options["impl"] not in IMPLS:
        raise RobustBenchError(
            f"{layer}: impl={options['impl']!r} is not one of {', '.join(map(repr, IMPLS))} "
            "(triton runs on CUDA; the others on CPU and CUDA)"
        )


def check_input(x: Tensor, num_channels: int, layer: str) -> None:
    """Every layer here normalizes floating-point (N, C, H, W) feature maps with a fixed C."""
    if not x.is_floating_point():
        raise NormInputError(
            f"{layer} expects a floating-point input; got {x.dtype} (convert with x.float())"
        )
    if x.dim() != 4:
        raise NormInputError(
            f"{layer} expects a 4-D input (N, C, H, W); got shape {tuple(x.shape)}"
        )
    if x.shape[1] != num_channels:
        raise NormInputError(
            f"{layer} was built for {num_channels} channels; got shape {tuple(x.shape)} "
            f"with {x.shape[1]} channels"
        )
