"""Test-time statistics: normalize with the evaluated batch's moments instead of running averages.

A layer that keeps running statistics (BN, GN+'s BN branch, BGN, CN, and torch's own
``BatchNorm`` in anyone's model) normalizes in eval mode with averages collected during
training. Under a distribution shift — noise, a corruption — those averages no longer describe
the inputs, and the layer mis-normalizes every activation. Prediction-time BN (Nado et al.,
2020, arXiv 2006.10963) normalizes with the statistics of the test batch instead; Schneider et
al. (2020, arXiv 2006.16971) mix the two, treating the running averages as a prior worth ``N``
images against the batch's ``n``:

    μ = N/(N+n) · μ_running + n/(N+n) · μ_batch,    σ² = N/(N+n) · σ²_running + n/(N+n) · σ²_batch

``N = 0`` is pure test-batch statistics; ``N → ∞`` is the running averages. μ_batch and σ²_batch
are exactly what the layer normalizes with in training: the mean and *biased* variance of the
tensor its batch branch tracks (x for BN, GN+ ``parallel`` and ``bn_first`` and BGN's groups;
GN(x) for GN+ ``gn_first`` and CN), so ``N = 0`` in eval mode equals the layer in training mode
minus the running-average update.

:func:`using_batch_statistics` does this without touching the layers' code: before each forward a
hook puts the mixed moments where the running buffers were, the layer's ordinary eval path runs
(fused kernels included), and the running averages are put back afterwards — they never change.
The output then depends on the rest of the batch by definition, so the caller fixes the batch
(its size and which images share it) and reports it with the result.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from robustbench_norm.errors import RobustBenchError
from robustbench_norm.norms.base import MomentNorm
from robustbench_norm.norms.moments import (
    batch_moments,
    differentiable_moments,
    per_channel_moments,
)


def running_statistics_layers(model: nn.Module) -> list[nn.Module]:
    """The modules whose eval-mode output uses running averages: torch's BatchNorm family with
    tracked statistics, and the project's moment layers (GN+, BGN, CN)."""
    return [
        m
        for m in model.modules()
        if (isinstance(m, _BatchNorm) and m.running_mean is not None) or isinstance(m, MomentNorm)
    ]


def check_prior(prior: float, what: str = "prior") -> float:
    """Schneider et al.'s N: how many images the running averages count for (≥ 0; ∞ allowed)."""
    if isinstance(prior, bool) or not isinstance(prior, int | float) or not prior >= 0:
        raise RobustBenchError(
            f"{what}={prior!r} must be a number ≥ 0: the images the running averages count for "
            "against the test batch (0: the batch alone; Schneider et al. found N ≈ 16 good)"
        )
    return float(prior)


def batch_moments_of(module: nn.Module, x: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and biased variance of what ``module`` tracks, over the batch ``x``, shaped like its
    running buffers: the moments it would normalize with in training. Image activations go
    through the one-pass per-(n, c) moments of moments.py (no autograd: an evaluation needs
    none); other shapes (BatchNorm1d) through ``torch.var_mean``."""
    if x.dim() == 4:
        mean, var, _ = per_channel_moments(x)
    elif isinstance(module, MomentNorm):
        mean, var = differentiable_moments(x)
    else:
        dims = [0, *range(2, x.dim())]
        var, mean = torch.var_mean(x, dim=dims, correction=0)
        return mean, var
    if isinstance(module, MomentNorm):
        return module._batch_statistics(*module._tracked_moments(mean, var))
    return batch_moments(mean, var)


@contextmanager
def using_batch_statistics(model: nn.Module, prior: float = 0.0) -> Iterator[int]:
    """Within the block, every running-statistics layer of ``model`` normalizes with its input
    batch's moments mixed with its running averages at prior strength ``prior`` (see the module
    docstring). Yields how many layers were switched; the running averages are unchanged after
    the block (and during it, outside a layer's own forward)."""
    prior = check_prior(prior)
    layers = running_statistics_layers(model)
    saved: dict[nn.Module, tuple[Tensor, Tensor]] = {}

    def before(module: nn.Module, args: tuple) -> None:
        x = args[0]
        running = (module.running_mean, module.running_var)
        try:
            mean, var = batch_moments_of(module, x.to(running[0].dtype))
        except (RuntimeError, ValueError, IndexError):
            return  # not an input the layer takes: let its own check say so
        if mean.shape != running[0].shape:
            return  # likewise
        weight = 0.0 if math.isinf(prior) else x.shape[0] / (prior + x.shape[0])  # batch's share
        saved[module] = running
        module.running_mean = torch.lerp(running[0], mean, weight)
        module.running_var = torch.lerp(running[1], var, weight)

    def after(module: nn.Module, args: tuple, output: Tensor) -> None:
        if module in saved:
            module.running_mean, module.running_var = saved.pop(module)

    handles = []
    try:
        for m in layers:
            handles.append(m.register_forward_pre_hook(before))
            handles.append(m.register_forward_hook(after))
        yield len(layers)
    finally:
        for h in handles:
            h.remove()
        for m, (mean, var) in saved.items():  # a forward that raised between the hooks
            m.running_mean, m.running_var = mean, var
        saved.clear()
