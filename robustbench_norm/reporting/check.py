"""The regression gate: is a candidate run worse than a baseline run?

Three tiers, in this order; the first two are exact, the third statistical.

1. **Completeness.** For every setting (model, norm label, batch size, regularizer) the baseline
   finished, the candidate must have finished too. A candidate job that failed, is unfinished,
   is missing, or diverged where the same seed trained in the baseline is a regression. When the
   two runs used different seeds, divergence *rates* are compared (Fisher's exact test).
2. **Fingerprints** (``norms/fingerprint.py``): for every norm label, did the layer's function
   change? Exact, in seconds, independent of training noise. A change blocks unless the caller
   says it is intended (``accept_changes``); then the statistics decide.
3. **Statistics, training runs as the unit** (``statistics.py``). Per (norm, setting, metric,
   condition), each finished run contributes its metric value; a one-sided Welch test asks
   whether the candidate is worse than the baseline by more than the tolerance δ (Student's
   pooled-variance t where the two sides differ in size, as against a pooled baseline of many
   nights: it is exact for unchanged code, whose runs are exchangeable, while Welch's degrees
   of freedom make one night of 2 runs against 12 cry wolf in 23 % of A/A splits). Primary
   metrics are Holm-corrected together and block; secondary metrics get BH q-values and only
   inform. Each primary test also states its minimum detectable effect (80 % power at Holm's
   strictest level, from the baseline's seed spread); above the suite's ``detect`` it says
   **underpowered** and how many runs per side would do.

Seeds are not matched: the same seed on another machine or thread count is a fresh draw, so
baseline and candidate may come from different machines and seed lists. The baseline may pool
several runs (``pool``: every trusted earlier night, ``reporting/pool.py``); completeness and
fingerprints are then judged against the newest of them, the statistics against all.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats as scipy_stats

from robustbench_norm.errors import RobustBenchError
from robustbench_norm.norms.fingerprint import FingerprintDiff, compare_fingerprints
from robustbench_norm.perturb.attacks import ATTACKS, format_epsilon
from robustbench_norm.provenance import environment_differences
from robustbench_norm.reporting import statistics
from robustbench_norm.suites.store import DEFAULT_STORE, Store

CHECK_SCHEMA = "robustbench-norm/check@2"
SETTING = ("model", "norm", "batch_size", "regularizer")
#: spec fields that may differ between comparable jobs: the draw (seed), where it trained
#: (a note of the environment tier) and the layer (the fingerprint tier decides that)
FREE_FIELDS = {"label", "compute", "train.seed", "train.norm"}
FREE_PREFIXES = ("train.norm_options.",)
LOWER_IS_BETTER = {"flip_probability", "consecutive_flip_probability", "mce", "relative_mce"}
UNFINISHED = ("pending", "running")


@dataclass(frozen=True)
class GateSettings:
    """What a check watches and how strictly. ``tolerance`` (δ) is the practical floor: a drop
    up to δ is not a regression. ``detect`` is the drop the gate must be able to see; a test
    that could not is reported as underpowered."""

    primary: tuple[str, ...]
    secondary: tuple[str, ...] = ()
    alpha: float = 0.05
    tolerance: float = 0.0
    detect: float = 0.02
    accept_changes: bool = False
    #: metrics taken from defaults rather than named: left out, with a note, where the
    #: baseline does not measure them (a suite without noise sequences); a named one is an error
    implicit: tuple[str, ...] = ()

    def validate(self) -> None:
        if not (isinstance(self.alpha, float | int) and 0 < self.alpha < 1):
            raise RobustBenchError(f"check: alpha={self.alpha} must lie in (0, 1), e.g. 0.05")
        if not math.isfinite(self.tolerance) or self.tolerance < 0:
            raise RobustBenchError(
                f"check: tolerance={self.tolerance} must be a finite number ≥ 0 (the drop that "
                "does not count, in the metric's units, e.g. 0.005)"
            )
        if not math.isfinite(self.detect) or self.detect <= self.tolerance:
            raise RobustBenchError(
                f"check: detect={self.detect} must be finite and larger than the tolerance "
                f"({self.tolerance}): it is the drop the gate must be able to catch"
            )
        if not self.primary:
            raise RobustBenchError(
                "check: no primary metric; name at least one, e.g. clean/accuracy"
            )
        for m in (*self.primary, *self.secondary):
            if m.count("/") != 1:
                raise RobustBenchError(
                    f"check: metric {m!r} must be FAMILY/METRIC, e.g. clean/accuracy"
                )


@dataclass
class JobFinding:
    """A completeness finding for one setting."""

    setting: str
    norm: str
    verdict: str  # regression | warning | note
    detail: str

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class Comparison:
    norm: str
    setting: str
    metric: str
    condition: str
    tier: str  # primary | secondary
    n_base: int
    n_cand: int
    baseline: float
    candidate: float
    #: candidate − baseline, oriented so that negative is worse
    delta: float
    ci_low: float
    ci_high: float
    p_value: float
    #: Holm-adjusted p (primary) or BH q-value (secondary)
    p_adjusted: float
    mde: float
    runs_needed: int | None
    #: worse | pass | underpowered (the test could not see a drop of ``detect``) | untestable
    #: (a side with one run: no spread) | undecided (either of the last two, with an estimate
    #: worse than ``detect``: not a pass)
    verdict: str
    #: the chance that this test flags a true drop of ``detect`` (at its Holm level)
    power: float = math.nan

    def to_dict(self) -> dict:
        return {
            k: statistics.finite_or_none(v) if isinstance(v, float) else v
            for k, v in self.__dict__.items()
        }

    def describe(self) -> str:
        """Where and by how much, with the runs behind it: one line of a list of findings."""
        return (
            f"{self.norm} · {self.setting} · {self.metric}: Δ {self.delta:+.4f} with "
            f"{self.n_base}/{self.n_cand} runs"
        )


@dataclass(frozen=True)
class SettingDifference:
    """A job-defining setting (steps, images, dataset, limits, precision…) that differs between
    the baseline's and the candidate's jobs of the same setting: their numbers measure
    different experiments, so no verdict compares them."""

    field: str
    baseline: Any
    candidate: Any
    settings: tuple[str, ...]

    def describe(self) -> str:
        where = ", ".join(self.settings[:3]) + (", …" if len(self.settings) > 3 else "")
        return f"{self.field}: {self.baseline!r} vs {self.candidate!r} ({where})"

    def to_dict(self) -> dict:
        return {**self.__dict__, "settings": list(self.settings)}


@dataclass
class CheckReport:
    baseline: str
    candidate: str
    settings: GateSettings
    differences: list[SettingDifference] = field(default_factory=list)
    environment: list[str] = field(default_factory=list)
    completeness: list[JobFinding] = field(default_factory=list)
    fingerprints: list[FingerprintDiff] = field(default_factory=list)
    fingerprint_note: str = ""
    comparisons: list[Comparison] = field(default_factory=list)
    #: default metrics the baseline does not measure, so not watched
    unwatched: list[str] = field(default_factory=list)
    #: the runs whose jobs the statistical tier pooled as the baseline (the baseline run first)
    pooled: list[int] = field(default_factory=list)

    @property
    def reasons(self) -> list[str]:
        """Why the check fails (empty: it passes)."""
        out = [
            f"incomplete: {f.norm} · {f.setting}: {f.detail}"
            for f in self.completeness
            if f.verdict == "regression"
        ]
        if not self.settings.accept_changes:
            out += [
                f"layer changed: {d.label}: {d.describe()} (a deliberate change: rerun with "
                "--accept-changes, and the statistics decide)"
                for d in self.fingerprints
                if d.status == "changed"
            ]
        out += [
            f"worse: {c.norm} · {c.setting} · {c.metric}"
            + (f" · {c.condition}" if c.condition != "—" else "")
            + f": Δ {c.delta:+.4f}, Holm p {c.p_adjusted:.2g}"
            for c in self.comparisons
            if c.tier == "primary" and c.verdict == "worse"
        ]
        return out

    @property
    def regression(self) -> bool:
        return bool(self.reasons)

    @property
    def undecided(self) -> list[Comparison]:
        """Primary tests that look worse than ``detect`` but could not decide."""
        return [c for c in self.comparisons if c.tier == "primary" and c.verdict == "undecided"]

    @property
    def verdict(self) -> str:
        """``not comparable`` (the runs' settings differ), ``regression``, ``undecided`` (no
        regression shown, but a primary estimate worse than ``detect`` that the runs cannot
        test: not a pass) or ``pass``."""
        if self.differences:
            return "not comparable"
        if self.regression:
            return "regression"
        return "undecided" if self.undecided else "pass"

    def to_dict(self) -> dict:
        s = self.settings
        return {
            "schema": CHECK_SCHEMA,
            "baseline": self.baseline,
            "candidate": self.candidate,
            "settings": dict(s.__dict__),
            "verdict": self.verdict,
            "reasons": self.reasons,
            "setting_differences": [d.to_dict() for d in self.differences],
            "undecided": [c.describe() for c in self.undecided],
            "unwatched": self.unwatched,
            "environment_differences": self.environment,
            "completeness": [f.to_dict() for f in self.completeness],
            "fingerprints": [
                {**d.to_dict(), "max_rel_diff": statistics.finite_or_none(d.max_rel_diff)}
                for d in self.fingerprints
            ],
            "fingerprint_note": self.fingerprint_note,
            "comparisons": [c.to_dict() for c in self.comparisons],
            "pooled_runs": self.pooled,
            "baseline_runs_per_setting": self.baseline_runs(),
            "power": {
                f"{c.norm} · {c.setting} · {c.metric}"
                + (f" · {c.condition}" if c.condition != "—" else ""): statistics.finite_or_none(
                    c.power
                )
                for c in self.comparisons
                if c.tier == "primary"
            },
        }

    def baseline_runs(self) -> dict[str, int]:
        """Finished baseline runs behind each primary test (pooled ones included)."""
        return {
            f"{c.norm} · {c.setting}": c.n_base for c in self.comparisons if c.tier == "primary"
        }


def parse_run_ref(ref: str, default_store: str | Path = DEFAULT_STORE) -> tuple[Path, str]:
    """``[STORE:]RUN`` → (store path, run reference). RUN is an id, ``latest`` or ``previous``."""
    store, sep, run = str(ref).rpartition(":")
    return (Path(store) if sep else Path(default_store)), run


def compare_runs(
    baseline: tuple[Store, int],
    candidate: tuple[Store, int],
    settings: GateSettings,
    pool: Sequence[int] = (),
) -> CheckReport:
    """Run the three tiers; see the module docstring. ``pool``: more runs of the baseline's
    store whose finished jobs join the baseline in the statistical tier (a pooled baseline,
    ``reporting/pool.py``); completeness, settings and fingerprints are judged against the
    baseline run itself."""
    settings.validate()
    (bstore, brun), (cstore, crun) = baseline, candidate
    pooled = [brun, *(r for r in pool if r != brun)]
    where = f"{bstore.path}:{brun}" + (f" + {len(pooled) - 1} pooled" if len(pooled) > 1 else "")
    report = CheckReport(where, f"{cstore.path}:{crun}", settings, pooled=pooled)
    report.environment = environment_differences(
        bstore.run(brun)["provenance"], cstore.run(crun)["provenance"]
    )
    bjobs, cjobs = drawn_jobs(bstore, brun), drawn_jobs(cstore, crun)
    report.differences = setting_differences(bjobs, cjobs)
    bvalues, cvalues = _values_by_job(bstore, brun), _values_by_job(cstore, crun)
    settings, report.unwatched = _measured_defaults(settings, bvalues)
    report.settings = settings
    _check_metrics_exist(settings, bvalues)
    report.completeness = _completeness(bjobs, cjobs, bvalues, cvalues, settings)
    bprints, cprints = bstore.fingerprints_of_run(brun), cstore.fingerprints_of_run(crun)
    if not bprints:
        report.fingerprint_note = (
            "the baseline run has no fingerprints (made before they existed): exact tier skipped"
        )
    elif not cprints:
        report.fingerprint_note = "the candidate run has no fingerprints: exact tier skipped"
    else:
        report.fingerprints = compare_fingerprints(bprints, cprints)
    # the pooled runs join the baseline run's jobs and values in the statistical tier
    others = pooled[1:]
    pjobs = bjobs + [j for r in others for j in drawn_jobs(bstore, r)]
    pvalues = {**bvalues, **{k: v for r in others for k, v in _values_by_job(bstore, r).items()}}
    report.comparisons = _statistics(pjobs, cjobs, pvalues, cvalues, settings)
    return report


# -- data ----------------------------------------------------------------------------------------


def drawn_jobs(store: Store, run_id: int) -> list[dict]:
    """The run's jobs that are draws of the suite: benchmarked external models are single
    models on the board, not training runs, so no tier compares them."""
    return [j for j in store.jobs_of_run(run_id) if "external" not in j["spec"]]


def _setting(job: dict) -> tuple:
    return tuple(job[k] for k in SETTING)


def _setting_name(key: tuple) -> str:
    model, _, bs, reg = key
    return f"{model} · bs {bs}" + ("" if reg == "none" else f" · {reg}")


def setting_differences(bjobs: list[dict], cjobs: list[dict]) -> list[SettingDifference]:
    """Job-defining fields whose values differ between the two runs' jobs of a shared setting.
    Fields only one side has (added to the spec later) and evaluations only one side ran are
    not differences: the completeness tier sees a lost metric."""
    base, cand = _by_setting(bjobs), _by_setting(cjobs)
    found: dict[tuple, tuple[Any, Any, list[str]]] = {}
    for key in sorted(set(base) & set(cand), key=str):
        b = _flat_spec(next(iter(base[key].values()))["spec"])
        c = _flat_spec(next(iter(cand[key].values()))["spec"])
        for name in sorted(set(b) & set(c)):
            free = name in FREE_FIELDS or name.startswith(FREE_PREFIXES)
            if not free and b[name] != c[name]:
                entry = found.setdefault(
                    (name, repr(b[name]), repr(c[name])), (b[name], c[name], [])
                )
                entry[2].append(f"{key[1]} · {_setting_name(key)}")
    return [SettingDifference(k[0], b, c, tuple(w)) for k, (b, c, w) in found.items()]


def _flat_spec(spec: dict | None) -> dict[str, Any]:
    """A job spec as dotted paths; evaluations keyed by their type (attacks by name too)."""
    out: dict[str, Any] = {}

    def walk(value: Any, path: str) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, f"{path}.{k}" if path else str(k))
        else:
            out[path] = value

    spec = dict(spec or {})
    for e in spec.pop("evaluations", []) or []:
        e = dict(e)
        kind = e.pop("type", "?")
        walk(e, f"evaluate.{kind}" + (f"[{e['name']}]" if "name" in e else ""))
    walk(spec, "")
    return out


def _values_by_job(store: Store, run_id: int) -> dict[int, dict[tuple, float]]:
    """job id → {(family, metric, name, parameter): value} over the run's results."""
    out: dict[int, dict[tuple, float]] = {}
    for r in store.results_of_run(run_id):
        value = math.nan if r["value"] is None else float(r["value"])
        out.setdefault(r["job_id"], {})[(r["family"], r["metric"], r["name"], r["parameter"])] = (
            value
        )
    return out


