"""Regularization sweeps: how much does each layer lose to dropout, mixup and activation noise?

The GN+ paper's claim is that GN is more sensitive than BN to perturbation from regularization.
``regularization_sweep`` turns one training spec into the specs that test it: one factor at a
time around the unregularized baseline (or the full grid with ``factorial=True``).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence

from robustbench_norm.training import TrainSpec
from robustbench_norm.training.activation_noise import ActivationNoise

DROPOUTS = (0.0, 0.1, 0.3, 0.5)
MIXUPS = (0.0, 0.2, 1.0)
PERTURBATIONS = ("none", "time_varying")


def regularization_sweep(
    spec: TrainSpec,
    dropouts: Sequence[float] = DROPOUTS,
    mixups: Sequence[float] = MIXUPS,
    perturbations: Sequence[str] = PERTURBATIONS,
    factorial: bool = False,
) -> list[TrainSpec]:
    """Specs differing from ``spec`` only in regularization; the baseline (no dropout, no mixup,
    no perturbation) comes first, duplicates are dropped."""
    base = dataclasses.replace(
        spec, dropout=0.0, mixup_alpha=0.0, perturbation=ActivationNoise("none")
    )
    if factorial:
        grid = itertools.product(dropouts, mixups, perturbations)
    else:
        grid = (
            [(0.0, 0.0, "none")]
            + [(d, 0.0, "none") for d in dropouts]
            + [(0.0, m, "none") for m in mixups]
            + [(0.0, 0.0, p) for p in perturbations]
        )
    out: list[TrainSpec] = []
    for d, m, p in grid:
        noise = dataclasses.replace(spec.perturbation, mode=p) if p != "none" else ActivationNoise()
        candidate = dataclasses.replace(base, dropout=d, mixup_alpha=m, perturbation=noise)
        if candidate not in out:
            out.append(candidate)
    return out


def regularizer_label(spec: TrainSpec) -> str:
    """A short name for what regularizes ``spec``: 'none', 'dropout=0.3', 'mixup=0.2', ..."""
    parts = []
    if spec.dropout:
        parts.append(f"dropout={spec.dropout:g}")
    if spec.mixup_alpha:
        parts.append(f"mixup={spec.mixup_alpha:g}")
    if spec.perturbation.enabled:
        parts.append(f"noise={spec.perturbation.mode}")
    return ", ".join(parts) or "none"
