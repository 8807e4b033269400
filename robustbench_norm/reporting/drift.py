"""Slow drift: a loss spread over many nights, each within chance, together real.

The nightly gate compares one night with the nights before it; a metric that slips a little
every night passes every night (the slipped nights join the pool). The drift test looks at the
history of trusted nights of one era (``reporting/pool.py``) instead, as a change-point test
with a fixed split: the runs of the last :data:`WINDOW` nights against the runs of every
earlier night, one-sided Welch (is the recent window worse?), training runs as the unit. One
test per (norm, setting, primary metric); Holm over them.

**Looking every night.** The test runs again each night on a history that grew by one night,
so a 30-night history gets 21 looks (from night 2 × WINDOW on) and false alarms add up. The
per-look level is Bonferroni over those looks, α / 21: simulated null histories (3 norms × 3
metrics, 2 runs a night, the smoke suite's seed spreads) then raise any alarm in 30 nights at
a rate of 0.046 for α = 0.05 (Bonferroni over the 6 disjoint windows instead gave 0.13: the
looks are less alike than their shared data suggests). Beyond :data:`HORIZON` nights the
rate keeps growing with the looks; a new era (a layer change) starts the count again.
``benchmarks/drift_calibration.py`` measures it and the detection of a planted drift; the
numbers are in BENCHMARKS.md, and ``tests/test_drift.py`` repeats them at a smaller scale.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from robustbench_norm.reporting import statistics
from robustbench_norm.reporting.check import LOWER_IS_BETTER
from robustbench_norm.suites.store import Store

#: nights in the recent window, and at least as many before it
WINDOW = 5
#: the history length over which the family-wise false-alarm rate is held at α
HORIZON = 30

#: one night of one series: the values of its training runs
NightRuns = Sequence[float]


@dataclass(frozen=True)
class DriftFinding:
    series: str  # "gnplus · resnet20 · bs 64 · clean/accuracy"
    recent: float  # mean over the last WINDOW nights' runs
    reference: float  # mean over the earlier nights' runs
    delta: float  # recent − reference, oriented so that negative is worse
    p_value: float
    p_adjusted: float  # Holm over the series, compared with the per-look level
    drift: bool

    def describe(self) -> str:
        return (
            f"{self.series}: last {WINDOW} nights {self.recent:.4f} vs earlier "
            f"{self.reference:.4f} (Δ {self.delta:+.4f}, Holm p {self.p_adjusted:.2g})"
        )

    def to_dict(self) -> dict:
        return {
            k: statistics.finite_or_none(v) if isinstance(v, float) else v
            for k, v in self.__dict__.items()
        }


def look_level(alpha: float) -> float:
    """The level of one nightly look that keeps any false alarm over HORIZON nights ≤ α:
    Bonferroni over the looks such a history gets (from night 2 × WINDOW on)."""
    return alpha / (HORIZON - 2 * WINDOW + 1)


def detect_drift(
    history: Mapping[str, Sequence[NightRuns]], alpha: float = 0.05
) -> list[DriftFinding]:
    """Series name → its nights (oldest first), each the values of that night's runs; a
    finding per series with enough nights (``2 × WINDOW``), Holm-adjusted together. Series
    named ``…/<metric>`` with a lower-is-better metric are turned round."""
    rows = []
    for name, nights in history.items():
        nights = [n for n in nights if len(n)]
        if len(nights) < 2 * WINDOW:
            continue
        sign = -1.0 if name.split("/")[-1].split(" ")[0] in LOWER_IS_BETTER else 1.0
        reference = sign * np.concatenate([np.asarray(n, float) for n in nights[:-WINDOW]])
        recent = sign * np.concatenate([np.asarray(n, float) for n in nights[-WINDOW:]])
        test = statistics.noninferiority(reference, recent, 0.0)
        if test is None:
            continue
        rows.append((name, float(sign * recent.mean()), float(sign * reference.mean()),
                     float(recent.mean() - reference.mean()), test.p_value))  # fmt: skip
    adjusted = statistics.holm([r[4] for r in rows])
    level = look_level(alpha)
    return [
        DriftFinding(name, recent, ref, delta, p, q, bool(q < level))
        for (name, recent, ref, delta, p), q in zip(rows, adjusted, strict=True)
    ]


def night_series(store: Store, runs: Sequence[int], metrics: Sequence[str]) -> dict[str, list]:
    """Series name → per night (``runs``, oldest first; empty where a night has none) the
    values of its finished runs, for the condition-free values of ``metrics`` (FAMILY/METRIC)
    under running statistics."""
    wanted = set(metrics)
    out: dict[str, list[list[float]]] = {}
    for i, run_id in enumerate(runs):
        for r in store.results_of_run(run_id):
            metric = f"{r['family']}/{r['metric']}"
            if (
                r["status"] != "done" or metric not in wanted or r["parameter"] is not None
                or not r["batch_size"]  # a benchmarked external model: not a draw
                or r["value"] is None or not math.isfinite(r["value"])
            ):  # fmt: skip
                continue
            setting = f"{r['model']} · bs {r['batch_size']}" + (
                "" if r["regularizer"] == "none" else f" · {r['regularizer']}"
            )
            nights = out.setdefault(f"{r['norm']} · {setting} · {metric}", [[] for _ in runs])
            nights[i].append(float(r["value"]))
    return out
