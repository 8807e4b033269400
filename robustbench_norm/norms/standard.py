"""BatchNorm and the GroupNorm family (GN, LN, IN) as torch's own kernels.

These are the baselines every ratio is measured against, so they stay torch's modules, state
dicts included; the subclasses only add the project's input errors.
"""

from __future__ import annotations

from torch import Tensor, nn

from robustbench_norm.norms.checks import (
    DEFAULT_GROUPS,
    check_input,
    check_num_channels,
    resolve_groups,
)


class BatchNorm(nn.BatchNorm2d):
    """``torch.nn.BatchNorm2d`` with errors that show the offending shape."""

    def __init__(
        self,
        num_channels: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
    ) -> None:
        check_num_channels(num_channels, "bn")
        super().__init__(num_channels, eps, momentum, affine, track_running_stats)
        self.num_channels = num_channels

    def _check_input_dim(self, x: Tensor) -> None:
        check_input(x, self.num_features, "bn")


class GroupNorm(nn.GroupNorm):
    """``torch.nn.GroupNorm`` with errors that show the offending shape.

    ``groups`` may be ``"auto"``: see :func:`resolve_groups`.
    """

    def __init__(
        self,
        num_channels: int,
        groups: int | str = DEFAULT_GROUPS,
        eps: float = 1e-5,
        affine: bool = True,
        *,
        layer: str = "gn",
    ) -> None:
        check_num_channels(num_channels, layer)
        super().__init__(resolve_groups(groups, num_channels, layer), num_channels, eps, affine)
        self.layer = layer

    def forward(self, x: Tensor) -> Tensor:
        check_input(x, self.num_channels, self.layer)
        return super().forward(x)


def layer_norm(num_channels: int, eps: float = 1e-5, affine: bool = True) -> GroupNorm:
    """LN for conv nets: one group, i.e. statistics over (C, H, W) per sample."""
    return GroupNorm(num_channels, 1, eps, affine, layer="ln")


def instance_norm(num_channels: int, eps: float = 1e-5, affine: bool = True) -> GroupNorm:
    """IN: one group per channel, statistics over (H, W); no running statistics."""
    return GroupNorm(num_channels, num_channels, eps, affine, layer="in")
