"""Activation perturbation: the paper's analysis instrument, applied after every norm layer.

Santurkar et al. (2018) trained "noisy BatchNorm" networks: after each BN, every activation of
every sample gets i.i.d. noise from a distribution with non-zero mean and non-unit variance, and
that distribution changes at every step. The GN+ paper uses such perturbation to show that GN is
more sensitive to it than BN. Two modes, named for what they do:

* ``"time_varying"``: after Santurkar et al. At every training step and for every norm layer and
  channel c, draw a mean μ_c ~ U(−mean_range, mean_range) and a std σ_c ~ U(std_low, std_high);
  add ε ~ N(μ_c, σ_c²) independently to every activation (n, c, h, w).
* ``"shared_shift"``: the simpler perturbation of the GN+ authors' exploratory code. One additive
  shift per (sample, channel group), drawn from the fixed distribution N(0, shift_std²).

Noise is added in training mode only and never touches evaluation. It draws from torch's global
generator, which training seeds (and checkpoints), so runs stay reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from robustbench_norm.errors import RobustBenchError
from robustbench_norm.norms.checks import resolve_groups
from robustbench_norm.norms.registry import is_norm_layer

MODES = ("none", "time_varying", "shared_shift")


@dataclass(frozen=True)
class ActivationNoise:
    mode: str = "none"
    mean_range: float = 0.5
    std_low: float = 0.5
    std_high: float = 1.0
    shift_std: float = 0.5
    groups: int | str = "auto"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise RobustBenchError(
                f"perturbation.mode={self.mode!r} is not one of {', '.join(MODES)}"
            )
        if self.mean_range < 0 or self.shift_std < 0:
            raise RobustBenchError("perturbation.mean_range and shift_std must be >= 0")
        if not 0 <= self.std_low <= self.std_high:
            raise RobustBenchError(
                f"perturbation std range [{self.std_low}, {self.std_high}] needs "
                "0 <= std_low <= std_high"
            )

    @property
    def enabled(self) -> bool:
        return self.mode != "none"

    def sample(self, x: Tensor) -> Tensor:
        """Noise for one activation tensor (N, C, H, W), drawn afresh at each call."""
        n, c = x.shape[:2]
        opts = {"device": x.device, "dtype": x.dtype}
        if self.mode == "time_varying":
            mu = (torch.rand(1, c, 1, 1, **opts) * 2 - 1) * self.mean_range
            sigma = self.std_low + torch.rand(1, c, 1, 1, **opts) * (self.std_high - self.std_low)
            return _standard_normal(x) * sigma + mu
        groups = resolve_groups(self.groups, c, "perturbation")
        shift = torch.randn(n, groups, 1, 1, 1, **opts) * self.shift_std
        return shift.expand(n, groups, c // groups, 1, 1).reshape(n, c, 1, 1)


def _standard_normal(x: Tensor) -> Tensor:
    """i.i.d. N(0, 1) shaped and laid out like ``x``, drawn in ``x``'s memory order.

    ``randn_like`` on a channels_last tensor fills it through a strided path, 7× slower than a
    contiguous draw of the same size on these CPUs (BENCHMARKS.md, 2026-12-01): the 524k
    publication's noise-regularized runs trained 2.3–3.7× as long as their unregularized twins.
    Drawing (N, H, W, C) contiguously and permuting gives the same distribution in x's layout."""
    if (
        x.dim() == 4
        and x.is_contiguous(memory_format=torch.channels_last)
        and not x.is_contiguous()
    ):
        n, c, h, w = x.shape
        return torch.randn(n, h, w, c, device=x.device, dtype=x.dtype).permute(0, 3, 1, 2)
    return torch.randn_like(x)


def attach_activation_noise(model: nn.Module, noise: ActivationNoise) -> list:
    """Hook ``noise`` after every norm layer of ``model``; returns handles to ``.remove()``."""
    if not noise.enabled:
        return []

    def hook(module: nn.Module, inputs, output: Tensor) -> Tensor:
        if module.training:
            return output + noise.sample(output)
        return output

    handles = [m.register_forward_hook(hook) for m in model.modules() if is_norm_layer(m)]
    if not handles:
        raise RobustBenchError(
            "perturbation is on, but the model has no normalization layer to perturb after"
        )
    return handles
