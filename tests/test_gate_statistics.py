"""The gate's seed-level statistics against hand-computed values, and its calibration on
simulated runs: A/A false alarms ≤ α, power against a planted drop, and the old example-level
test's failure."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from robustbench_norm.reporting import statistics
from robustbench_norm.reporting.calibration import (
    example_bootstrap_flag_rate,
    flag_rate,
    simulated_runs,
)
from robustbench_norm.reporting.check import GateSettings, Sample, decide

PRIMARY = ("clean/accuracy", "noise/mean_accuracy", "corruption/mean_corruption_accuracy")


def test_welch_noninferiority_matches_the_hand_computation():
    base, cand = [0.70, 0.72, 0.74], [0.60, 0.62, 0.66]
    r = statistics.noninferiority(base, cand, margin=0.02)
    # by hand: means 0.72 and 0.6266…; variances 0.0004 and 0.0009333…
    vb, vc = 0.0004, (0.0266667**2 + 0.0066667**2 + 0.0333333**2) / 2
    se = math.sqrt(vb / 3 + vc / 3)
    df = (vb / 3 + vc / 3) ** 2 / ((vb / 3) ** 2 / 2 + (vc / 3) ** 2 / 2)
    assert r.delta == pytest.approx(0.6266667 - 0.72, abs=1e-6)
    assert r.df == pytest.approx(df, rel=1e-4)
    assert r.p_value == pytest.approx(stats.t.cdf((r.delta + 0.02) / se, df), rel=1e-4)
    assert r.p_value < 0.05  # a drop of 0.093 against a margin of 0.02, on 3 + 3 runs
    half = stats.t.ppf(0.975, df) * se
    assert (r.ci_low, r.ci_high) == pytest.approx((r.delta - half, r.delta + half), rel=1e-4)


def test_welch_needs_two_runs_per_side_and_handles_zero_spread():
    assert statistics.noninferiority([0.7], [0.6, 0.61]) is None
    same = statistics.noninferiority([0.5, 0.5], [0.5, 0.5])
    assert same.p_value == 1.0  # equal constants are not worse
    lower = statistics.noninferiority([0.5, 0.5], [0.4, 0.4], margin=0.05)
    assert lower.p_value == 0.0  # constant and beyond the margin: exactly worse
    inside = statistics.noninferiority([0.5, 0.5], [0.47, 0.47], margin=0.05)
    assert inside.p_value == 1.0


def test_holm_and_bh_match_hand_computed_adjustments():
    # Holm: sorted 0.01, 0.03, 0.04 → 3·0.01, max(0.03, 2·0.03), max(0.06, 1·0.04)
    assert statistics.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    # BH: from the top, 0.04·3/3, min(0.04, 0.03·3/2), min(0.04, 0.01·3/1)
    assert statistics.benjamini_hochberg([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.04, 0.04])
    assert statistics.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    assert statistics.benjamini_hochberg([]) == []


def test_minimum_detectable_effect_and_runs_needed():
    # t tables, df 8: t_0.95 = 1.859548, t_0.80 = 0.888890
    mde = statistics.minimum_detectable_effect(0.1, 5, 5, alpha=0.05)
    assert mde == pytest.approx((1.859548 + 0.888890) * 0.1 * math.sqrt(0.4), rel=1e-5)
    assert statistics.minimum_detectable_effect(0.1, 5, 5, 0.05, margin=0.01) == pytest.approx(
        mde + 0.01, rel=1e-6
    )
    n = statistics.runs_needed(0.05, 0.05, alpha=0.05)
    assert statistics.minimum_detectable_effect(0.05, n, n, 0.05) <= 0.05
    assert statistics.minimum_detectable_effect(0.05, n - 1, n - 1, 0.05) > 0.05
    assert statistics.runs_needed(1.0, 0.001, alpha=0.05) is None  # beyond 200 runs
    assert statistics.pooled_sd([[1.0, 3.0], [2.0], [5.0, 7.0]]) == pytest.approx(
        (math.sqrt(2.0), 2)
    )


def test_decide_holm_corrects_and_says_underpowered():
    settings = GateSettings(primary=("clean/accuracy",), alpha=0.05, detect=0.02)
    rng = np.random.default_rng(0)
    steady = tuple(0.7 + 0.002 * rng.standard_normal(8))
    dropped = tuple(0.6 + 0.002 * rng.standard_normal(8))
    noisy = (0.3, 0.7)
    samples = [
        Sample("primary", "a", "s", "clean/accuracy", "—", steady, dropped),
        Sample("primary", "b", "s", "clean/accuracy", "—", steady, steady),
        Sample("primary", "c", "s", "clean/accuracy", "—", noisy, noisy),
    ]
    rows = {r.norm: r for r in decide(samples, settings)}
    assert rows["a"].verdict == "worse" and rows["a"].p_adjusted >= rows["a"].p_value
    assert rows["b"].verdict == "pass"
    assert rows["c"].verdict == "underpowered" and rows["c"].mde > 0.02
    assert rows["c"].runs_needed is None or rows["c"].runs_needed > 2
    # lower is better: a rise in flip probability is the regression
    flip = Sample("primary", "a", "s", "noise_sequence/flip_probability", "—", dropped, steady)
    (row,) = decide([flip], GateSettings(primary=("noise_sequence/flip_probability",)))
    assert row.verdict == "worse" and row.delta < 0


def _simulated_runs(shift: dict[str, float] | None = None, n: int = 40, seed: int = 0):
    """Runs of three norms with the smoke suite's means and seed spreads."""
    return simulated_runs(n, np.random.default_rng(seed), shift)


