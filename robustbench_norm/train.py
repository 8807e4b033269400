"""Training: a frozen spec in, a checkpoint and a compact training log out.

A run is a pure function of its :class:`TrainSpec`. Every random source (data order,
augmentation, mixup, dropout, activation noise, init) comes from the spec's seed, so on CPU the
same spec gives bit-identical weights. The checkpoint is named by the spec's key (spec + code
version): a finished spec is reused, and an interrupted one resumes from its last epoch with the
same result as an uninterrupted run. A non-finite loss ends the run as ``diverged`` at that
step: a result to report, not a crash.
"""

from __future__ import annotations

import dataclasses
import math
import os
import random
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustbench_norm.activation_noise import ActivationNoise, attach_activation_noise
from robustbench_norm.analysis import StabilitySpec, model_stability
from robustbench_norm.data import Split, dataset_info, load_split, to_float_nchw
from robustbench_norm.errors import RobustBenchError, StorageError
from robustbench_norm.models import MODELS, build_model
from robustbench_norm.norms import GNPlus, available, is_norm_layer, make_norm
from robustbench_norm.norms.registry import layer_identity, layer_origin
from robustbench_norm.progress import mark, progress_bar
from robustbench_norm.specs import check_seed, code_version, spec_key

#: the source a training result depends on (its cache key changes with any of these files)
TRAIN_CODE = (
    "norms",
    "models.py",
    "data.py",
    "embedded",
    "train.py",
    "activation_noise.py",
    "analysis.py",
)
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


