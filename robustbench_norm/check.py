"""Regression check: is a candidate run worse than a baseline run, per norm and metric?

Jobs are matched by (model, norm label, batch size, regularizer, seed). Every watched metric
that is an average over test examples is rebuilt from the stored per-example flags, then:

* one seed, 0/1 scores (e.g. clean accuracy): McNemar's exact test on the discordant examples;
* several seeds, or averaged scores (e.g. mean corruption accuracy): a paired bootstrap over
  test examples, resampled within each seed, of the mean difference (2,000 resamples, seeded);
* no flags (flip probability): a paired t-test over seeds.

Δ = candidate − baseline, oriented so that negative is worse. A metric is **worse** when
Δ < −tolerance and p < α (**better** mirrors it, otherwise **same**); any worse watched metric
makes the check fail (exit code 1). Seeds are matched, so an identical rerun of deterministic
code gives Δ = 0 exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from robustbench_norm import metrics
from robustbench_norm.errors import RobustBenchError
from robustbench_norm.store import DEFAULT_STORE, Store

MATCH = ("model", "norm", "batch_size", "regularizer", "seed")
LOWER_IS_BETTER = {"flip_probability", "mce", "relative_mce"}
BOOTSTRAP = 2000


@dataclass
class Comparison:
    norm: str
    setting: str
    metric: str
    condition: str
    baseline: float
    candidate: float
    delta: float
    ci_low: float
    ci_high: float
    p_value: float
    test: str
    verdict: str

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def parse_run_ref(ref: str, default_store: str | Path = DEFAULT_STORE) -> tuple[Path, str]:
    """``[STORE:]RUN`` → (store path, run reference). RUN is an id, ``latest`` or ``previous``."""
    store, sep, run = str(ref).rpartition(":")
    return (Path(store) if sep else Path(default_store)), run


def _scores(flags: dict, family: str, metric: str) -> dict[tuple[str, float | None], np.ndarray]:
    """Per-example scores for ``family/metric``, keyed by (condition name, parameter)."""
    mine = {(n, p): f.astype(float) for (fam, n, p), f in flags.items() if fam == family}
    if metric in ("accuracy", "robust_accuracy"):
        return mine
    if family == "noise" and metric == "mean_accuracy":
        noisy = [f for (n, p), f in mine.items() if p]
        return {("gaussian_noise", None): np.mean(noisy, 0)} if noisy else {}
    if family == "corruption" and metric == "mean_accuracy":
        names = dict.fromkeys(n for n, _ in mine)
        return {(n, None): np.mean([f for (m, _), f in mine.items() if m == n], 0) for n in names}
    if family == "corruption" and metric == "mean_corruption_accuracy":
        return {("all", None): np.mean(list(mine.values()), 0)} if mine else {}
    return {}


def _bootstrap(base: list[np.ndarray], cand: list[np.ndarray], seed: int = 0) -> dict:
    """Mean over seeds of mean(cand − base), resampling examples within each seed."""
    rng = np.random.default_rng(seed)
    diffs = [c - b for b, c in zip(base, cand, strict=True)]
    delta = float(np.mean([d.mean() for d in diffs]))
    draws = np.zeros(BOOTSTRAP)
    for d in diffs:
        idx = rng.integers(0, len(d), size=(BOOTSTRAP, len(d)))
        draws += d[idx].mean(1)
    draws /= len(diffs)
    if np.all(draws == delta):
        p = 1.0 if delta == 0 else 0.0
    else:
        p = float(min(1.0, 2 * min(np.mean(draws <= 0), np.mean(draws >= 0))))
    lo, hi = np.quantile(draws, [0.025, 0.975])
    return {"delta": delta, "ci_low": float(lo), "ci_high": float(hi), "p_value": p}


def compare_runs(
    baseline: tuple[Store, int],
    candidate: tuple[Store, int],
    watch: tuple[str, ...],
    alpha: float = 0.05,
    tolerance: float = 0.0,
) -> list[Comparison]:
    (bstore, brun), (cstore, crun) = baseline, candidate
    bjobs = {tuple(j[k] for k in MATCH): j for j in bstore.jobs_of_run(brun)}
    cjobs = {tuple(j[k] for k in MATCH): j for j in cstore.jobs_of_run(crun)}
    common = sorted(set(bjobs) & set(cjobs), key=str)
    if not common:
        raise RobustBenchError(
            "the two runs share no job (matched by model, norm, batch size, regularizer, seed); "
            "compare runs of the same suite"
        )
    groups: dict[tuple, list[tuple]] = {}
    for key in common:
        groups.setdefault(key[:4], []).append(key)
    out = []
    for group, keys in groups.items():
        model, norm, bs, reg = group
        setting = f"{model} · bs {bs}" + ("" if reg == "none" else f" · {reg}")
        pairs = [
            (bjobs[k], cjobs[k])
            for k in keys
            if bjobs[k]["status"] == "done" and cjobs[k]["status"] == "done"
        ]
        for item in watch:
            family, metric = item.split("/")
            out += _compare_metric(
                bstore, cstore, pairs, family, metric, norm, setting, alpha, tolerance
            )
    return out


def _compare_metric(bstore, cstore, pairs, family, metric, norm, setting, alpha, tolerance):
    if not pairs:
        return []
    sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
    per_seed = [
        (
            _scores(bstore.flags_of_job(b["id"]), family, metric),
            _scores(cstore.flags_of_job(c["id"]), family, metric),
        )
        for b, c in pairs
    ]
    conditions = set(per_seed[0][0]) & set(per_seed[0][1])
    for bs, cs in per_seed[1:]:
        conditions &= set(bs) & set(cs)
    rows = []
    if conditions:
        for cond in sorted(conditions, key=lambda c: (c[0], -1 if c[1] is None else c[1])):
            base = [b[cond] for b, _ in per_seed]
            cand = [c[cond] for _, c in per_seed]
            if any(len(b) != len(c) for b, c in zip(base, cand, strict=True)):
                raise RobustBenchError(f"{family}/{metric} {cond}: runs used different test sets")
            binary = all(set(np.unique(b)) <= {0.0, 1.0} for b in base + cand)
            if len(base) == 1 and binary:
                r = metrics.mcnemar(base[0].astype(bool), cand[0].astype(bool))
                test = "McNemar exact"
            else:
                r = _bootstrap(base, cand)
                test = f"paired bootstrap over examples, {len(base)} seed(s)"
            rows.append(
                _verdict(
                    norm,
                    setting,
                    f"{family}/{metric}",
                    _cond(cond),
                    float(np.mean([b.mean() for b in base])),
                    float(np.mean([c.mean() for c in cand])),
                    r,
                    test,
                    sign,
                    alpha,
                    tolerance,
                )
            )
        return rows
    # no per-example flags for this metric: compare the stored values across seeds
    values = []
    for b, c in pairs:
        bv = _stored(bstore, b["id"], family, metric)
        cv = _stored(cstore, c["id"], family, metric)
        if bv is not None and cv is not None:
            values.append((bv, cv))
    if len(values) < 2:
        return []
    r = metrics.paired_t([v[0] for v in values], [v[1] for v in values])
    return [
        _verdict(
            norm,
            setting,
            f"{family}/{metric}",
            "—",
            float(np.mean([v[0] for v in values])),
            float(np.mean([v[1] for v in values])),
            r,
            f"paired t-test over {len(values)} seeds",
            sign,
            alpha,
            tolerance,
        )
    ]


def _stored(store: Store, job_id: int, family: str, metric: str) -> float | None:
    row = store.conn.execute(
        "SELECT value FROM results WHERE job_id = ? AND family = ? AND metric = ? LIMIT 1",
        (job_id, family, metric),
    ).fetchone()
    return None if row is None else float(row["value"])


def _cond(cond: tuple[str, float | None]) -> str:
    name, parameter = cond
    return name if parameter is None else f"{name} @ {parameter:.4g}"


def _verdict(norm, setting, metric, condition, base, cand, r, test, sign, alpha, tolerance):
    delta = sign * r["delta"]
    lo, hi = sorted((sign * r["ci_low"], sign * r["ci_high"]))
    p = r["p_value"]
    if delta < -tolerance and p < alpha:
        verdict = "worse"
    elif delta > tolerance and p < alpha:
        verdict = "better"
    else:
        verdict = "same"
    return Comparison(norm, setting, metric, condition, base, cand, delta, lo, hi, p, test, verdict)


def format_table(rows: list[Comparison]) -> str:
    head = (
        f"{'norm':<12}{'setting':<22}{'metric':<38}{'condition':<24}{'base':>8}{'cand':>8}"
        f"{'Δ':>9}  {'95% CI':<19}{'p':>9}  verdict"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        ci = f"[{r.ci_low:+.4f}, {r.ci_high:+.4f}]" if not math.isnan(r.ci_low) else ""
        lines.append(
            f"{r.norm:<12}{r.setting:<22}{r.metric:<38}{r.condition:<24}"
            f"{r.baseline:>8.4f}{r.candidate:>8.4f}{r.delta:>+9.4f}  {ci:<19}"
            f"{r.p_value:>9.3g}  {r.verdict.upper() if r.verdict == 'worse' else r.verdict}"
        )
    return "\n".join(lines)