def _measured(bvalues: dict) -> list[str]:
    return sorted({f"{k[0]}/{k[1]}" for v in bvalues.values() for k in v})


def _measured_defaults(settings: GateSettings, bvalues: dict) -> tuple[GateSettings, list[str]]:
    """Leave out the default metrics the baseline does not measure (named ones stay, and
    fail in :func:`_check_metrics_exist` if missing)."""
    have = set(_measured(bvalues))
    dropped = [m for m in (*settings.primary, *settings.secondary)
               if m in settings.implicit and m not in have]  # fmt: skip
    if not dropped:
        return settings, []
    primary = tuple(m for m in settings.primary if m not in dropped)
    if not primary:
        raise RobustBenchError(
            f"check: the baseline measures none of the default primary metrics "
            f"({', '.join(settings.primary)}); name the ones to watch with --metrics (it has: "
            f"{', '.join(sorted(have))})"
        )
    secondary = tuple(m for m in settings.secondary if m not in dropped)
    return replace(settings, primary=primary, secondary=secondary), dropped


def _check_metrics_exist(settings: GateSettings, bvalues: dict) -> None:
    have = _measured(bvalues)
    for m in (*settings.primary, *settings.secondary):
        if m not in have:
            raise RobustBenchError(
                f"check: metric {m!r} is not in the baseline run; it has: {', '.join(have)}"
            )


