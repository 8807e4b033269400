"""Plain float64 definitions of every layer, written from the papers' formulas.

Nothing here shares code with the package: these are the yardsticks the layers are held to.
"""

from __future__ import annotations

import torch
from torch import Tensor

EPS = 1e-5


def gn(x: Tensor, groups: int, eps: float = EPS) -> Tensor:
    n, c, h, w = x.shape
    xg = x.reshape(n, groups, -1)
    mu = xg.mean(-1, keepdim=True)
    var = ((xg - mu) ** 2).mean(-1, keepdim=True)
    return ((xg - mu) / torch.sqrt(var + eps)).reshape(n, c, h, w)


def batch_stats(x: Tensor) -> tuple[Tensor, Tensor]:
    """Per-channel mean and *biased* variance over (N, H, W)."""
    mu = x.mean(dim=(0, 2, 3))
    var = ((x - mu.view(1, -1, 1, 1)) ** 2).mean(dim=(0, 2, 3))
    return mu, var


def bn(x: Tensor, mu: Tensor, var: Tensor, eps: float = EPS) -> Tensor:
    return (x - mu.view(1, -1, 1, 1)) / torch.sqrt(var.view(1, -1, 1, 1) + eps)


class RunningStats:
    """BatchNorm2d's bookkeeping, written out."""

    def __init__(self, size: int, momentum: float = 0.1):
        self.mean = torch.zeros(size, dtype=torch.float64)
        self.var = torch.ones(size, dtype=torch.float64)
        self.momentum = momentum

    def update(self, mu: Tensor, biased_var: Tensor, count: int) -> None:
        m = self.momentum
        self.mean = (1 - m) * self.mean + m * mu
        self.var = (1 - m) * self.var + m * biased_var * count / (count - 1)


def affine(y: Tensor, gamma: Tensor, beta: Tensor) -> Tensor:
    return y * gamma.view(1, -1, 1, 1) + beta.view(1, -1, 1, 1)


def gnplus(
    x: Tensor,
    *,
    variant: str,
    lam: Tensor,
    gamma: Tensor,
    beta: Tensor,
    groups: int,
    training: bool,
    running: RunningStats,
) -> Tensor:
    """The three GN+ formulas; updates ``running`` in training like BatchNorm2d."""
    lam = lam.view(1, -1, 1, 1) if lam.dim() else lam
    count = x.shape[0] * x.shape[2] * x.shape[3]

    def bn_view(z: Tensor) -> Tensor:
        if training:
            mu, var = batch_stats(z)
            running.update(mu, var, count)
            return bn(z, mu, var)
        return bn(z, running.mean, running.var)

    if variant == "parallel":
        mixed = lam * gn(x, groups) + (1 - lam) * bn_view(x)
    elif variant == "gn_first":
        z = gn(x, groups)
        mixed = lam * z + (1 - lam) * bn_view(z)
    elif variant == "bn_first":
        z = bn_view(x)
        mixed = lam * gn(z, groups) + (1 - lam) * z
    else:
        raise ValueError(variant)
    return affine(mixed, gamma, beta)


def bgn(x: Tensor, groups: int, training: bool, running: RunningStats) -> Tensor:
    n, c, h, w = x.shape
    xg = x.reshape(n, groups, c // groups, h, w).transpose(0, 1).reshape(groups, -1)
    if training:
        mu = xg.mean(-1)
        var = ((xg - mu[:, None]) ** 2).mean(-1)
        running.update(mu, var, xg.shape[1])
    else:
        mu, var = running.mean, running.var
    mu_c = mu.repeat_interleave(c // groups).view(1, c, 1, 1)
    var_c = var.repeat_interleave(c // groups).view(1, c, 1, 1)
    return (x - mu_c) / torch.sqrt(var_c + EPS)


def cn(x: Tensor, groups: int, training: bool, running: RunningStats) -> Tensor:
    z = gn(x, groups)
    if training:
        mu, var = batch_stats(z)
        running.update(mu, var, x.shape[0] * x.shape[2] * x.shape[3])
        return bn(z, mu, var)
    return bn(z, running.mean, running.var)


def evonorm_s0(x: Tensor, groups: int, v: Tensor) -> Tensor:
    n, c, h, w = x.shape
    xg = x.reshape(n, groups, -1)
    var = ((xg - xg.mean(-1, keepdim=True)) ** 2).mean(-1, keepdim=True)
    std = torch.sqrt(var + EPS).expand_as(xg).reshape(n, c, h, w)
    return x * torch.sigmoid(v.view(1, -1, 1, 1) * x) / std
