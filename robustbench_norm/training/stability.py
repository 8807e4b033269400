"""Optimization-stability measures of Santurkar et al. (2018), "How does batch normalization help
optimization?", taken during training.

At a training step with parameters w, batch loss L and gradient g = ∇L(w), move along the gradient
by several step sizes η and record:

* loss landscape: L(w − η·g) for each η; its range (max − min) is how "kinky" the loss is along
  the direction training is about to take;
* gradient predictiveness: ‖∇L(w) − ∇L(w − η·g)‖, how much the gradient changes over that step;
* effective β-smoothness: max over η of ‖∇L(w) − ∇L(w − η·g)‖ / ‖η·g‖, a local estimate of the
  gradient's Lipschitz constant along g (for a quadratic it is at most the top Hessian eigenvalue).

The raw range grows with the step's length η·‖g‖, so a layer with larger gradients looks
rougher by construction (GN's gradients are larger than BN's). ``landscape_range_per_length``
divides the range by the longest step's length, η_max·‖g‖, and is what the claims compare;
β-smoothness is per length already. Measured in float32 even in a bf16 run (training/loop.py).

All over the whole network's parameters. Measuring never changes training: parameters, norm
running statistics and random-number state are restored. Every evaluation along the path uses
the same dropout/noise draws, so the measures see the loss surface, not a change of mask.

Two cheaper proxies from the GN+ authors' exploratory code are kept as clearly named
alternatives: ``loss_band`` (min/max training loss over runs at several learning rates) and the
``last_layer_grad_change`` column of the training log (‖g_t − g_{t−1}‖ of the classifier weight).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from robustbench_norm.errors import RobustBenchError


@dataclass(frozen=True)
class StabilitySpec:
    """When and how to take the measures. ``every=0`` switches them off."""

    every: int = 0
    etas: tuple[float, ...] = (0.05, 0.1, 0.2, 0.4)

    def __post_init__(self) -> None:
        if self.every < 0:
            raise RobustBenchError(f"stability.every={self.every} must be >= 0 (0 = off)")
        if not self.etas or any(not (e > 0) for e in self.etas):
            raise RobustBenchError(f"stability.etas={self.etas} must be positive step sizes")


def gradient_path_measures(
    params: Sequence[Tensor], loss_at: Callable[[], Tensor], etas: Iterable[float]
) -> dict[str, float]:
    """The three measures at the current ``params`` for the loss computed by ``loss_at()``.

    ``params`` are changed in place while measuring and restored before returning.
    """
    etas = list(etas)
    params = [p for p in params if p.requires_grad]
    start = [p.detach().clone() for p in params]
    loss0 = loss_at()
    grad0 = torch.autograd.grad(loss0, params, allow_unused=True)
    grad0 = [torch.zeros_like(p) if g is None else g for p, g in zip(params, grad0, strict=True)]
    gnorm = math.sqrt(sum(float(g.double().pow(2).sum()) for g in grad0))
    losses, changes, ratios = [], [], []
    try:
        for eta in etas:
            with torch.no_grad():
                for p, w, g in zip(params, start, grad0, strict=True):
                    p.copy_(w - eta * g)
            loss = loss_at()
            grad = torch.autograd.grad(loss, params, allow_unused=True)
            change = math.sqrt(
                sum(
                    float((g0 - (torch.zeros_like(g0) if g is None else g)).double().pow(2).sum())
                    for g0, g in zip(grad0, grad, strict=True)
                )
            )
            losses.append(float(loss.detach()))
            changes.append(change)
            ratios.append(change / (eta * gnorm) if gnorm > 0 else 0.0)
    finally:
        with torch.no_grad():
            for p, w in zip(params, start, strict=True):
                p.copy_(w)
    return {
        "loss": float(loss0.detach()),
        "grad_norm": gnorm,
        "landscape_min": min(losses),
        "landscape_max": max(losses),
        "landscape_range": max(losses) - min(losses),
        "landscape_range_per_length": (max(losses) - min(losses)) / (max(etas) * gnorm)
        if gnorm > 0
        else 0.0,
        "grad_change_min": min(changes),
        "grad_change_max": max(changes),
        "beta_smoothness": max(ratios),
    }


def model_stability(
    model: nn.Module,
    loss_fn: Callable[[Tensor], Tensor],
    inputs: Tensor,
    etas: Iterable[float],
    seed: int,
) -> dict[str, float]:
    """:func:`gradient_path_measures` for ``loss_fn(model(inputs))`` without side effects.

    Norm running statistics are restored afterwards, and the global RNG is forked and re-seeded
    with ``seed`` before every evaluation (same dropout masks and activation noise at each η).
    """
    buffers = {
        k: v.clone() for k, v in model.state_dict().items() if k in dict(model.named_buffers())
    }
    devices = [inputs.device] if inputs.device.type == "cuda" else []

    def loss_at() -> Tensor:
        torch.manual_seed(seed)
        return loss_fn(model(inputs))

    try:
        with torch.random.fork_rng(devices=devices):
            return gradient_path_measures(list(model.parameters()), loss_at, etas)
    finally:
        model.load_state_dict(buffers, strict=False)


def loss_band(curves: Sequence[Sequence[float]]) -> tuple[list[float], list[float]]:
    """Per step, the min and max training loss over runs at several learning rates (the GN+
    authors' cheaper landscape proxy). Curves are truncated to the shortest."""
    if not curves:
        raise RobustBenchError("loss_band needs at least one loss curve")
    length = min(len(c) for c in curves)
    lows = [min(c[i] for c in curves) for i in range(length)]
    highs = [max(c[i] for c in curves) for i in range(length)]
    return lows, highs
