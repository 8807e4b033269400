"""GN+: a learnable mix of a group-normalized and a batch-normalized view (arXiv 2207.01972).

GN trains less stably than BN and is more sensitive to noise; BN degrades at small batch sizes.
GN+ lets each layer learn how much of each it wants, through λ = sigmoid(θ):

* ``parallel`` (default): y = γ ⊙ (λ·GN(x) + (1 − λ)·BN(x)) + β
* ``gn_first``:           z = GN(x);  y = γ ⊙ (λ·z + (1 − λ)·BN(z)) + β
* ``bn_first``:           z = BN(x);  y = γ ⊙ (λ·GN(z) + (1 − λ)·z) + β

GN and BN here carry no affine of their own (only the outer γ, β). BN normalizes with the biased
batch variance in training and tracks running statistics exactly like ``torch.nn.BatchNorm2d``
(momentum 0.1, unbiased variance); in eval mode it uses them, so a sample's output never depends
on the rest of its batch. This corrects the published reference code, whose "BN" branch keeps a
separate statistic per channel *and pixel*, has no running statistics (so test accuracy depends
on the test batch, and batch size 1 gives NaN) and adds eps to the std instead of the variance.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from robustbench_norm.errors import RobustBenchError
from robustbench_norm.norms.base import MomentNorm
from robustbench_norm.norms.checks import DEFAULT_GROUPS, resolve_groups
from robustbench_norm.norms.kernels import GNPlusKernels, gnplus_functional
from robustbench_norm.norms.moments import group_moments, normalizer

VARIANTS = ("parallel", "gn_first", "bn_first")

#: λ at initialization in the reference code: sigmoid(1)
DEFAULT_LAMBDA = 1.0 / (1.0 + math.exp(-1.0))


class GNPlus(MomentNorm):
    """GN+ normalization. ``mixing_weight`` is λ; ``lambda_logit`` is the learned θ.

    ``per_channel_lambda`` learns one λ per channel instead of one per layer.
    ``learn_lambda=False`` freezes λ at ``lambda_init`` (then 0 and 1 are allowed: λ = 1 is plain
    GN); θ is then a buffer, so it is saved but never touched by an optimizer or weight decay.
    The state dict is a superset of BatchNorm2d's: a BN checkpoint loads into GN+ (θ keeps its
    initial value).
    """

    layer = "gnplus"

    def __init__(
        self,
        num_channels: int,
        groups: int | str = DEFAULT_GROUPS,
        variant: str = "parallel",
        lambda_init: float = DEFAULT_LAMBDA,
        per_channel_lambda: bool = False,
        learn_lambda: bool = True,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        impl: str = "auto",
    ) -> None:
        super().__init__(num_channels, eps=eps, momentum=momentum, impl=impl)
        if variant not in VARIANTS:
            raise RobustBenchError(
                f"gnplus: variant={variant!r} is not one of {', '.join(VARIANTS)}"
            )
        lo_ok = 0.0 <= lambda_init <= 1.0 if not learn_lambda else 0.0 < lambda_init < 1.0
        if not lo_ok:
            allowed = "[0, 1]" if not learn_lambda else "(0, 1) (0 and 1 need learn_lambda=False)"
            raise RobustBenchError(f"gnplus: lambda_init={lambda_init} must lie in {allowed}")
        self.groups = resolve_groups(groups, num_channels, self.layer)
        self.variant = variant
        theta = torch.full((num_channels,) if per_channel_lambda else (), _logit(lambda_init))
        if learn_lambda:
            self.lambda_logit = nn.Parameter(theta)
        else:
            self.register_buffer("lambda_logit", theta)

    @property
    def mixing_weight(self) -> Tensor:
        """λ = sigmoid(θ): the weight of the group-normalized view."""
        return torch.sigmoid(self.lambda_logit.detach())

    def _extra_params(self) -> tuple[Tensor, ...]:
        return (self.lambda_logit,)

    def _tracked_moments(self, mean: Tensor, var: Tensor) -> tuple[Tensor, Tensor]:
        if self.variant != "gn_first":
            return mean, var
        scale, shift = normalizer(*group_moments(mean, var, self.groups), self.eps)
        return scale * mean + shift, scale.square() * var

    def _coefficients(self, mean, var, weight, bias, lambda_logit, *, training):
        lam = torch.sigmoid(lambda_logit.to(mean.dtype))
        gn = normalizer(*group_moments(mean, var, self.groups), self.eps)
        if self.variant == "parallel":
            bn = self._batch_normalizer(mean, var, training)
            scale = lam * gn[0] + (1 - lam) * bn[0]
            shift = lam * gn[1] + (1 - lam) * bn[1]
        elif self.variant == "gn_first":
            # z = s_g·x + t_g; the BN view of z is s_b·z + t_b
            bn = self._batch_normalizer(gn[0] * mean + gn[1], gn[0].square() * var, training)
            mix = lam + (1 - lam) * bn[0]
            scale = mix * gn[0]
            shift = mix * gn[1] + (1 - lam) * bn[1]
        else:  # bn_first: z = s_b·x + t_b; the GN view of z is s_g·z + t_g
            bn = self._batch_normalizer(mean, var, training)
            zmean, zvar = bn[0] * mean + bn[1], bn[0].square() * var
            gz = normalizer(*group_moments(zmean, zvar, self.groups), self.eps)
            mix = lam * gz[0] + (1 - lam)
            scale = mix * bn[0]
            shift = mix * bn[1] + lam * gz[1]
        return weight * scale, weight * shift + bias

    _kernel_function = GNPlusKernels
    _kernel_functional = staticmethod(gnplus_functional)

    def _kernel_args(self, x: Tensor, momentum: float) -> tuple:
        state = (self.groups, self.eps, momentum, self.variant)
        return (
            x, self.weight, self.bias, self.lambda_logit, self.running_mean, self.running_var,
            self.training, state,
        )  # fmt: skip

    @property
    def _triton_variant(self) -> str:
        return self.variant

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # A BatchNorm2d checkpoint has everything but θ: keep θ's initial value for it.
        key = prefix + "lambda_logit"
        if key not in state_dict and prefix + "running_mean" in state_dict:
            state_dict = {**state_dict, key: self.lambda_logit.detach().clone()}
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        lam = self.mixing_weight
        shown = f"{lam.item():.4f}" if lam.dim() == 0 else f"per-channel, mean {lam.mean():.4f}"
        return f"{super().extra_repr()}, groups={self.groups}, variant={self.variant!r}, λ={shown}"


def _logit(p: float) -> float:
    if p <= 0.0:
        return -math.inf
    if p >= 1.0:
        return math.inf
    return math.log(p / (1.0 - p))
