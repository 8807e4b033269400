"""Evaluate a trained model under one perturbation family, keeping per-example results.

``evaluate(checkpoint_or_model, split, perturbation)`` always runs in eval mode and returns, for
every condition (a noise σ, a corruption at a severity, an attack at an ε), the per-example
correctness flags and predicted labels in the split's order, plus summary metrics. The result
does not depend on the evaluation batch size: perturbed inputs are drawn per example from seeds
(noise), read from the on-disk cache (corruptions) or attacked in fixed, seeded chunks (attacks),
so every model of a suite sees identical inputs.

The one exception is an evaluation under test-time statistics (:class:`BatchStatistics`): BN-style
layers then normalize with the moments of the evaluated batch, so the result depends on that
batch by definition. Its batch is part of the setting: consecutive chunks of ``batch`` images of
the split, in the split's order (the last one may be smaller), every image of a chunk under the
same perturbation condition; the setting's label names it and is stored with every result.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from robustbench_norm.data import Split, default_cache_dir, to_float_nchw
from robustbench_norm.errors import RobustBenchError
from robustbench_norm.evaluation import metrics
from robustbench_norm.evaluation.settings import (
    AttackSpec,
    BatchStatistics,
    CleanSpec,
    CorruptionSpec,
    NoiseSequenceSpec,
    NoiseSpec,
    PerturbationSpec,
    family_of,
)
from robustbench_norm.norms.adaptation import running_statistics_layers, using_batch_statistics
from robustbench_norm.perturb.attacks import run_attack
from robustbench_norm.perturb.corruptions import CorruptionCache, load_precomputed
from robustbench_norm.perturb.noise import gaussian_noise_images, noise_sequence_images
from robustbench_norm.progress import progress_bar
from robustbench_norm.training import load_trained, resolve_device


@dataclass
class Condition:
    """One perturbed copy of the split and how the model did on it, per example."""

    name: str
    parameter: float | None
    correct: np.ndarray
    predictions: np.ndarray

    @property
    def accuracy(self) -> float:
        return metrics.accuracy(self.correct)


@dataclass
class EvalResult:
    family: str
    spec: PerturbationSpec
    clean_correct: np.ndarray
    clean_predictions: np.ndarray
    conditions: list[Condition]
    #: tidy rows: {"name", "parameter", "metric", "value"}
    metrics: list[dict[str, Any]]
    warnings: list[str] = field(default_factory=list)

    @property
    def clean_accuracy(self) -> float:
        return metrics.accuracy(self.clean_correct)

    def metric(self, name: str, parameter: float | None, metric: str) -> float:
        for row in self.metrics:
            if (row["name"], row["parameter"], row["metric"]) == (name, parameter, metric):
                return row["value"]
        raise KeyError((name, parameter, metric))


def predict(
    model: nn.Module, images: np.ndarray, batch_size: int, device: torch.device
) -> np.ndarray:
    """Predicted labels for uint8 NHWC images, in eval mode."""
    model.eval()
    out = np.empty(len(images), dtype=np.int64)
    with torch.no_grad():
        for i in range(0, len(images), batch_size):
            x = to_float_nchw(images[i : i + batch_size]).to(device)
            out[i : i + batch_size] = model(x).argmax(1).cpu().numpy()
    return out


def evaluate(
    checkpoint_or_model: str | Path | nn.Module,
    split: Split,
    perturbation: PerturbationSpec,
    *,
    batch_size: int = 500,
    device: str | torch.device = "auto",
    cache_dir: str | Path | None = None,
    workers: int | None = None,
    quiet: bool = True,
    statistics: BatchStatistics | None = None,
) -> EvalResult:
    """Evaluate a checkpoint (path) or model under ``perturbation`` on ``split``; with
    ``statistics``, under test-time statistics in batches of ``statistics.batch`` (its
    ``batch_size`` is then ignored)."""
    dev = resolve_device(device)
    if isinstance(checkpoint_or_model, nn.Module):
        model = checkpoint_or_model.to(dev).eval()
    else:
        model, _ = load_trained(checkpoint_or_model, dev)
    if batch_size < 1:
        raise RobustBenchError(f"batch_size={batch_size} must be a positive integer")
    if statistics is not None:
        return _evaluate_adapted(model, split, perturbation, statistics, dev, cache_dir, workers)
    clean_pred = predict(model, split.images, batch_size, dev)
    clean_correct = clean_pred == split.labels
    family = family_of(perturbation)
    result = EvalResult(family, perturbation, clean_correct, clean_pred, [], [])
    result.metrics.append(_row("clean", None, "accuracy", metrics.accuracy(clean_correct)))

    def add(name: str, parameter: float | None, predictions: np.ndarray) -> Condition:
        cond = Condition(name, parameter, predictions == split.labels, predictions)
        result.conditions.append(cond)
        result.metrics.append(_row(name, parameter, "accuracy", cond.accuracy))
        return cond

    if isinstance(perturbation, NoiseSpec):
        for sigma in perturbation.sigmas:
            noisy = gaussian_noise_images(split, sigma, perturbation.seed)
            add("gaussian_noise", sigma, predict(model, noisy, batch_size, dev))
        accs = [c.accuracy for c in result.conditions if c.parameter]
        if accs:
            result.metrics.append(_row("gaussian_noise", None, "mean_accuracy", np.mean(accs)))
    elif isinstance(perturbation, NoiseSequenceSpec):
        frames = noise_sequence_images(
            split, perturbation.frames, perturbation.sigma, perturbation.seed
        )
        preds = np.stack([predict(model, f, batch_size, dev) for f in frames])
        noisy = [(preds[k] == split.labels).mean() for k in range(1, len(frames))]
        rows = [
            ("flip_probability", metrics.flip_probability(preds)),
            ("consecutive_flip_probability", metrics.consecutive_flip_probability(preds[1:])),
            ("mean_accuracy", float(np.mean(noisy))),
        ]
        for metric, value in rows:
            result.metrics.append(_row("noise_sequence", perturbation.sigma, metric, value))
    elif isinstance(perturbation, CorruptionSpec):
        _evaluate_corruptions(
            model, split, perturbation, result, add, batch_size, dev, cache_dir, workers, quiet
        )
    elif isinstance(perturbation, AttackSpec):
        _evaluate_attack(model, split, perturbation, result, batch_size, dev, quiet)
    elif not isinstance(perturbation, CleanSpec):
        raise RobustBenchError(f"unknown perturbation spec {perturbation!r}")
    return result


def _evaluate_adapted(model, split, perturbation, statistics, dev, cache_dir, workers):
    if isinstance(perturbation, AttackSpec):
        raise RobustBenchError(
            "attacks are evaluated with running statistics only: under test-batch statistics "
            "an attacked image's prediction depends on the other images of its batch, so the "
            "threat model would have to say what the attacker controls; drop the attack from "
            "the test-statistics evaluation"
        )
    if not running_statistics_layers(model):
        raise RobustBenchError(
            f"{type(model).__name__} has no layer with running statistics: its test-batch "
            "results would equal its running ones; evaluate it without statistics"
        )
    with using_batch_statistics(model, statistics.prior):
        return evaluate(
            model,
            split,
            perturbation,
            batch_size=statistics.batch,
            device=dev,
            cache_dir=cache_dir,
            workers=workers,
        )


def _evaluate_corruptions(
    model, split, spec, result, add, batch_size, dev, cache_dir, workers, quiet
) -> None:
    conditions = [(c, s) for c in spec.names for s in spec.severities]
    if spec.corruptions_dir is None:
        cache = CorruptionCache(cache_dir or default_cache_dir())
        paths = cache.ensure(
            split, conditions, spec.seed, workers=workers, quiet=quiet, table=spec.table
        )
    for c, s in conditions:
        if spec.corruptions_dir is None:
            images = np.load(paths[(c, s)])
        else:
            images = load_precomputed(spec.corruptions_dir, c, s, split)
        add(c, float(s), predict(model, images, batch_size, dev))
    per_name = {}
    for c in spec.names:
        accs = [x.accuracy for x in result.conditions if x.name == c]
        per_name[c] = float(np.mean(accs))
        result.metrics.append(_row(c, None, "mean_accuracy", per_name[c]))
    result.metrics.append(
        _row("all", None, "mean_corruption_accuracy", float(np.mean(list(per_name.values()))))
    )


def _evaluate_attack(model, split, spec, result, batch_size, dev, quiet) -> None:
    images, labels = split.tensors()
    with progress_bar(len(split), spec.name, "img", quiet) as bar:
        attack = run_attack(model, images, labels, spec, result.clean_correct, dev, bar)
    for k, eps in enumerate(attack.epsilons):
        cond = Condition(spec.name, eps, attack.robust[k], attack.predictions[k])
        result.conditions.append(cond)
        result.metrics.append(_row(spec.name, eps, "robust_accuracy", cond.accuracy))
        result.metrics.append(
            _row(spec.name, eps, "max_perturbation", float(attack.perturbation_norms[k].max()))
        )
    result.warnings.extend(attack.warnings)


def _row(name: str, parameter: float | None, metric: str, value: float) -> dict[str, Any]:
    return {"name": name, "parameter": parameter, "metric": metric, "value": float(value)}


def corruption_error_table(result: EvalResult) -> dict[tuple[str, int], float]:
    """(corruption, severity) → top-1 error, the input of :func:`metrics.corruption_errors`."""
    if result.family != "corruption":
        raise RobustBenchError(f"a {result.family} result has no corruption errors")
    return {(c.name, int(c.parameter)): 1.0 - c.accuracy for c in result.conditions}
