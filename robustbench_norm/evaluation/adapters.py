"""The input contract of every model this benchmark evaluates, and a wrapper that makes a model
meet it.

The contract (the convention of RobustBench): the model takes float images of shape
(N, C, 32, 32) with pixels in [0, 1], C being the dataset's channel count (1 for Fashion-MNIST,
3 for CIFAR), and returns logits over the dataset's classes. Any normalization happens inside
the model, so noise, corruptions and attack budgets act on pixels. The benchmark's own models
do this; a model trained elsewhere usually needs :class:`InputAdapter`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn


class InputAdapter(nn.Module):
    """Wrap ``model`` so that it takes the benchmark's [0, 1] images.

    ``channels``: what the model expects; a 1-channel image is repeated to 3 (grayscale → RGB),
    a 3-channel one is averaged to 1. ``mean``/``std``: the normalization the model was trained
    with (one value per model channel, or one for all), applied after the channel change.
    E.g. ``InputAdapter(torchvision.models.resnet18(num_classes=10), channels=3,
    mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))``.
    """

    def __init__(
        self,
        model: nn.Module,
        channels: int | None = None,
        mean: Sequence[float] | float | None = None,
        std: Sequence[float] | float | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.channels = channels
        self.register_buffer("mean", _stat(mean, 0.0), persistent=False)
        self.register_buffer("std", _stat(std, 1.0), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        if self.channels is not None and x.shape[1] != self.channels:
            if x.shape[1] == 1:
                x = x.expand(-1, self.channels, -1, -1)
            elif self.channels == 1:
                x = x.mean(1, keepdim=True)
            else:
                raise ValueError(f"cannot turn {x.shape[1]} channels into {self.channels}")
        return self.model((x - self.mean) / self.std)


def _stat(value, default: float) -> Tensor:
    if value is None:
        value = default
    t = torch.as_tensor(value, dtype=torch.float32).flatten()
    return t.view(1, -1, 1, 1)
