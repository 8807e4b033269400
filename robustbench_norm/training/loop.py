"""Training: a frozen spec in, a checkpoint and a compact training log out.

A run is a pure function of its :class:`TrainSpec`. Every random source (data order,
augmentation, mixup, dropout, activation noise, init) comes from the spec's seed, so on CPU the
same spec gives bit-identical weights. The checkpoint is named by the spec's key (spec + code
version): a finished spec is reused, and an interrupted one resumes from its last epoch with the
same result as an uninterrupted run. A non-finite loss ends the run as ``diverged`` at that
step: a result to report, not a crash.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from robustbench_norm.data import Split, load_split, to_float_nchw
from robustbench_norm.errors import RobustBenchError
from robustbench_norm.norms.registry import layer_origin
from robustbench_norm.progress import mark, progress_bar
from robustbench_norm.specs import code_version
from robustbench_norm.training.activation_noise import attach_activation_noise
from robustbench_norm.training.batches import (
    device_tensors,
    epoch_batches,
    mixup_loss,
    seed_everything,
)
from robustbench_norm.training.checkpoints import (
    atomic_save,
    checkpoint_dir,
    load_checkpoint,
    resolve_device,
    restore_resume_point,
    save_resume_point,
)
from robustbench_norm.training.log import classifier_weight, log_step
from robustbench_norm.training.optim import lr_factor, make_optimizer
from robustbench_norm.training.spec import TRAIN_CODE, TrainResult, TrainSpec
from robustbench_norm.training.stability import model_stability


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
        payload = load_checkpoint(final, torch.device("cpu"), "finished checkpoint")
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
    images, labels = device_tensors(train_split, dev)
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
            save_resume_point(last, spec, run.model, run.opt, state, dev)
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
    atomic_save(payload, final)
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
        state = restore_resume_point(last, model, opt, dev) or state
        last_w = classifier_weight(model)
        return cls(spec, dev, model, forward, opt, base_lrs, total, epochs, state, last_w)

    @property
    def finished(self) -> bool:
        return self.state["diverged_step"] is not None or self.state["step"] >= self.total

    def train_epoch(self, epoch: int, images: Tensor, labels: Tensor, progress) -> None:
        """The epoch's batches (batches.epoch_batches) until the step budget ends or the loss
        stops being finite."""
        for x, y, y_b, lam in epoch_batches(self.spec, images, labels, epoch):
            if self.state["step"] >= self.total:
                break
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
            log_step(self.state, self.model, self.opt, self.last_w, epoch, step,
                     (logits, y, y_b, lam), float(loss.detach()))  # fmt: skip
        if self.last_w is not None:
            state["prev_last_grad"] = self.last_w.grad.detach().clone()
        self.opt.step()
        state["step"] = step + 1
        return float(loss.detach())


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