def _by_setting(jobs: list[dict], by: str = "seed") -> dict[tuple, dict[int, dict]]:
    """Setting → {seed: job} (``by="id"``: {job id: job}, for pooled runs whose seeds may
    repeat)."""
    out: dict[tuple, dict[int, dict]] = {}
    for j in jobs:
        out.setdefault(_setting(j), {})[j[by]] = j
    return out


# -- tier 1: completeness ---------------------------------------------------------------------


def _completeness(bjobs, cjobs, bvalues, cvalues, settings: GateSettings) -> list[JobFinding]:
    base, cand = _by_setting(bjobs), _by_setting(cjobs)
    out: list[JobFinding] = []
    for key in sorted(base, key=str):
        name, norm = _setting_name(key), key[1]

        def finding(verdict: str, detail: str, name=name, norm=norm) -> None:
            out.append(JobFinding(name, norm, verdict, detail))

        b = base[key]
        b_done = {s for s, j in b.items() if j["status"] == "done"}
        if not b_done:
            finding("note", "the baseline finished no job here; nothing to compare")
            continue
        c = cand.get(key, {})
        if not c:
            finding("regression", f"missing: no candidate job (baseline: {len(b_done)} done)")
            continue
        for seed, j in sorted(c.items()):
            other = b.get(seed, {}).get("status")
            if j["status"] in UNFINISHED:
                finding("regression", f"seed {seed} is {j['status']} (unfinished)")
            elif j["status"] == "failed" and other != "failed":
                error = (j["error"] or "").strip().splitlines()
                finding("regression", f"seed {seed} failed: {error[-1] if error else '?'}")
            elif j["status"] == "diverged" and other == "done":
                finding("regression", f"seed {seed} diverged where the baseline's trained")
        overlap = set(c) & set(b)
        if overlap:
            missing = sorted(s for s in b_done if s not in c)
            if missing:
                finding("regression", f"missing seed(s) {missing} that the baseline finished")
        else:
            c_done = sum(j["status"] == "done" for j in c.values())
            if c_done < len(b_done):
                finding(
                    "regression",
                    f"{c_done} finished run(s) against the baseline's {len(b_done)} "
                    "(different seeds)",
                )
        _divergence_rates(b, c, settings.alpha, finding)
        _missing_metrics(b, c, bvalues, cvalues, settings, finding)
    for key in sorted(set(cand) - set(base), key=str):
        out.append(JobFinding(_setting_name(key), key[1], "note", "new setting, not compared"))
    return out


