"""The GN+ paper's claims, each checked on a run with a stated test and a verdict.

Verdicts: **supported** (the effect has the claimed sign and is significant at α in every
comparison), **not supported** (a significant effect of the opposite sign, or the claimed
pattern is significantly absent), **inconclusive** (anything else, including missing data, with
the reason). Pairs are matched by model, batch size, regularizer and seed, so seeds are the unit
of replication: with 2 seeds a paired t-test has one degree of freedom and rarely rejects; that
is an honest "inconclusive", not a failure of the code. With one seed, tests fall back to
McNemar's test on the per-example flags.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from robustbench_norm import metrics

SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE = "supported", "not supported", "inconclusive"
PAIR_KEYS = ["model", "batch_size", "regularizer", "seed"]


@dataclass
class Claim:
    claim: str
    evidence: str
    test: str
    p_value: float | None
    verdict: str

    def to_dict(self) -> dict:
        return {
            "claim": self.claim,
            "evidence": self.evidence,
            "test": self.test,
            "p_value": self.p_value,
            "verdict": self.verdict,
        }


def _values(frame: pd.DataFrame, family: str, name: str, metric: str) -> pd.DataFrame:
    sub = frame[(frame.family == family) & (frame.name == name) & (frame.metric == metric)]
    return sub[[*PAIR_KEYS, "norm", "job_id", "value"]]


def _pairs(values: pd.DataFrame, a: str, b: str) -> pd.DataFrame:
    """Rows of ``a`` and ``b`` matched by setting and seed: columns value_a, value_b, job_a…"""
    left = values[values.norm == a].rename(columns={"value": "value_a", "job_id": "job_a"})
    right = values[values.norm == b].rename(columns={"value": "value_b", "job_id": "job_b"})
    return left.drop(columns="norm").merge(right.drop(columns="norm"), on=PAIR_KEYS)


def _compare(pairs: pd.DataFrame, flags: Callable[[int], np.ndarray] | None) -> dict:
    """Δ = mean(a − b) with a test: paired t over pairs, or McNemar when there is one pair."""
    if len(pairs) >= 2:
        out = metrics.paired_t(pairs.value_b.tolist(), pairs.value_a.tolist())
        out["test"] = f"paired t-test over {len(pairs)} seed-matched pairs"
        return out
    if len(pairs) == 1 and flags is not None:
        row = pairs.iloc[0]
        out = metrics.mcnemar(flags(int(row.job_b)), flags(int(row.job_a)))
        out["test"] = "McNemar's exact test on per-example flags (one seed)"
        return out
    return {"delta": float("nan"), "p_value": None, "test": "no matched pairs"}


def _verdict(deltas: list[dict], sign: int, alpha: float) -> str:
    if not deltas or any(d["p_value"] is None for d in deltas):
        return INCONCLUSIVE
    if any(np.sign(d["delta"]) == -sign and d["p_value"] < alpha for d in deltas):
        return NOT_SUPPORTED
    if all(np.sign(d["delta"]) == sign and d["p_value"] < alpha for d in deltas):
        return SUPPORTED
    return INCONCLUSIVE


def _fmt_p(p: float | None) -> str:
    return "—" if p is None else f"{p:.3g}"


def gnplus_beats_gn(frame, flags, alpha, gnplus="gnplus", gn="gn") -> Claim:
    claim = "GN+ beats GN at every batch size"
    values = _values(frame[frame.regularizer == "none"], "clean", "clean", "accuracy")
    if not {gnplus, gn} <= set(values.norm):
        return Claim(claim, f"needs norms labelled {gn!r} and {gnplus!r}", "—", None, INCONCLUSIVE)
    parts, results = [], []
    for (model, bs), group in values.groupby(["model", "batch_size"], sort=True):
        r = _compare(_pairs(group, gnplus, gn), flags("clean", "clean"))
        results.append(r)
        parts.append(f"{model} bs {bs}: Δacc {r['delta']:+.4f} (p {_fmt_p(r['p_value'])})")
    tests = sorted({r["test"] for r in results})
    worst = max((r["p_value"] or 1.0) for r in results)
    return Claim(
        claim,
        "; ".join(parts),
        "; ".join(tests) + " on clean accuracy (GN+ − GN)",
        worst,
        _verdict(results, +1, alpha),
    )


def gn_less_stable_than_bn(frame, jobs, alpha, gn="gn", bn="bn") -> Claim:
    claim = "GN is less stable than BN"
    acc = _values(frame, "clean", "clean", "accuracy")
    spread = {
        n: acc[acc.norm == n].groupby(["model", "batch_size", "regularizer"]).value.std()
        for n in (gn, bn)
    }
    spread_text = ", ".join(
        f"seed std of accuracy {n} {s.mean():.4f}"
        for n, s in spread.items()
        if len(s) and not s.isna().all()
    )
    land = _values(frame, "stability", "landscape_range", "mean")
    if not {gn, bn} <= set(land.norm):
        return Claim(
            claim,
            (spread_text or "no seeds to compare") + "; no stability measures "
            "(add a [stability] section)",
            "—",
            None,
            INCONCLUSIVE,
        )
    results, parts = [], []
    for name in ("landscape_range", "beta_smoothness"):
        r = _compare(_pairs(_values(frame, "stability", name, "mean"), gn, bn), None)
        results.append(r)
        parts.append(
            f"{name.replace('_', ' ')} GN − BN {r['delta']:+.4g} (p {_fmt_p(r['p_value'])})"
        )
    diverged = {
        n: int(sum(1 for j in jobs if j["norm"] == n and j["status"] == "diverged"))
        for n in (gn, bn)
    }
    parts.append(f"diverged runs GN {diverged[gn]}, BN {diverged[bn]}")
    if spread_text:
        parts.append(spread_text)
    worst = max((r["p_value"] if r["p_value"] is not None else 1.0) for r in results)
    return Claim(
        claim,
        "; ".join(parts),
        results[0]["test"] + " on Santurkar et al.'s loss "
        "landscape range and β-smoothness (GN − BN)",
        worst,
        _verdict(results, +1, alpha),
    )


def gn_more_sensitive_than_bn(frame, alpha, gn="gn", bn="bn") -> Claim:
    claim = "GN is more sensitive to noise and regularization than BN"
    clean = _values(frame, "clean", "clean", "accuracy")
    drops = []
    for family, name, metric, label in (
        ("noise", "gaussian_noise", "mean_accuracy", "noise"),
        ("corruption", "all", "mean_corruption_accuracy", "corruptions"),
    ):
        pert = _values(frame, family, name, metric)
        if pert.empty:
            continue
        merged = clean.merge(pert, on=[*PAIR_KEYS, "norm", "job_id"], suffixes=("_c", "_p"))
        merged = merged.assign(value=merged.value_c - merged.value_p)
        drops.append((label, merged[[*PAIR_KEYS, "norm", "job_id", "value"]]))
    regs = clean[clean.regularizer != "none"]
    if not regs.empty:  # accuracy lost to each regularizer, against the unregularized run
        base = clean[clean.regularizer == "none"].drop(columns=["regularizer", "job_id"])
        merged = regs.merge(base, on=["model", "batch_size", "seed", "norm"], suffixes=("", "_0"))
        merged = merged.assign(value=merged.value_0 - merged.value)
        drops.append(("regularization", merged[[*PAIR_KEYS, "norm", "job_id", "value"]]))
    if not drops or not {gn, bn} <= set(clean.norm):
        return Claim(
            claim,
            f"needs {gn!r}, {bn!r} and a noise, corruption or regularization evaluation",
            "—",
            None,
            INCONCLUSIVE,
        )
    results, parts = [], []
    for label, values in drops:
        r = _compare(_pairs(values, gn, bn), None)
        results.append(r)
        parts.append(
            f"accuracy lost to {label}: GN − BN {r['delta']:+.4f} (p {_fmt_p(r['p_value'])})"
        )
    worst = max((r["p_value"] if r["p_value"] is not None else 1.0) for r in results)
    return Claim(
        claim,
        "; ".join(parts),
        results[0]["test"] + " on the accuracy drop (clean − perturbed), GN − BN",
        worst,
        _verdict(results, +1, alpha),
    )


def gn_helps_only_in_part_of_training(jobs, alpha, gn="gn", bn="bn", none="none") -> Claim:
    claim = "GN helps only in part of training (BN throughout)"
    have = {j["norm"] for j in jobs if j["stability"]}
    if not {gn, bn, none} <= have:
        return Claim(
            claim,
            f"needs stability measures for norms {gn!r}, {bn!r} and {none!r} "
            "(no normalization) in the same suite",
            "—",
            None,
            INCONCLUSIVE,
        )
    phases = ("early", "middle", "late")

    def phase_means(job) -> list[float]:
        steps = np.array([s["step"] for s in job["stability"]])
        values = np.array([s["landscape_range"] for s in job["stability"]])
        edges = np.linspace(steps.min(), steps.max() + 1, 4)
        inside = [(steps >= lo) & (steps < hi) for lo, hi in itertools.pairwise(edges)]
        return [float(values[m].mean()) if m.any() else float("nan") for m in inside]

    rows = []
    for j in jobs:
        if j["stability"] and j["norm"] in (gn, bn, none):
            for phase, value in zip(phases, phase_means(j), strict=True):
                rows.append(
                    {
                        "model": j["model"],
                        "batch_size": j["batch_size"],
                        "regularizer": j["regularizer"],
                        "seed": j["seed"],
                        "norm": j["norm"],
                        "job_id": j["id"],
                        "phase": phase,
                        "value": value,
                    }
                )
    frame = pd.DataFrame(rows)
    helps: dict[str, list[bool]] = {gn: [], bn: []}
    parts, ps = [], []
    for norm in (gn, bn):
        for phase in phases:
            sub = frame[frame.phase == phase].drop(columns="phase")
            r = _compare(_pairs(sub, norm, none), None)
            significant = r["p_value"] is not None and r["p_value"] < alpha and r["delta"] < 0
            helps[norm].append(significant)
            ps.append(r["p_value"] if r["p_value"] is not None else 1.0)
            parts.append(
                f"{norm} {phase}: landscape range vs none {r['delta']:+.3g} "
                f"(p {_fmt_p(r['p_value'])})"
            )
    if all(helps[bn]) and 0 < sum(helps[gn]) < len(phases):
        verdict = SUPPORTED
    elif all(helps[gn]):
        verdict = NOT_SUPPORTED
    else:
        verdict = INCONCLUSIVE
    return Claim(
        claim,
        "; ".join(parts),
        "paired t-tests per training third, norm vs no norm, on the loss landscape range",
        max(ps),
        verdict,
    )


def evaluate_claims(
    frame: pd.DataFrame, jobs: list[dict], flags, alpha: float = 0.05
) -> list[Claim]:
    """All four claims for a run. ``flags(family, name)`` returns a job_id → flags function."""
    return [
        gnplus_beats_gn(frame, flags, alpha),
        gn_less_stable_than_bn(frame, jobs, alpha),
        gn_more_sensitive_than_bn(frame, alpha),
        gn_helps_only_in_part_of_training(jobs, alpha),
    ]
