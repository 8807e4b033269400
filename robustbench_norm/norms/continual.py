"""Continual Normalization (Pham et al., ICLR 2022): GN without affine, then BN.

The GN step removes each sample's own scale; the BN step then restores cross-sample statistics,
with running estimates for evaluation. It is GN+'s ``gn_first`` variant at λ = 0, and runs on the
same fused moment path.
"""

from __future__ import annotations

from robustbench_norm.norms.base import MomentNorm
from robustbench_norm.norms.checks import DEFAULT_GROUPS, resolve_groups
from robustbench_norm.norms.kernels import ContinualKernels, continual_functional
from robustbench_norm.norms.moments import group_moments, normalizer


class ContinualNorm(MomentNorm):
    """CN(x) = γ ⊙ BN(GN(x)) + β; running statistics are those of GN(x)."""

    layer = "cn"

    def __init__(
        self,
        num_channels: int,
        groups: int | str = DEFAULT_GROUPS,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        impl: str = "auto",
    ) -> None:
        super().__init__(num_channels, eps=eps, momentum=momentum, impl=impl)
        self.groups = resolve_groups(groups, num_channels, self.layer)

    def _tracked_moments(self, mean, var):
        scale, shift = normalizer(*group_moments(mean, var, self.groups), self.eps)
        return scale * mean + shift, scale.square() * var

    def _coefficients(self, mean, var, weight, bias, *, training):
        gn = normalizer(*group_moments(mean, var, self.groups), self.eps)
        bn = self._batch_normalizer(gn[0] * mean + gn[1], gn[0].square() * var, training)
        return weight * bn[0] * gn[0], weight * (bn[0] * gn[1] + bn[1]) + bias

    _kernel_function = ContinualKernels
    _kernel_functional = staticmethod(continual_functional)
    _triton_variant = "gn_first"  # at λ = 0

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, groups={self.groups}"
