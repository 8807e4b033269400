"""The optimizer side: parameter groups (norm parameters exempt from decay), SGD or Adam at
the spec's (scaled) learning rate, and the schedule."""

from __future__ import annotations

import math

import torch
from torch import nn

from robustbench_norm.norms import is_norm_layer
from robustbench_norm.training.spec import TrainSpec


def param_groups(model: nn.Module, weight_decay: float, exempt_norm: bool) -> list[dict]:
    norm_params = set()
    if exempt_norm:
        for m in model.modules():
            if is_norm_layer(m):
                norm_params.update(id(p) for p in m.parameters())
    decay = [p for p in model.parameters() if id(p) not in norm_params]
    no_decay = [p for p in model.parameters() if id(p) in norm_params]
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def make_optimizer(spec: TrainSpec, model: nn.Module) -> torch.optim.Optimizer:
    groups = param_groups(model, spec.weight_decay, spec.exempt_norm_from_decay)
    if spec.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=spec.effective_lr, momentum=spec.momentum)
    return torch.optim.Adam(groups, lr=spec.effective_lr)


def lr_factor(schedule: str, step: int, total: int) -> float:
    if schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * step / total))
    if schedule == "step":  # ×0.1 at 50 % and 75 % of training
        return 0.1 ** ((step >= total // 2) + (step >= (3 * total) // 4))
    return 1.0
