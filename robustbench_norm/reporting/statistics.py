"""Seed-level statistics: training runs are the unit of replication.

Why not examples? A trained model is one draw of a random training process — the same seed on
another CPU or thread count is a fresh draw (FACTS.md) — and the spread between draws is what
separates two runs of unchanged code. A test that resamples only test examples treats each model
as fixed and, on smoke-sized runs, raised a false alarm in 83 % of same-code comparisons. Here
each run contributes one number per metric (its mean over the test set, which is the same set
for every run), and the tests compare those numbers across runs.

Why Welch? With 2–6 runs per side a permutation test cannot reach small p-values (2 vs 2 runs
have 6 arrangements: p ≥ 1/6), and a bootstrap over runs underestimates the spread of so few
values. Welch's t needs no equal variances — GN's seed spread is ~7× BN's — and its calibration
at these sizes is measured (``benchmarks/gate_calibration.py``, BENCHMARKS.md).

* :func:`noninferiority` — one-sided Welch test of H0: μ_cand ≥ μ_base − δ, i.e. "worse by
  more than δ" must be shown, not assumed;
* :func:`holm` — Holm's step-down adjustment (family-wise error ≤ α) for blocking decisions;
* :func:`benjamini_hochberg` — BH q-values (false discovery rate) for non-blocking metrics;
* :func:`minimum_detectable_effect`, :func:`runs_needed` — what a design can see, from a
  spread.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from robustbench_norm.evaluation import metrics

#: power that "detectable" refers to
POWER = 0.8


@dataclass(frozen=True)
class Noninferiority:
    """A one-sided Welch test of H0: μ_cand ≥ μ_base − δ (higher is better)."""

    n_base: int
    n_cand: int
    mean_base: float
    mean_cand: float
    delta: float  # mean_cand − mean_base
    ci_low: float  # two-sided 95 % Welch interval of delta
    ci_high: float
    df: float
    p_value: float  # small: the candidate is worse by more than the margin


def welch_df(var_a: float, n_a: int, var_b: float, n_b: int) -> float:
    """Welch–Satterthwaite degrees of freedom."""
    a, b = var_a / n_a, var_b / n_b
    if a + b == 0:
        return float(n_a + n_b - 2)
    return (a + b) ** 2 / (a**2 / (n_a - 1) + b**2 / (n_b - 1))


def noninferiority(
    base: Sequence[float], cand: Sequence[float], margin: float = 0.0, equal_var: bool = False
) -> Noninferiority | None:
    """Welch's one-sided test that the candidate is worse than the baseline by more than
    ``margin`` (``equal_var``: Student's, with the pooled variance). None when either side has
    fewer than 2 runs (no spread to test against)."""
    d = welch(cand, base, equal_var)
    if d is None:
        return None
    if d.se == 0:  # both sides constant: the sign decides exactly
        p = 0.0 if d.delta + margin < 0 else 1.0
    else:
        p = float(stats.t.cdf((d.delta + margin) / d.se, d.df))
    return Noninferiority(d.n_b, d.n_a, d.mean_b, d.mean_a, d.delta, d.ci_low, d.ci_high, d.df, p)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm step-down adjusted p-values: reject where adjusted p < α (family-wise error ≤ α)."""
    p = np.asarray(p_values, dtype=float)
    m = len(p)
    order = np.argsort(p, kind="stable")
    adjusted = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adjusted[i] = running
    return adjusted.tolist()


def benjamini_hochberg(p_values: Sequence[float]) -> list[float]:
    """BH q-values: the smallest false-discovery rate at which each test would be rejected."""
    p = np.asarray(p_values, dtype=float)
    m = len(p)
    if m == 0:
        return []
    order = np.argsort(p, kind="stable")
    q = np.empty(m)
    running = 1.0
    for rank in range(m - 1, -1, -1):
        i = order[rank]
        running = min(running, p[i] * m / (rank + 1))
        q[i] = running
    return q.tolist()


def minimum_detectable_effect(
    sd: float, n_base: int, n_cand: int, alpha: float, margin: float = 0.0, df: float | None = None
) -> float:
    """The smallest true drop (μ_base − μ_cand) that the one-sided test at level ``alpha``
    detects with probability :data:`POWER`, for runs whose seed-to-seed standard deviation is
    ``sd``: margin + (t₁₋α + t_power) · sd · √(1/n_b + 1/n_c)."""
    if n_base < 1 or n_cand < 1:
        return math.inf
    df = float(n_base + n_cand - 2) if df is None else df
    if df < 1:
        return math.inf
    t = float(stats.t.ppf(1 - alpha, df) + stats.t.ppf(POWER, df))
    return margin + t * sd * math.sqrt(1 / n_base + 1 / n_cand)


def power(
    sd: float, n_base: int, n_cand: int, alpha: float, effect: float, margin: float = 0.0
) -> float:
    """The chance that the one-sided test at level ``alpha`` detects a true drop of ``effect``
    between runs with seed-to-seed standard deviation ``sd``: the noncentral t's tail beyond
    the critical value (pooled df; NaN without a spread)."""
    df = n_base + n_cand - 2
    if n_base < 2 or n_cand < 1 or df < 1 or not math.isfinite(sd):
        return math.nan
    se = sd * math.sqrt(1 / n_base + 1 / n_cand)
    if se == 0:
        return 1.0 if effect > margin else 0.0
    critical = float(stats.t.ppf(1 - alpha, df))
    return float(stats.nct.sf(critical, df, (effect - margin) / se))


def runs_needed(sd: float, effect: float, alpha: float, margin: float = 0.0, limit: int = 200):
    """Runs per side for the test to detect a drop of ``effect`` (None beyond ``limit``)."""
    if effect <= margin or not math.isfinite(sd):
        return None
    if minimum_detectable_effect(sd, limit, limit, alpha, margin) > effect:
        return None
    lo, hi = 2, limit  # the MDE falls with n: bisect for the first n that reaches ``effect``
    while lo < hi:
        mid = (lo + hi) // 2
        if minimum_detectable_effect(sd, mid, mid, alpha, margin) <= effect:
            hi = mid
        else:
            lo = mid + 1
    return lo


def pooled_sd(groups: Sequence[Sequence[float]]) -> tuple[float, int]:
    """Pooled within-group standard deviation and its degrees of freedom (groups of < 2 values
    contribute nothing)."""
    ss, df = 0.0, 0
    for g in groups:
        g = np.asarray(g, dtype=float)
        if len(g) >= 2:
            ss += float(np.sum((g - g.mean()) ** 2))
            df += len(g) - 1
    return (math.sqrt(ss / df) if df else math.nan), df


@dataclass(frozen=True)
class Difference:
    """Welch's comparison of two groups of runs: Δ = mean(a) − mean(b)."""

    n_a: int
    n_b: int
    mean_a: float
    mean_b: float
    delta: float
    ci_low: float  # two-sided 95 % Welch interval of Δ
    ci_high: float
    df: float
    p_greater: float  # one-sided p of H1: Δ > 0
    p_less: float  # one-sided p of H1: Δ < 0
    se: float  # standard error of Δ

    def text(self, digits: int = 4) -> str:
        return f"Δ {self.delta:+.{digits}f} [{self.ci_low:+.{digits}f}, {self.ci_high:+.{digits}f}]"


def welch(a: Sequence[float], b: Sequence[float], equal_var: bool = False) -> Difference | None:
    """Welch's unequal-variance comparison with both one-sided p-values; None below 2 runs a
    side (one run has no spread: any "effect" would be seed luck). ``equal_var``: Student's
    t with the pooled variance and n_a + n_b − 2 degrees of freedom instead."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    x, y = x[np.isfinite(x)], y[np.isfinite(y)]
    if len(x) < 2 or len(y) < 2:
        return None
    vx, vy = float(np.var(x, ddof=1)), float(np.var(y, ddof=1))
    delta = float(x.mean() - y.mean())
    if equal_var:
        df = float(len(x) + len(y) - 2)
        pooled = ((len(x) - 1) * vx + (len(y) - 1) * vy) / df
        se = math.sqrt(pooled * (1 / len(x) + 1 / len(y)))
    else:
        se = math.sqrt(vx / len(x) + vy / len(y))
        df = welch_df(vx, len(x), vy, len(y))
    if se == 0:
        greater, less = (0.0 if delta > 0 else 1.0), (0.0 if delta < 0 else 1.0)
        lo = hi = delta
    else:
        t = delta / se
        greater, less = float(stats.t.sf(t, df)), float(stats.t.cdf(t, df))
        half = float(stats.t.ppf(0.975, df)) * se
        lo, hi = delta - half, delta + half
    return Difference(len(x), len(y), float(x.mean()), float(y.mean()), delta, lo, hi, df,
                      greater, less, se)  # fmt: skip


def equivalence(a: Sequence[float], b: Sequence[float], margin: float) -> float | None:
    """TOST: the p-value for "|mean(a) − mean(b)| < margin" — two one-sided Welch tests, of
    H1: Δ > −margin and of H1: Δ < margin; the larger p decides. Small: equivalent within the
    margin, an answer where "not significant" would be none."""
    d = welch(a, b)
    if d is None:
        return None
    if d.se == 0:
        return 0.0 if abs(d.delta) < margin else 1.0
    above = float(stats.t.sf((d.delta + margin) / d.se, d.df))
    below = float(stats.t.cdf((d.delta - margin) / d.se, d.df))
    return max(above, below)


#: runs per side below which a spread is not tested: a variance from 2 runs has one degree of
#: freedom, and the F-test's reliance on normality then decides more than the data does
MIN_RUNS_FOR_SPREAD = 3


def variance_ratio(a: Sequence[float], b: Sequence[float]) -> tuple[float, float] | None:
    """(s²_a / s²_b, one-sided F-test p of H1: var(a) > var(b)); None below
    :data:`MIN_RUNS_FOR_SPREAD` runs a side."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(x) < MIN_RUNS_FOR_SPREAD or len(y) < MIN_RUNS_FOR_SPREAD:
        return None
    va, vb = float(np.var(x, ddof=1)), float(np.var(y, ddof=1))
    if vb == 0:
        return (math.inf if va > 0 else 1.0), (0.0 if va > 0 else 1.0)
    ratio = va / vb
    return ratio, float(stats.f.sf(ratio, len(x) - 1, len(y) - 1))


def mean_interval(
    values: Sequence[float], bounds: tuple[float, float] | None = None, confidence: float = 0.95
) -> tuple[float, float, float]:
    """(mean, low, high): :func:`metrics.mean_ci`'s Student-t interval over the finite values,
    clipped to ``bounds`` (e.g. [0, 1] for an accuracy) — a proportion's interval must not leave
    its range. NaN below 2 values."""
    mean, half = metrics.mean_ci([v for v in values if math.isfinite(v)], confidence)
    lo, hi = mean - half, mean + half
    if bounds is not None and math.isfinite(half):
        lo, hi = max(lo, bounds[0]), min(hi, bounds[1])
    return mean, lo, hi


def ratio_interval(
    values: Sequence[float],
    reference_rse: float,
    reference_df: int,
    bounds: tuple[float, float] | None = None,
    confidence: float = 0.95,
) -> tuple[float, float, float]:
    """(mean, low, high) of a ratio to a reference that is itself a mean over runs (mCE: each
    run's errors ÷ the reference's seed-mean errors). The reference's relative standard error
    ``reference_rse`` (``reference_df`` degrees of freedom) enters in quadrature, by the delta
    method: SE² = s²/n + mean²·rse², with Welch–Satterthwaite degrees of freedom. Without it an
    interval would pretend the reference were known exactly."""
    finite = [v for v in values if math.isfinite(v)]
    n = len(finite)
    if n < 2 or reference_df < 1 or not math.isfinite(reference_rse):
        return mean_interval(finite, bounds, confidence)
    mean = float(np.mean(finite))
    own = float(np.var(finite, ddof=1)) / n
    ref = mean**2 * reference_rse**2
    se = math.sqrt(own + ref)
    if se == 0:
        return mean, mean, mean
    df = (own + ref) ** 2 / (own**2 / (n - 1) + ref**2 / reference_df)
    half = float(stats.t.ppf(0.5 + confidence / 2, df)) * se
    lo, hi = mean - half, mean + half
    if bounds is not None:
        lo, hi = max(lo, bounds[0]), min(hi, bounds[1])
    return mean, lo, hi


def finite_or_none(x: float | None) -> float | None:
    """JSON has no NaN or infinity: a value that is not finite becomes null."""
    return None if x is None or not math.isfinite(x) else float(x)


@dataclass(frozen=True)
class MatchedDifference:
    """Group difference in y at equal x, from one common slope (ANCOVA over runs)."""

    delta: float  # y of group a − y of group b at the same x
    se: float
    df: int
    ci_low: float
    ci_high: float
    p_value: float  # two-sided
    slope: float


def matched_difference(
    x_a: Sequence[float], y_a: Sequence[float], x_b: Sequence[float], y_b: Sequence[float]
) -> MatchedDifference | None:
    """Least squares y = c + s·x + δ·[group a] over both groups' runs: δ compares the groups at
    the same x (e.g. noise accuracy at equal clean accuracy), assuming one slope for both.

    None when it cannot be estimated honestly: fewer than 2 runs a side, no residual degree of
    freedom, or x ranges that do not overlap (δ would then be an extrapolation of the slope
    across a gap no run covers)."""
    xa, ya, xb, yb = (np.asarray(v, dtype=float) for v in (x_a, y_a, x_b, y_b))
    if min(len(xa), len(xb)) < 2 or len(xa) + len(xb) < 4:
        return None
    if xa.max() < xb.min() or xb.max() < xa.min():
        return None
    x = np.concatenate([xa, xb])
    y = np.concatenate([ya, yb])
    design = np.column_stack([np.ones_like(x), x, np.r_[np.ones(len(xa)), np.zeros(len(xb))]])
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    df = len(y) - 3
    residual = y - design @ coef
    sigma2 = float(residual @ residual) / df
    cov = sigma2 * np.linalg.pinv(design.T @ design)
    delta, se = float(coef[2]), math.sqrt(max(float(cov[2, 2]), 0.0))
    if se == 0:
        p = 0.0 if delta != 0 else 1.0
        return MatchedDifference(delta, 0.0, df, delta, delta, p, float(coef[1]))
    half = float(stats.t.ppf(0.975, df)) * se
    p = float(2 * stats.t.sf(abs(delta) / se, df))
    return MatchedDifference(delta, se, df, delta - half, delta + half, p, float(coef[1]))
