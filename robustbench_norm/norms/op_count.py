"""How many ATen ops a layer runs per call: on a GPU each one is a kernel launch (~5 µs whatever
its size), so for the small activations of a CIFAR network the count, not the arithmetic, sets
the layer's cost. Counted on any device with a ``TorchDispatchMode``, which sees every op that
reaches ATen's kernels (views included: they dispatch too, although they launch nothing).
"""

from __future__ import annotations

from collections import Counter

import torch
from torch import Tensor, nn
from torch.utils._python_dispatch import TorchDispatchMode

#: ops that only reinterpret metadata: dispatched, but no kernel launch on a GPU
METADATA_OPS = {
    "view", "_unsafe_view", "reshape", "expand", "as_strided", "alias", "detach", "t",
    "transpose", "permute", "squeeze", "unsqueeze", "select", "slice", "split", "unbind",
    "lift_fresh",
}  # fmt: skip


class _Counter(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.ops: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops[func.overloadpacket.__name__] += 1
        return func(*args, **(kwargs or {}))


def count_ops(layer: nn.Module, x: Tensor) -> dict[str, Counter[str]]:
    """ATen ops of one training-mode call of ``layer`` on ``x``: ``forward``, and ``backward``
    (``y.backward(dy)`` for a given dy: the ops of the layer's backward and of autograd's
    gradient accumulation into x and the parameters)."""
    x = x.detach().requires_grad_(True)
    dy = torch.randn_like(x)
    layer.zero_grad(set_to_none=True)
    with _Counter() as forward:
        y = layer(x)
    with _Counter() as backward:
        y.backward(dy)
    return {"forward": forward.ops, "backward": backward.ops}


def launches(ops: Counter[str]) -> int:
    """Ops that launch a kernel (everything but metadata-only views)."""
    return sum(n for op, n in ops.items() if op not in METADATA_OPS)
