"""Calibration of the regression gate's statistical tier, by resampling stored runs.

A gate is only as good as its error rates, and both can be measured without new training:

* **A/A false alarms.** Take many runs of *unchanged* code (different seeds, machines, thread
  counts), split them at random into a "baseline" and a "candidate" group per norm, and run the
  gate's statistics on each split. Every "worse" is a false alarm; the share of splits with any
  must stay ≤ α (Holm controls the family-wise rate over all primary tests of one check).
* **Power.** Take the baseline group from unchanged runs and the candidate group from runs of a
  planted regression (GN+ with λ frozen at 1): the share of splits flagged is the power at that
  effect and number of runs.
* **Pooled baselines** (``reporting/pool.py``): the same with a baseline side of k nights'
  runs against one night's candidate runs (``base_size``).

:func:`example_bootstrap_flag_rate` measures the same A/A rate for the test ``check`` used
before this gate (seeds paired by position, a bootstrap over test examples, no multiplicity
control): it treats each trained model as fixed, so it flags most same-code comparisons.

``benchmarks/gate_calibration.py`` runs both on real stores; the tests run them on simulated
runs with known effects.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from robustbench_norm.reporting.check import GateSettings, Sample, decide
from robustbench_norm.suites.store import Store

#: one run's metric values: "FAMILY/METRIC" → value
Run = Mapping[str, float]


def runs_from_store(store: Store, run_id: int, metrics: Sequence[str]) -> dict[str, list[Run]]:
    """Norm label → one ``{metric: value}`` per finished job of the run (condition-free
    metrics only: the means a gate's primary tests use)."""
    values: dict[int, dict[str, float]] = {}
    norms: dict[int, str] = {}
    for r in store.results_of_run(run_id):
        name = f"{r['family']}/{r['metric']}"
        if r["status"] == "done" and name in metrics and r["value"] is not None:
            values.setdefault(r["job_id"], {})[name] = float(r["value"])
            norms[r["job_id"]] = r["norm"]
    out: dict[str, list[Run]] = {}
    for job_id, v in sorted(values.items()):
        out.setdefault(norms[job_id], []).append(v)
    return out


def merge(*groups: Mapping[str, list[Run]]) -> dict[str, list[Run]]:
    """Pool the runs of several stores (e.g. two thread counts) per norm."""
    out: dict[str, list[Run]] = {}
    for g in groups:
        for norm, runs in g.items():
            out.setdefault(norm, []).extend(runs)
    return out


def flag_rate(
    baseline: Mapping[str, list[Run]],
    candidate: Mapping[str, list[Run]] | None,
    per_side: int,
    settings: GateSettings,
    splits: int = 1000,
    seed: int = 0,
    base_size: int | None = None,
) -> float:
    """Share of random splits whose statistical tier says "worse" for any primary test.

    ``candidate=None`` is the A/A case: both sides are drawn, disjoint, from ``baseline``.
    Otherwise the baseline side comes from ``baseline`` and the candidate side from
    ``candidate`` (e.g. a planted regression). ``base_size``: runs on the baseline side
    (default ``per_side``); a pooled baseline of k nights of ``per_side`` runs is
    ``base_size = k · per_side``.
    """
    rng = np.random.default_rng(seed)
    n_base = per_side if base_size is None else base_size
    flagged = 0
    for _ in range(splits):
        samples = []
        for norm, runs in baseline.items():
            if candidate is None:
                if len(runs) < n_base + per_side:
                    raise ValueError(f"{norm}: {len(runs)} runs cannot make {n_base} + {per_side}")
                order = rng.permutation(len(runs))
                base = [runs[i] for i in order[:n_base]]
                cand = [runs[i] for i in order[n_base : n_base + per_side]]
            else:
                if norm not in candidate:
                    continue
                base = [runs[i] for i in rng.choice(len(runs), n_base, replace=False)]
                pool = candidate[norm]
                cand = [pool[i] for i in rng.choice(len(pool), per_side, replace=False)]
            for metric in settings.primary:
                b = [r[metric] for r in base if math.isfinite(r.get(metric, math.nan))]
                c = [r[metric] for r in cand if math.isfinite(r.get(metric, math.nan))]
                samples.append(Sample("primary", norm, "", metric, "—", tuple(b), tuple(c)))
        rows = decide(samples, settings)
        flagged += any(r.verdict == "worse" for r in rows)
    return flagged / splits


#: one run's per-example scores: "FAMILY/METRIC" → scores over the test examples
ExampleScores = Mapping[str, np.ndarray]


def example_bootstrap_flag_rate(
    pool: Mapping[str, list[ExampleScores]],
    per_side: int,
    alpha: float = 0.05,
    splits: int = 200,
    resamples: int = 1000,
    seed: int = 0,
) -> float:
    """A/A rate of the pre-gate test: for each norm and metric, runs paired by position, the
    mean over pairs of mean(cand − base) bootstrapped over examples within each pair; "worse"
    when Δ < 0 and the two-sided p < α; a split is flagged if anything is worse."""
    rng = np.random.default_rng(seed)
    flagged = 0
    for _ in range(splits):
        worse = False
        for runs in pool.values():
            order = rng.permutation(len(runs))
            base = [runs[i] for i in order[:per_side]]
            cand = [runs[i] for i in order[per_side : 2 * per_side]]
            for metric in base[0]:
                diffs = [c[metric] - b[metric] for b, c in zip(base, cand, strict=True)]
                delta = np.mean([d.mean() for d in diffs])
                draws = np.zeros(resamples)
                for d in diffs:
                    draws += d[rng.integers(0, len(d), size=(resamples, len(d)))].mean(1)
                draws /= len(diffs)
                p = min(1.0, 2 * min(np.mean(draws <= 0), np.mean(draws >= 0)))
                worse |= bool(delta < 0 and p < alpha)
        flagged += worse
    return flagged / splits


#: the smoke suite's seed spread (sd over 12 runs of unchanged code, BENCHMARKS.md 2026-11-26)
#: and mean per norm and primary metric: what the simulated calibrations draw from
SMOKE_SPREAD = {
    "bn": {"clean/accuracy": 0.011, "noise/mean_accuracy": 0.071,
           "corruption/mean_corruption_accuracy": 0.019},
    "gn": {"clean/accuracy": 0.090, "noise/mean_accuracy": 0.089,
           "corruption/mean_corruption_accuracy": 0.061},
    "gnplus": {"clean/accuracy": 0.026, "noise/mean_accuracy": 0.028,
               "corruption/mean_corruption_accuracy": 0.036},
}  # fmt: skip
SMOKE_MEAN = {"bn": 0.73, "gn": 0.47, "gnplus": 0.68}


def simulated_runs(
    n: int, rng: np.random.Generator, shift: Mapping[str, float] | None = None
) -> dict[str, list[Run]]:
    """``n`` runs per norm with the smoke suite's means and seed spreads (normal draws, each
    metric independent); ``shift`` lowers a norm's mean."""
    shift = shift or {}
    return {
        norm: [
            {m: SMOKE_MEAN[norm] - shift.get(norm, 0.0) + sd * rng.standard_normal()
             for m, sd in spreads.items()}
            for _ in range(n)
        ]
        for norm, spreads in SMOKE_SPREAD.items()
    }  # fmt: skip


def simulated_history(
    nights: int,
    runs_per_night: int,
    rng: np.random.Generator,
    drift: Mapping[str, float] | None = None,
    start: int = 0,
) -> dict[str, list[list[float]]]:
    """A nightly history of unchanged code (``drift``: a norm's every metric falls by that much
    per night from night ``start`` on), as ``drift.detect_drift`` reads it."""
    drift = drift or {}
    out: dict[str, list[list[float]]] = {}
    for norm, spreads in SMOKE_SPREAD.items():
        for metric, sd in spreads.items():
            out[f"{norm} · {metric}"] = [
                list(SMOKE_MEAN[norm] - drift.get(norm, 0.0) * max(0, night - start)
                     + sd * rng.standard_normal(runs_per_night))
                for night in range(nights)
            ]  # fmt: skip
    return out


def first_drift_alarm(history: Mapping[str, list[list[float]]], alpha: float) -> int | None:
    """The first night (0-based) at which the drift test, run every night on the history so
    far, flags anything; None if it never does."""
    from robustbench_norm.reporting.drift import WINDOW, detect_drift

    nights = len(next(iter(history.values())))
    for night in range(2 * WINDOW - 1, nights):
        sofar = {name: values[: night + 1] for name, values in history.items()}
        if any(f.drift for f in detect_drift(sofar, alpha)):
            return night
    return None