@pytest.mark.parametrize("per_side", [2, 3, 5])
def test_aa_false_alarm_rate_is_at_most_alpha(per_side):
    settings = GateSettings(primary=PRIMARY, alpha=0.05)
    rate = flag_rate(_simulated_runs(), None, per_side, settings, splits=400, seed=per_side)
    # Monte-Carlo slack: two binomial standard errors at α over 400 splits
    assert rate <= 0.05 + 2 * math.sqrt(0.05 * 0.95 / 400)


def test_power_against_a_planted_drop():
    settings = GateSettings(primary=PRIMARY, alpha=0.05)
    base = _simulated_runs(seed=1)
    planted = _simulated_runs(shift={"gnplus": 0.2}, seed=2)  # GN+ reduced to GN's accuracy
    assert flag_rate(base, planted, 6, settings, splits=200) >= 0.8
    assert flag_rate(base, planted, 2, settings, splits=200) < flag_rate(
        base, planted, 6, settings, splits=200
    )


def test_the_old_example_bootstrap_test_fails_the_aa_calibration():
    """Each run's accuracy is a draw (seed spread 0.03); examples add binomial noise on top.
    Resampling only examples ignores the first level, so unchanged code looks worse."""
    rng = np.random.default_rng(0)
    pool = {}
    for norm in ("bn", "gnplus"):
        runs = []
        for _ in range(12):
            p = 0.7 + 0.03 * rng.standard_normal()
            runs.append({"clean/accuracy": (rng.random(1000) < p).astype(float)})
        pool[norm] = runs
    old = example_bootstrap_flag_rate(pool, per_side=2, splits=100, resamples=400)
    assert old > 3 * 0.05  # at α = 0.05
    means = {
        n: [{m: float(v.mean()) for m, v in r.items()} for r in runs] for n, runs in pool.items()
    }
    settings = GateSettings(primary=("clean/accuracy",))
    assert flag_rate(means, None, 2, settings, splits=400) <= 0.05 + 2 * math.sqrt(
        0.05 * 0.95 / 400
    )


@pytest.mark.parametrize("nights", [3, 6])
def test_a_pooled_baseline_keeps_aa_false_alarms_at_most_alpha(nights):
    """k nights of 2 runs pooled against one night of 2: still ≤ α (Welch's unequal sizes)."""
    settings = GateSettings(primary=PRIMARY, alpha=0.05)
    rate = flag_rate(
        _simulated_runs(), None, 2, settings, splits=400, seed=10 + nights, base_size=2 * nights
    )
    assert rate <= 0.05 + 2 * math.sqrt(0.05 * 0.95 / 400)


def test_pooling_nights_raises_the_power_against_the_planted_regression():
    """The smoke suite's planted regression (GN+ 0.68 → 0.48, spread 0.03 → 0.10), one
    candidate night of 2 runs against 1, 3 and 6 nights pooled."""
    settings = GateSettings(primary=PRIMARY, alpha=0.05)
    base = _simulated_runs(seed=3)
    rng = np.random.default_rng(4)
    planted = {**_simulated_runs(seed=5), "gnplus": [
        {m: 0.48 + 0.10 * rng.standard_normal() for m in PRIMARY} for _ in range(40)
    ]}  # fmt: skip
    rates = [
        flag_rate(base, planted, 2, settings, splits=200, seed=k, base_size=2 * k)
        for k in (1, 3, 6)
    ]
    assert rates[0] < 0.5  # one night against one: mostly missed
    assert rates[1] >= 0.9 and rates[2] >= rates[1]  # pooled: caught


def test_power_matches_a_simulated_welch_test():
    """statistics.power (noncentral t, pooled df) against 20,000 simulated one-sided tests of
    sd 0.03, 6 against 2 runs, a true drop of 0.05, at level 0.01."""
    rng = np.random.default_rng(0)
    base = 0.7 + 0.03 * rng.standard_normal((20_000, 6))
    cand = 0.65 + 0.03 * rng.standard_normal((20_000, 2))
    t = (cand.mean(1) - base.mean(1)) / np.sqrt(
        ((5 * base.var(1, ddof=1) + cand.var(1, ddof=1)) / 6) * (1 / 6 + 1 / 2)
    )
    simulated = float(np.mean(t < stats.t.ppf(0.01, 6)))
    assert statistics.power(0.03, 6, 2, 0.01, 0.05) == pytest.approx(simulated, abs=0.015)
    assert math.isnan(statistics.power(0.03, 1, 2, 0.01, 0.05))  # no spread to test against
    assert statistics.power(0.03, 60, 60, 0.01, 0.05) > 0.99
