"""The compact training log: one row every ``log_every`` steps (loss, accuracy on the batch,
gradient norm, learning rate, the classifier's gradient change, GN+'s λ per layer), kept in
columns in the resumable state so that an interrupted run's log continues where it stopped."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from robustbench_norm.norms import GNPlus


def log_step(
    state: dict[str, Any],
    model: nn.Module,
    opt: torch.optim.Optimizer,
    last_w: Tensor | None,
    epoch: int,
    step: int,
    batch: tuple[Tensor, Tensor, Tensor, float],
    loss: float,
) -> None:
    """Append one row to ``state["log"]`` after the backward pass of ``step``; ``batch`` is
    (logits, labels, mixup partner labels, mixup λ)."""
    logits, y, y_b, lam = batch
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    pred = logits.argmax(1)
    accuracy = lam * float((pred == y).float().mean()) + (1 - lam) * float(
        (pred == y_b).float().mean()
    )
    change = None  # no previous gradient yet
    if last_w is not None and state["prev_last_grad"] is not None:
        change = float((last_w.grad - state["prev_last_grad"]).norm())
    _append(
        state["log"],
        step=step,
        epoch=epoch,
        loss=loss,
        accuracy=accuracy,
        grad_norm=float(torch.nn.utils.get_total_norm(grads)),
        lr=opt.param_groups[0]["lr"],
        last_layer_grad_change=change,
        lambdas=gnplus_lambdas(model),
    )


def gnplus_lambdas(model: nn.Module) -> list[float]:
    """Mean λ of every GN+ layer, in module order."""
    return [float(m.mixing_weight.mean()) for m in model.modules() if isinstance(m, GNPlus)]


def classifier_weight(model: nn.Module) -> Tensor | None:
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    return linears[-1].weight if linears else None


def _append(log: dict[str, list], **row: Any) -> None:
    for k, v in row.items():
        log.setdefault(k, []).append(v)