def _divergence_rates(b: dict, c: dict, alpha: float, finding) -> None:
    """Divergence of unmatched seeds: compared as rates (Fisher's exact test, one-sided)."""
    finished = ("done", "diverged")
    nb = sum(j["status"] in finished for j in b.values())
    nc = sum(j["status"] in finished for j in c.values())
    db = sum(j["status"] == "diverged" for j in b.values())
    dc = sum(j["status"] == "diverged" for j in c.values())
    if not dc or not nb or not nc or dc / nc <= db / nb:
        return
    p = float(scipy_stats.fisher_exact([[dc, nc - dc], [db, nb - db]], alternative="greater")[1])
    text = f"divergence {dc}/{nc} vs the baseline's {db}/{nb} (Fisher p {p:.2g})"
    finding("regression" if p < alpha else "warning", text)


def _missing_metrics(b, c, bvalues, cvalues, settings: GateSettings, finding) -> None:
    watched = set(settings.primary) | set(settings.secondary)

    def metrics_of(jobs: dict, values: dict) -> set[str]:
        return {
            f"{k[0]}/{k[1]}"
            for j in jobs.values()
            if j["status"] == "done"
            for k in values.get(j["id"], {})
        } & watched

    c_done = any(j["status"] == "done" for j in c.values())
    lost = sorted(metrics_of(b, bvalues) - metrics_of(c, cvalues)) if c_done else []
    if lost:
        finding("regression", f"the candidate's jobs lack {', '.join(lost)}")


