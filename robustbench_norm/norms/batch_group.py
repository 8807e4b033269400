"""Batch Group Normalization (Zhou et al., 2020): statistics over batch × group.

BN's statistics get noisy when N is small; GN's ignore the batch. BGN pools both: each group's
mean and variance are taken over (N, channels of the group, H, W), so the number of values per
statistic stays large at any batch size. Running statistics (one per group) serve evaluation.
"""

from __future__ import annotations

from robustbench_norm.norms.base import MomentNorm
from robustbench_norm.norms.checks import DEFAULT_GROUPS, resolve_groups
from robustbench_norm.norms.kernels import BatchGroupKernels, batch_group_functional
from robustbench_norm.norms.moments import batch_group_moments


class BatchGroupNorm(MomentNorm):
    """BGN(x) = γ ⊙ (x − μ_g) / sqrt(σ²_g + eps) + β with μ_g, σ²_g over (N, group, H, W)."""

    layer = "bgn"

    def __init__(
        self,
        num_channels: int,
        groups: int | str = DEFAULT_GROUPS,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        impl: str = "auto",
    ) -> None:
        groups = resolve_groups(groups, num_channels, self.layer)
        super().__init__(num_channels, eps=eps, momentum=momentum, impl=impl, stats_size=groups)
        self.groups = groups

    def _batch_statistics(self, mean, var):
        return batch_group_moments(mean, var, self.groups)

    def _values_per_statistic(self, x) -> int:
        return x.shape[0] * (x.shape[1] // self.groups) * x.shape[2] * x.shape[3]

    def _coefficients(self, mean, var, weight, bias, *, training):
        scale, shift = self._batch_normalizer(mean, var, training)
        per_group = self.num_channels // self.groups
        return (
            weight * scale.repeat_interleave(per_group),
            weight * shift.repeat_interleave(per_group) + bias,
        )

    _kernel_function = BatchGroupKernels
    _kernel_functional = staticmethod(batch_group_functional)
    _triton_variant = "bgn"

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, groups={self.groups}"
