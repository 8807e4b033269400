"""EvoNorm-S0 (Liu et al., NeurIPS 2020): a batch-independent norm-activation layer.

y = x · sigmoid(v ⊙ x) / group_std(x) ⊙ γ + β, with group_std over (channels of the group, H, W)
per sample. It replaces norm *and* ReLU, so models using it keep their ReLU (harmless after a
non-negative-ish gate, and it keeps every norm a drop-in swap).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from robustbench_norm.norms.checks import (
    DEFAULT_GROUPS,
    check_input,
    check_num_channels,
    resolve_groups,
)
from robustbench_norm.norms.moments import compute_dtype


class EvoNormS0(nn.Module):
    layer = "evonorm_s0"

    def __init__(self, num_channels: int, groups: int | str = DEFAULT_GROUPS, eps: float = 1e-5):
        super().__init__()
        check_num_channels(num_channels, self.layer)
        self.num_channels = num_channels
        self.groups = resolve_groups(groups, num_channels, self.layer)
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))
        self.v = nn.Parameter(torch.ones(num_channels))

    def forward(self, x: Tensor) -> Tensor:
        check_input(x, self.num_channels, self.layer)
        n, c = x.shape[:2]
        with torch.autocast(device_type=x.device.type, enabled=False):
            xs = x.to(compute_dtype(x))
            var = xs.reshape(n, self.groups, -1).var(dim=-1, correction=0)
            std = torch.sqrt(var + self.eps).repeat_interleave(c // self.groups, dim=1)
            gate = torch.sigmoid(self.v.view(1, c, 1, 1) * xs)
            y = xs * gate / std.view(n, c, 1, 1)
            y = y * self.weight.view(1, c, 1, 1) + self.bias.view(1, c, 1, 1)
        return y.to(x.dtype)

    def extra_repr(self) -> str:
        return f"{self.num_channels}, groups={self.groups}, eps={self.eps}"