# -- tier 3: statistics -------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    """One statistical comparison's data: a metric's value per run, on each side."""

    tier: str  # primary | secondary
    norm: str
    setting: str
    metric: str  # FAMILY/METRIC
    condition: str
    base: tuple[float, ...]
    cand: tuple[float, ...]


def _statistics(bjobs, cjobs, bvalues, cvalues, settings: GateSettings) -> list[Comparison]:
    base, cand = _by_setting(bjobs, by="id"), _by_setting(cjobs, by="id")
    samples = []
    for tier, metrics in (("primary", settings.primary), ("secondary", settings.secondary)):
        for metric in metrics:
            family, name = metric.split("/")
            for key in sorted(set(base) & set(cand), key=str):
                b = _metric_values(base[key], bvalues, family, name)
                c = _metric_values(cand[key], cvalues, family, name)
                for cond in sorted(set(b) & set(c), key=_condition_order):
                    label, setting = _condition_label(cond), _setting_name(key)
                    samples.append(
                        Sample(tier, key[1], setting, metric, label, tuple(b[cond]), tuple(c[cond]))
                    )
    return decide(samples, settings)


def decide(samples: list[Sample], settings: GateSettings) -> list[Comparison]:
    """The statistical tier on prepared samples: Welch per sample, Holm over the primary
    ones, BH over the secondary ones, MDE and verdicts. Also what the calibration simulates."""
    spread = _baseline_spread(samples)
    n_primary = sum(s.tier == "primary" for s in samples)
    rows = []
    for s in samples:
        sign = -1.0 if s.metric.split("/")[1] in LOWER_IS_BETTER else 1.0
        b, c = sign * np.asarray(s.base), sign * np.asarray(s.cand)  # higher is better
        # unequal sides (a pooled baseline): Student's t, exact for unchanged code; Welch's
        # degrees of freedom fail there (A/A 0.23 at 12 runs against 2; BENCHMARKS.md)
        test = statistics.noninferiority(b, c, settings.tolerance, equal_var=len(b) != len(c))
        level = settings.alpha / max(n_primary, 1) if s.tier == "primary" else settings.alpha
        sd = spread[(s.norm, s.metric, s.condition)]
        mde = statistics.minimum_detectable_effect(sd, len(b), len(c), level, settings.tolerance)
        needed = (
            statistics.runs_needed(sd, settings.detect, level, settings.tolerance)
            if math.isfinite(sd) else None
        )  # fmt: skip
        rows.append(
            Comparison(
                norm=s.norm,
                setting=s.setting,
                metric=s.metric,
                condition=s.condition,
                tier=s.tier,
                n_base=len(b),
                n_cand=len(c),
                baseline=float(np.mean(s.base)),
                candidate=float(np.mean(s.cand)),
                delta=float(np.mean(c) - np.mean(b)),
                ci_low=test.ci_low if test else math.nan,
                ci_high=test.ci_high if test else math.nan,
                p_value=test.p_value if test else math.nan,
                p_adjusted=math.nan,
                mde=mde,
                runs_needed=needed,
                verdict="not tested",
                power=statistics.power(
                    sd, len(b), len(c), level, settings.detect, settings.tolerance
                ),
            )
        )
    _decide(rows, settings)
    return rows