# -- small pieces ----------------------------------------------------------------------------


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` → CUDA when there is one, else CPU. A device that is not there fails here, once,
    before any work: not in every job, and not as a damaged-checkpoint error."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise RobustBenchError(
            f"--device {device!r} is not a device name; use auto, cpu, cuda or cuda:N"
        ) from None
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise RobustBenchError(
                f"--device {device}: no CUDA device is available here; use --device cpu (or auto)"
            )
        if dev.index is not None and dev.index >= count:
            raise RobustBenchError(
                f"--device {device}: this machine has {count} CUDA device(s), cuda:0 to "
                f"cuda:{count - 1}"
            )
    elif dev.type != "cpu":
        raise RobustBenchError(f"--device {device}: only cpu and cuda devices are supported")
    return dev


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_generator(seed: int, epoch: int, device: torch.device) -> torch.Generator:
    """Data order and augmentation of one epoch: a function of (seed, epoch) only, so a run
    resumed at an epoch boundary sees exactly the batches an uninterrupted run would."""
    return torch.Generator(device=device).manual_seed(seed * 1_000_003 + epoch)


def augment_batch(x: Tensor, flip: bool, gen: torch.Generator, pad: int = 4) -> Tensor:
    """Random crop with zero padding ``pad`` and (optionally) horizontal flip, per sample."""
    n, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen, device=x.device)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen, device=x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    chan = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
    out = padded[batch, chan, rows, cols]
    if flip:
        mask = torch.rand(n, generator=gen, device=x.device) < 0.5
        out = torch.where(mask[:, None, None, None], out.flip(3), out)
    return out


def mixup_loss(logits: Tensor, y_a: Tensor, y_b: Tensor, lam: float) -> Tensor:
    """Zhang et al. (2018): the soft-target cross entropy λ·CE(y_a) + (1 − λ)·CE(y_b)."""
    return lam * F.cross_entropy(logits, y_a) + (1 - lam) * F.cross_entropy(logits, y_b)


def batches(
    images: Tensor, labels: Tensor, batch_size: int, gen: torch.Generator
) -> Iterator[tuple[Tensor, Tensor]]:
    """Shuffled full batches of one epoch (the ragged tail is dropped: batch size is a variable
    under study, so every step sees exactly ``batch_size`` samples)."""
    order = torch.randperm(len(labels), generator=gen, device=gen.device)
    for i in range(len(labels) // batch_size):
        idx = order[i * batch_size : (i + 1) * batch_size]
        yield images[idx], labels[idx]


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


def gnplus_lambdas(model: nn.Module) -> list[float]:
    """Mean λ of every GN+ layer, in module order."""
    return [float(m.mixing_weight.mean()) for m in model.modules() if isinstance(m, GNPlus)]


def classifier_weight(model: nn.Module) -> Tensor | None:
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    return linears[-1].weight if linears else None


def _atomic_save(obj: Any, path: Path) -> None:
    """Write ``path`` whole or not at all. A failed write (a full disk) leaves no ``.tmp`` and
    stops the run with :class:`StorageError`: every later checkpoint would fail the same way."""
    tmp = path.with_suffix(f"{path.suffix}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as e:  # torch reports a short write as a RuntimeError
        tmp.unlink(missing_ok=True)
        reason = getattr(e, "strerror", None) or str(e).strip().splitlines()[-1]
        raise StorageError(
            f"could not write checkpoint {path} ({reason}); free space or pass another "
            "--workdir, then rerun the same command: finished jobs are kept"
        ) from None


def _load_checkpoint(path: Path, device: torch.device, what: str) -> dict | None:
    """A checkpoint's payload, or None (with a warning) when it is damaged: a truncated file
    is a lost resume point, not a reason to fail the job on every rerun."""
    try:
        payload = torch.load(path, map_location=device, weights_only=False)
        if not isinstance(payload, dict) or "model" not in payload:
            raise ValueError("not a robustbench-norm checkpoint")
        return payload
    except Exception as e:  # torch raises anything from OSError to UnpicklingError here
        warnings.warn(f"{what} {path} is damaged ({e}); training this job again", stacklevel=3)
        path.unlink(missing_ok=True)
        return None


# -- the loop ------------------------------------------------------------------------------


def compute_tag(device: torch.device, threads: int | None = None) -> str:
    """What besides the spec decides a trained model's weights: the device type and, on a CPU,
    the torch thread count (reductions split differently: 1 and 2 threads gave BN clean
    accuracies 0.495 and 0.420 after the same 30 steps). Part of every checkpoint's path and
    job's key, so models trained under different settings are never mixed."""
    if device.type == "cuda":
        return "cuda"
    return f"cpu-{threads or torch.get_num_threads()}threads"


def checkpoint_dir(spec: TrainSpec, workdir: str | Path, device: torch.device) -> Path:
    return Path(workdir) / "checkpoints" / spec.key / compute_tag(device)


def load_trained(path: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """Model (eval mode) and payload of a finished checkpoint written by :func:`train`."""
    path = Path(path)
    device = resolve_device(device)
    if not path.is_file():
        raise RobustBenchError(f"checkpoint {path} does not exist; train the spec first")
    try:
        payload = torch.load(path, map_location=device, weights_only=False)
        norm = payload["spec"]["norm"]
    except Exception as e:
        payload, norm = None, None
        error = e
    if norm is not None and norm not in available():
        origin = payload.get("meta", {}).get("layer_origin")
        raise RobustBenchError(
            f"checkpoint {path} was trained with norm {norm!r}, which is not registered here; "
            f"pass --plugin MODULE, the module that registers it"
            + (f" (it came from {origin})" if origin else "")
        )
    try:
        if payload is None:
            raise error
        spec = TrainSpec.from_dict(payload["spec"])
    except Exception as e:
        raise RobustBenchError(
            f"checkpoint {path} is not a robustbench-norm checkpoint or is damaged "
            f"({type(e).__name__}: {str(e).strip().splitlines()[0] if str(e) else ''}); delete "
            "it and train again"
        ) from e
    model = spec.build_model().to(device)
    model.load_state_dict(payload["model"])
    return model.eval(), payload


def train(
    spec: TrainSpec,
    workdir: str | Path,
    *,
    device: str | torch.device = "auto",
    data_root: str | Path | None = None,
    download: bool = False,
    quiet: bool = False,
    stop_after_epoch: int | None = None,
    fresh: bool = False,
) -> TrainResult:
    """Train ``spec`` under ``workdir/checkpoints/<key>/`` and return the result.

    A finished checkpoint is returned as is (``cached=True``); a ``last.pt`` left by an
    interrupted run is resumed. ``fresh=True`` ignores both and trains from scratch (replacing
    them). ``stop_after_epoch`` ends the call after that many epochs with status "interrupted"
    (for chunked runs and for testing resume).
    """
    dev = resolve_device(device)
    out = checkpoint_dir(spec, workdir, dev)
    final, last = out / "final.pt", out / "last.pt"
    if fresh:
        final.unlink(missing_ok=True)
        last.unlink(missing_ok=True)
    if final.exists():
        payload = _load_checkpoint(final, torch.device("cpu"), "finished checkpoint")
        if payload is not None:
            return _result(spec, final, payload, cached=True)

    # cuBLAS is deterministic only with a fixed workspace; must be set before CUDA starts
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    train_split = load_split(spec.dataset, "train", data_root=data_root, download=download)
    if len(train_split) < spec.batch_size:
        raise RobustBenchError(
            f"train.batch_size={spec.batch_size} exceeds the {len(train_split)} training images "
            f"of {spec.dataset!r}"
        )
    run = _Run.start(spec, dev, len(train_split), last)
    images, labels = _device_tensors(train_split, dev)
    handles = attach_activation_noise(run.model, spec.perturbation)
    previous_deterministic = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    state = run.state
    progress = progress_bar(run.total, f"{spec.model}/{spec.norm}", "step", quiet, state["step"])
    started = time.perf_counter()
    try:
        run.model.train()
        for epoch in range(state["epoch"], run.epochs):
            if stop_after_epoch is not None and epoch >= stop_after_epoch:
                break
            run.train_epoch(epoch, images, labels, progress)
            mark(progress, f"epoch {epoch + 1}/{run.epochs}")
            if run.finished:
                break
            state["epoch"] = epoch + 1
            state["wall"] += time.perf_counter() - started
            started = time.perf_counter()
            run.save_resume_point(last)
    finally:
        progress.close()
        for h in handles:
            h.remove()
        torch.use_deterministic_algorithms(previous_deterministic)

    state["wall"] += time.perf_counter() - started
    if not run.finished:
        return TrainResult(
            spec, last, "interrupted", state["step"], None, state["log"], state["stability"],
            state["wall"], meta={"key": spec.key},
        )  # fmt: skip
    payload = {
        "model": run.model.state_dict(),
        "spec": spec.to_dict(),
        "status": "diverged" if state["diverged_step"] is not None else "done",
        "steps": state["step"],
        "diverged_step": state["diverged_step"],
        "log": state["log"],
        "stability": state["stability"],
        "wall_seconds": state["wall"],
        "meta": _provenance(spec, dev),
    }
    _atomic_save(payload, final)
    last.unlink(missing_ok=True)
    return _result(spec, final, payload, cached=False)


@dataclass
class _Run:
    """One training run in progress: the model, its optimizer and the resumable ``state`` (the
    step, the log, the stability rows, the wall time), which is what ``last.pt`` saves."""

    spec: TrainSpec
    dev: torch.device
    model: nn.Module
    forward: nn.Module
    opt: torch.optim.Optimizer
    base_lrs: list[float]
    total: int
    epochs: int
    state: dict[str, Any]
    #: the classifier's weight, whose gradient change between logged steps is recorded
    last_w: Tensor | None

    @classmethod
    def start(cls, spec: TrainSpec, dev: torch.device, images: int, last: Path) -> _Run:
        """A fresh run from the spec's seed, or the one ``last`` left, if it is readable."""
        total = spec.total_steps(images)
        epochs = math.ceil(total / (images // spec.batch_size))
        seed_everything(spec.seed)
        model = spec.build_model().to(dev)
        if spec.channels_last:
            model = model.to(memory_format=torch.channels_last)
        forward = torch.compile(model) if spec.compile else model  # same parameters, same state
        opt = make_optimizer(spec, model)
        base_lrs = [g["lr"] for g in opt.param_groups]
        state = {
            "epoch": 0,
            "step": 0,
            "log": {},
            "stability": [],
            "wall": 0.0,
            "diverged_step": None,
            "prev_last_grad": None,
        }
        ckpt = _load_checkpoint(last, dev, "resume point") if last.exists() else None
        if ckpt is not None:
            model.load_state_dict(ckpt["model"])
            opt.load_state_dict(ckpt["optimizer"])
            torch.set_rng_state(ckpt["rng_cpu"])
            if dev.type == "cuda" and ckpt.get("rng_cuda") is not None:
                torch.cuda.set_rng_state(ckpt["rng_cuda"], dev)
            state = ckpt["state"]
        last_w = classifier_weight(model)
        return cls(spec, dev, model, forward, opt, base_lrs, total, epochs, state, last_w)

    @property
    def finished(self) -> bool:
        return self.state["diverged_step"] is not None or self.state["step"] >= self.total

    def train_epoch(self, epoch: int, images: Tensor, labels: Tensor, progress) -> None:
        """The epoch's batches, in the order and with the augmentation and mixup draws that
        (seed, epoch) fix, until the step budget ends or the loss stops being finite."""
        spec, dev = self.spec, self.dev
        flip = dataset_info(spec.dataset).flip
        gen = epoch_generator(spec.seed, epoch, dev)
        mix_rng = np.random.default_rng([spec.seed, epoch])
        for x_u8, y in batches(images, labels, spec.batch_size, gen):
            if self.state["step"] >= self.total:
                break
            x = x_u8.float().div_(255.0)
            if spec.augment:
                x = augment_batch(x, flip, gen)
            if spec.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            lam, y_b = 1.0, y
            if spec.mixup_alpha > 0:
                lam = float(mix_rng.beta(spec.mixup_alpha, spec.mixup_alpha))
                perm = torch.randperm(len(y), generator=gen, device=dev)
                x, y_b = lam * x + (1 - lam) * x[perm], y[perm]
            loss = self.step(epoch, x, y, y_b, lam)
            if loss is None:
                break
            progress.update(1)
            progress.set_postfix(loss=f"{loss:.3f}", refresh=False)

    def step(self, epoch: int, x: Tensor, y: Tensor, y_b: Tensor, lam: float) -> float | None:
        """One optimizer step (with the stability measures first when they are due); the loss,
        or None when it was not finite (the run has diverged at this step)."""
        spec, state, step = self.spec, self.state, self.state["step"]

        def loss_of(logits, y=y, y_b=y_b, lam=lam):
            return mixup_loss(logits.float(), y, y_b, lam)

        if spec.stability.every and step % spec.stability.every == 0:
            # float32 even in a bf16 run: the measures compare losses along a path whose
            # differences bf16's 8-bit mantissa would round away
            with torch.autocast(self.dev.type, enabled=False):
                row = model_stability(
                    self.model, loss_of, x, spec.stability.etas, seed=spec.seed + step
                )
            state["stability"].append({"step": step, **row})

        for group, base_lr in zip(self.opt.param_groups, self.base_lrs, strict=True):
            group["lr"] = base_lr * lr_factor(spec.schedule, step, self.total)
        self.opt.zero_grad(set_to_none=True)
        bf16 = spec.precision == "bf16"
        with torch.autocast(self.dev.type, dtype=torch.bfloat16, enabled=bf16):
            logits = self.forward(x)
        loss = loss_of(logits)
        if not torch.isfinite(loss):
            state["diverged_step"] = step
            return None
        loss.backward()
        if step % spec.log_every == 0 or step == self.total - 1:
            self._log(epoch, step, logits, y, y_b, lam, float(loss.detach()))
        if self.last_w is not None:
            state["prev_last_grad"] = self.last_w.grad.detach().clone()
        self.opt.step()
        state["step"] = step + 1
        return float(loss.detach())

    def _log(self, epoch, step, logits, y, y_b, lam, loss) -> None:
        last_w = self.last_w
        grads = [p.grad for p in self.model.parameters() if p.grad is not None]
        pred = logits.argmax(1)
        accuracy = lam * float((pred == y).float().mean()) + (1 - lam) * float(
            (pred == y_b).float().mean()
        )
        change = None  # no previous gradient yet
        if last_w is not None and self.state["prev_last_grad"] is not None:
            change = float((last_w.grad - self.state["prev_last_grad"]).norm())
        _append(
            self.state["log"],
            step=step,
            epoch=epoch,
            loss=loss,
            accuracy=accuracy,
            grad_norm=float(torch.nn.utils.get_total_norm(grads)),
            lr=self.opt.param_groups[0]["lr"],
            last_layer_grad_change=change,
            lambdas=gnplus_lambdas(self.model),
        )

    def save_resume_point(self, last: Path) -> None:
        dev = self.dev
        _atomic_save(
            {
                "model": self.model.state_dict(),
                "optimizer": self.opt.state_dict(),
                "rng_cpu": torch.get_rng_state(),
                "rng_cuda": torch.cuda.get_rng_state(dev) if dev.type == "cuda" else None,
                "state": self.state,
                "spec": self.spec.to_dict(),
            },
            last,
        )


def _device_tensors(split: Split, dev: torch.device) -> tuple[Tensor, Tensor]:
    """uint8 NCHW images and labels on the training device (converted to float per batch)."""
    images = torch.from_numpy(np.ascontiguousarray(split.images)).permute(0, 3, 1, 2).contiguous()
    return images.to(dev), torch.from_numpy(split.labels).to(dev)


def _append(log: dict[str, list], **row: Any) -> None:
    for k, v in row.items():
        log.setdefault(k, []).append(v)


def _provenance(spec: TrainSpec, dev: torch.device) -> dict[str, Any]:
    return {
        "key": spec.key,
        "code_version": code_version(*TRAIN_CODE),
        "seed": spec.seed,
        "deterministic_algorithms": True,
        "torch": torch.__version__,
        "device": str(dev),
        "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
        "threads": torch.get_num_threads(),
        "layer_origin": layer_origin(spec.norm),
    }


def _result(spec: TrainSpec, path: Path, payload: dict, cached: bool) -> TrainResult:
    return TrainResult(
        spec=spec,
        checkpoint=path,
        status=payload["status"],
        steps=payload["steps"],
        diverged_step=payload["diverged_step"],
        log=payload["log"],
        stability=payload["stability"],
        wall_seconds=payload["wall_seconds"],
        cached=cached,
        meta=payload["meta"],
    )


def accuracy(model: nn.Module, split: Split, batch_size: int = 500, device: str = "cpu") -> float:
    """Clean top-1 accuracy in eval mode."""
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(split), batch_size):
            x = to_float_nchw(split.images[i : i + batch_size]).to(device)
            y = torch.from_numpy(split.labels[i : i + batch_size]).to(device)
            correct += int((model(x).argmax(1) == y).sum())
    return correct / len(split)
