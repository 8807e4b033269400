"""CIFAR-style classifiers with the normalization layer injected by registry name.

Each model takes [0, 1] pixels and owns its input normalization (per-channel mean/std buffers),
so attacks and corruptions act in pixel space and a checkpoint carries everything needed to
evaluate it. ``width`` is the channel count of the first stage; later stages scale from it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustbench_norm.errors import RobustBenchError
from robustbench_norm.norms import make_norm

NormMaker = Callable[[int], nn.Module]


class InputNormalization(nn.Module):
    """(x − mean) / std per channel; buffers, so they travel with the checkpoint."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std


class BasicBlock(nn.Module):
    """3×3 → norm → ReLU → 3×3 → norm, plus shortcut, then ReLU (He et al. 2016)."""

    def __init__(self, cin: int, cout: int, stride: int, norm: NormMaker, shortcut: str) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.norm1 = norm(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.norm2 = norm(cout)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            if shortcut == "projection":  # option B: 1×1 conv + norm (torchvision ResNet-18)
                self.shortcut = nn.Sequential(
                    nn.Conv2d(cin, cout, 1, stride, bias=False), norm(cout)
                )
            else:  # option A: subsample and zero-pad channels, parameter-free (CIFAR ResNet-20)
                self.shortcut = PadShortcut(cout - cin, stride)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class PadShortcut(nn.Module):
    def __init__(self, extra_channels: int, stride: int) -> None:
        super().__init__()
        self.extra, self.stride = extra_channels, stride

    def forward(self, x: Tensor) -> Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        half = self.extra // 2
        return F.pad(x, (0, 0, 0, 0, half, self.extra - half))


class ResNet(nn.Module):
    """CIFAR ResNet: 3×3 stem (no max-pool), stages of BasicBlocks, global pool, linear."""

    def __init__(
        self,
        blocks: Sequence[int],
        widths: Sequence[int],
        shortcut: str,
        norm: NormMaker,
        num_classes: int,
        in_channels: int,
        dropout: float,
        normalize: InputNormalization,
    ) -> None:
        super().__init__()
        self.normalize = normalize
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False), norm(widths[0]), nn.ReLU()
        )
        layers, cin = [], widths[0]
        for i, (n, cout) in enumerate(zip(blocks, widths, strict=True)):
            for j in range(n):
                stride = 2 if (i > 0 and j == 0) else 1
                layers.append(BasicBlock(cin, cout, stride, norm, shortcut))
                cin = cout
        self.layers = nn.Sequential(*layers)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.layers(self.stem(self.normalize(x)))
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        return self.fc(self.dropout(x))


class VGG(nn.Module):
    """VGG-11 for 32×32 inputs: 8 conv(3×3) → norm → ReLU layers, 5 max-pools, linear head."""

    CONFIG = (1, "M", 2, "M", 4, 4, "M", 8, 8, "M", 8, 8, "M")  # multiples of width

    def __init__(
        self,
        width: int,
        norm: NormMaker,
        num_classes: int,
        in_channels: int,
        dropout: float,
        normalize: InputNormalization,
    ) -> None:
        super().__init__()
        self.normalize = normalize
        layers: list[nn.Module] = []
        cin = in_channels
        for item in self.CONFIG:
            if item == "M":
                layers += [nn.MaxPool2d(2), nn.Dropout(dropout)]
            else:
                cout = item * width
                layers += [nn.Conv2d(cin, cout, 3, 1, 1, bias=False), norm(cout), nn.ReLU()]
                cin = cout
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.features(self.normalize(x))
        return self.fc(torch.flatten(x, 1))


def _resnet18(width, **kw) -> nn.Module:
    return ResNet([2, 2, 2, 2], [width, 2 * width, 4 * width, 8 * width], "projection", **kw)


def _resnet20(width, **kw) -> nn.Module:
    return ResNet([3, 3, 3], [width, 2 * width, 4 * width], "pad", **kw)


def _vgg11(width, **kw) -> nn.Module:
    return VGG(width, **kw)


#: name → (builder, default width, description)
MODELS: dict[str, tuple[Callable[..., nn.Module], int, str]] = {
    "resnet18": (_resnet18, 64, "ResNet-18, CIFAR stem (3×3 conv, no max-pool), 11.2M params"),
    "resnet20": (_resnet20, 16, "ResNet-20 (He et al. CIFAR): 3 stages × 3 blocks, 0.27M params"),
    "vgg11": (_vgg11, 64, "VGG-11: 8 conv+norm+ReLU layers, 5 max-pools, linear head"),
}


def available_models() -> list[str]:
    return sorted(MODELS)


def build_model(
    name: str,
    norm: str,
    num_classes: int,
    in_channels: int,
    width: int | None = None,
    dropout: float = 0.0,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    **norm_options,
) -> nn.Module:
    """Build model ``name`` with every normalization layer made by ``make_norm(norm, ...)``.

    ``mean``/``std`` are the per-channel input statistics the model normalizes with (defaults:
    0.5 and 0.25 per channel). Dropout sits before the classifier (ResNets) or after every pool
    (VGG). A norm option that does not fit one of the model's widths (e.g. ``groups`` not
    dividing a stage's channels) fails here, naming the numbers.
    """
    if name not in MODELS:
        raise RobustBenchError(
            f"unknown model {name!r}; valid names: {', '.join(available_models())}"
        )
    builder, default_width, _ = MODELS[name]
    width = default_width if width is None else width
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise RobustBenchError(f"width={width!r} must be a positive integer")
    if not 0.0 <= dropout < 1.0:
        raise RobustBenchError(f"dropout={dropout} must lie in [0, 1)")
    mean = (0.5,) * in_channels if mean is None else tuple(mean)
    std = (0.25,) * in_channels if std is None else tuple(std)
    if len(mean) != in_channels or len(std) != in_channels:
        raise RobustBenchError(
            f"mean/std have {len(mean)}/{len(std)} entries; in_channels={in_channels} "
            "needs that many"
        )

    def norm_layer(channels: int) -> nn.Module:
        return make_norm(norm, channels, **norm_options)

    return builder(
        width,
        norm=norm_layer,
        num_classes=num_classes,
        in_channels=in_channels,
        dropout=dropout,
        normalize=InputNormalization(mean, std),
    )
