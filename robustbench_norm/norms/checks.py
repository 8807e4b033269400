"""Input and option checks shared by every layer, so each error names the layer and the fix."""

from __future__ import annotations

from torch import Tensor

from robustbench_norm.errors import NormInputError, RobustBenchError

#: The GN default of Wu & He (2018); also the default for every grouped layer here.
DEFAULT_GROUPS = 32


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


def check_input(x: Tensor, num_channels: int, layer: str) -> None:
    """Every layer here normalizes (N, C, H, W) feature maps with a fixed C."""
    if x.dim() != 4:
        raise NormInputError(
            f"{layer} expects a 4-D input (N, C, H, W); got shape {tuple(x.shape)}"
        )
    if x.shape[1] != num_channels:
        raise NormInputError(
            f"{layer} was built for {num_channels} channels; got shape {tuple(x.shape)} "
            f"with {x.shape[1]} channels"
        )
