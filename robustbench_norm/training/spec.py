"""What determines a trained model: :class:`TrainSpec` (frozen, hashed into every cache key)
and what a training call returns (:class:`TrainResult`)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from robustbench_norm.data import dataset_info
from robustbench_norm.errors import RobustBenchError
from robustbench_norm.norms import available, make_norm
from robustbench_norm.norms.registry import layer_identity
from robustbench_norm.specs import check_seed, code_version, spec_key
from robustbench_norm.training.activation_noise import ActivationNoise
from robustbench_norm.training.models import MODELS, build_model
from robustbench_norm.training.stability import StabilitySpec

#: the source a training result depends on (its cache key changes with any of these files)
TRAIN_CODE = ("norms", "training", "data.py", "embedded")
OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("cosine", "step", "constant")
PRECISIONS = ("fp32", "bf16")
#: linear lr scaling: lr × batch_size / REFERENCE_BATCH (Goyal et al. 2017)
REFERENCE_BATCH = 128


@dataclass(frozen=True)
class TrainSpec:
    """Everything that determines a trained model. Equal specs give equal models."""

    model: str = "resnet20"
    norm: str = "bn"
    norm_options: tuple[tuple[str, Any], ...] = ()
    width: int | None = None
    dataset: str = "fashion-mnist-mini"
    batch_size: int = 128
    epochs: int = 1
    #: total optimizer steps; when set it overrides ``epochs``
    steps: int | None = None
    #: total training images to see (steps = images // batch_size); overrides ``epochs``, so
    #: batch sizes compared at one data budget see the same number of images
    images: int | None = None
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    #: "linear": lr × batch_size / 128
    lr_scaling: str = "none"
    schedule: str = "cosine"
    weight_decay: float = 5e-4
    #: no weight decay on norm parameters (γ, β, GN+'s θ): decay on θ would pull λ to 0.5
    exempt_norm_from_decay: bool = True
    seed: int = 0
    augment: bool = True
    dropout: float = 0.0
    mixup_alpha: float = 0.0
    perturbation: ActivationNoise = field(default_factory=ActivationNoise)
    stability: StabilitySpec = field(default_factory=StabilitySpec)
    precision: str = "fp32"
    channels_last: bool = False
    #: run the training forward and backward through ``torch.compile(model)`` (moment layers
    #: with ``impl="auto"`` then take their traceable kernel path); part of the key, since
    #: compiled kernels round differently
    compile: bool = False
    #: keep a log row every ``log_every`` steps
    log_every: int = 10

    def __post_init__(self) -> None:
        if isinstance(self.norm_options, dict):
            object.__setattr__(self, "norm_options", tuple(sorted(self.norm_options.items())))
        if isinstance(self.perturbation, dict):
            object.__setattr__(self, "perturbation", ActivationNoise(**self.perturbation))
        if isinstance(self.stability, dict):
            stab = dict(self.stability)
            if "etas" in stab:
                stab["etas"] = tuple(stab["etas"])
            object.__setattr__(self, "stability", StabilitySpec(**stab))
        checks = [
            (self.optimizer in OPTIMIZERS, "optimizer", f"one of {', '.join(OPTIMIZERS)}"),
            (self.schedule in SCHEDULES, "schedule", f"one of {', '.join(SCHEDULES)}"),
            (self.precision in PRECISIONS, "precision", f"one of {', '.join(PRECISIONS)}"),
            (self.lr_scaling in ("none", "linear"), "lr_scaling", "'none' or 'linear'"),
            (self.batch_size >= 1, "batch_size", "a positive integer"),
            (self.epochs >= 1, "epochs", "a positive integer"),
            (self.steps is None or self.steps >= 1, "steps", "a positive integer or unset"),
            (
                self.images is None or self.images >= self.batch_size,
                "images",
                "unset or at least one batch",
            ),
            (self.steps is None or self.images is None, "images", "unset when steps is set"),
            (0 < self.lr < math.inf, "lr", "positive and finite"),
            (0 <= self.momentum < 1, "momentum", "in [0, 1)"),
            (0 <= self.weight_decay < math.inf, "weight_decay", ">= 0 and finite"),
            (0 <= self.dropout < 1, "dropout", "in [0, 1)"),
            (0 <= self.mixup_alpha < math.inf, "mixup_alpha", ">= 0 (0 = off) and finite"),
            (self.log_every >= 1, "log_every", "a positive integer"),
        ]
        for ok, name, allowed in checks:
            if not ok:
                raise RobustBenchError(f"train.{name}={getattr(self, name)!r} must be {allowed}")
        check_seed(self.seed, "train.seed")
        # names fail here, before any data is loaded (each raises naming the valid choices)
        dataset_info(self.dataset)
        if self.model not in MODELS:
            build_model(self.model, self.norm, 1, 1)
        if self.norm not in available():
            make_norm(self.norm, 1)

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.norm_options)

    @property
    def effective_lr(self) -> float:
        scale = self.batch_size / REFERENCE_BATCH if self.lr_scaling == "linear" else 1.0
        return self.lr * scale

    @property
    def key(self) -> str:
        """Spec + this package's training code + the identity of a plugin layer's source."""
        return spec_key(self, code_version(*TRAIN_CODE) + layer_identity(self.norm))

    def total_steps(self, train_images: int) -> int:
        """Optimizer steps for a training set of ``train_images`` images."""
        if self.steps:
            return self.steps
        if self.images:
            return self.images // self.batch_size
        return self.epochs * (train_images // self.batch_size)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["norm_options"] = dict(self.norm_options)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainSpec:
        return cls(**d)

    def build_model(self) -> nn.Module:
        info = dataset_info(self.dataset)
        return build_model(
            self.model,
            self.norm,
            num_classes=info.num_classes,
            in_channels=info.in_channels,
            width=self.width,
            dropout=self.dropout,
            mean=info.mean,
            std=info.std,
            **self.options,
        )


@dataclass
class TrainResult:
    spec: TrainSpec
    checkpoint: Path
    #: "done", "diverged", or "interrupted" (stopped early on request; resumable)
    status: str
    steps: int
    diverged_step: int | None
    #: columnar log: {"step": [...], "loss": [...], ...}
    log: dict[str, list]
    #: one row per measured step (empty unless ``spec.stability.every`` > 0)
    stability: list[dict[str, float]]
    wall_seconds: float
    #: True when an existing finished checkpoint was reused
    cached: bool = False
    meta: dict[str, Any] = field(default_factory=dict)