def _metric_values(jobs: dict, values: dict, family: str, metric: str) -> dict[tuple, list]:
    """(name, parameter) → one value per finished job of a setting."""
    out: dict[tuple, list] = {}
    for j in jobs.values():
        if j["status"] != "done":
            continue
        for (fam, met, name, param), v in values.get(j["id"], {}).items():
            if fam == family and met == metric and math.isfinite(v):
                out.setdefault((name, param), []).append(v)
    return out


def _baseline_spread(samples: list[Sample]) -> dict[tuple, float]:
    """The baseline's seed-to-seed standard deviation per (norm, metric, condition), pooled
    over settings; where that leaves < 2 degrees of freedom, pooled over norms too."""
    by_norm: dict[tuple, list] = {}
    by_metric: dict[tuple, list] = {}
    for s in samples:
        by_norm.setdefault((s.norm, s.metric, s.condition), []).append(s.base)
        by_metric.setdefault((s.metric, s.condition), []).append(s.base)
    out = {}
    for (norm, metric, cond), groups in by_norm.items():
        sd, df = statistics.pooled_sd(groups)
        if df < 2:
            sd, _ = statistics.pooled_sd(by_metric[(metric, cond)])
        out[(norm, metric, cond)] = sd
    return out


def _decide(rows: list[Comparison], settings: GateSettings) -> None:
    adjustments = (("primary", statistics.holm), ("secondary", statistics.benjamini_hochberg))
    for tier, adjust in adjustments:
        tested = [r for r in rows if r.tier == tier and math.isfinite(r.p_value)]
        for r, p in zip(tested, adjust([r.p_value for r in tested]), strict=True):
            r.p_adjusted = p
    for r in rows:
        if math.isfinite(r.p_adjusted) and r.p_adjusted < settings.alpha:
            r.verdict = "worse"
        elif not math.isfinite(r.p_value) or r.mde > settings.detect:
            looks_worse = r.tier == "primary" and r.delta < -settings.detect
            untestable = "untestable" if not math.isfinite(r.p_value) else "underpowered"
            r.verdict = "undecided" if looks_worse else untestable
        else:
            r.verdict = "pass"


def _condition_order(cond: tuple) -> tuple:
    name, parameter = cond
    return (name, -1.0 if parameter is None else parameter)


def _condition_label(cond: tuple) -> str:
    """A condition as the tables print it: ``pgd_linf ε=1/255``, ``σ=0.1``, ``fog s3``."""
    name, parameter = cond
    if parameter is None:
        return "—" if name in ("clean", "gaussian_noise", "all", "noise_sequence") else name
    if name in ATTACKS:
        return f"{name} ε={format_epsilon(parameter)}"
    if name in ("gaussian_noise", "noise_sequence"):
        return f"σ={parameter:g}"
    return f"{name} s{parameter:g}"
