"""The paper's claims and the leaderboard statistics: the decision rule by hand, each claim's
false "supported" / "not supported" rate under a simulated null, and cells, intervals, ranks and
stars against hand-computed values."""

from __future__ import annotations

import itertools
import math
import zlib

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from robustbench_norm.evaluation import metrics
from robustbench_norm.reporting import claims, statistics
from robustbench_norm.reporting.claims import (
    INCONCLUSIVE,
    NO_EFFECT,
    NOT_SUPPORTED,
    SUPPORTED,
    Comparison,
    decide,
)
from robustbench_norm.reporting.leaderboard import Cell, pivot
from robustbench_norm.reporting.tables import _mce_tables, build_tables, chance_corruptions
from robustbench_norm.suites.execute import stability_rows

ALPHA = 0.05


def comparison(p_for, p_against, p_eq=None):
    return Comparison("c", "3/3", "Δ", p_for, p_against, p_eq)


# -- the decision rule -------------------------------------------------------------------------


def test_decide_applies_holm_before_a_verdict():
    # "all": Holm of (0.01, 0.02) = (0.02, 0.02) < α → supported; (0.01, 0.04) → 0.04·1, 0.01·2
    assert decide("x", [comparison(0.01, 0.99), comparison(0.02, 0.98)], "t", ALPHA).verdict == (
        SUPPORTED
    )
    weak = decide("x", [comparison(0.01, 0.99), comparison(0.03, 0.97)], "t", ALPHA)
    assert weak.verdict == SUPPORTED and weak.p_value == pytest.approx(0.03)
    failing = decide("x", [comparison(0.01, 0.99), comparison(0.3, 0.7)], "t", ALPHA)
    assert failing.verdict == INCONCLUSIVE and failing.p_value == pytest.approx(0.3)
    # "not supported" needs the opposite direction to survive Holm: 0.03 × 2 = 0.06 does not
    opposite = [comparison(0.9, 0.03), comparison(0.5, 0.5)]
    assert decide("x", opposite, "t", ALPHA).verdict == INCONCLUSIVE
    opposite = [comparison(0.99, 0.01), comparison(0.5, 0.5)]
    assert decide("x", opposite, "t", ALPHA).verdict == NOT_SUPPORTED
    # "any": the smallest Holm-adjusted p decides (0.01 × 3 = 0.03)
    mixed = [comparison(0.01, 0.99), comparison(0.6, 0.4), comparison(0.7, 0.3)]
    assert decide("x", mixed, "t", ALPHA, rule="any").verdict == SUPPORTED
    assert decide("x", mixed, "t", ALPHA, rule="all").verdict == INCONCLUSIVE


def test_decide_bounds_an_absent_effect_and_refuses_one_run():
    equivalent = [comparison(0.4, 0.6, 0.01), comparison(0.5, 0.5, 0.02)]
    out = decide("x", equivalent, "t", ALPHA, margin=0.02)
    assert out.verdict == NO_EFFECT and "±0.02" in out.evidence
    one_run = [Comparison("bs 64", "1/1", "Δ +0.2", math.nan, math.nan)]
    out = decide("x", one_run, "t", ALPHA)
    assert out.verdict == INCONCLUSIVE and "too few runs" in out.evidence


# -- simulated runs ----------------------------------------------------------------------------


def frame_of(runs: list[dict]) -> pd.DataFrame:
    """Tidy result rows like the store's: one dict per (run, metric)."""
    rows = []
    for job_id, run in enumerate(runs):
        base = {k: run[k] for k in ("model", "norm", "batch_size", "seed", "regularizer")}
        for (family, name, parameter, metric), value in run["values"].items():
            rows.append(
                dict(base, job_id=job_id, key=str(job_id), status="done", family=family,
                     name=name, parameter=parameter, metric=metric, value=value)
            )  # fmt: skip
    return pd.DataFrame(rows)


def simulated_runs(rng, norms, seeds=4, batch_sizes=(8, 64), regularizers=("none",), shift=None):
    """Every norm drawn from one distribution (the null) unless ``shift`` moves one."""
    shift = shift or {}
    runs = []
    for norm, bs, reg, seed in itertools.product(norms, batch_sizes, regularizers, range(seeds)):
        clean = 0.7 - (0.05 if reg != "none" else 0.0) + 0.03 * rng.standard_normal()
        clean -= shift.get(norm, 0.0)
        values = {
            ("clean", "clean", None, "accuracy"): clean,
            ("noise", "gaussian_noise", None, "mean_accuracy"): clean * (0.7 + 0.03 * rng.standard_normal()),
            ("corruption", "all", None, "mean_corruption_accuracy"): clean * (0.5 + 0.03 * rng.standard_normal()),
            ("stability", "landscape_range_per_length", None, "mean"): abs(1 + 0.2 * rng.standard_normal()),
            ("stability", "beta_smoothness", None, "mean"): abs(10 + 2 * rng.standard_normal()),
        }  # fmt: skip
        runs.append(dict(model="resnet20", norm=norm, batch_size=bs, seed=seed,
                         regularizer=reg, values=values))  # fmt: skip
    return runs


@pytest.mark.parametrize(
    ("name", "claim"),
    [
        ("gnplus_beats_gn", lambda f, j: claims.gnplus_beats_gn(f, ALPHA)),
        ("noise", lambda f, j: claims.gn_more_sensitive_to_noise(f, ALPHA)),
        ("regularization", lambda f, j: claims.gn_more_sensitive_to_regularization(f, ALPHA)),
        ("gn_less_stable", lambda f, j: claims.gn_less_stable_than_bn(f, j, ALPHA)),
        ("gnplus_stabilizes", lambda f, j: claims.gnplus_stabilizes_training(f, j, ALPHA)),
    ],
)
def test_each_claim_keeps_its_false_verdict_rate_under_the_null(name, claim):
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    regs = ("none", "dropout=0.1", "mixup=0.2")
    trials, wrong = 200, 0
    for _ in range(trials):
        runs = simulated_runs(rng, ("bn", "gn", "gnplus"), regularizers=regs)
        jobs = [
            {"norm": r["norm"], "status": "done", "stability": [], "regularizer": "none"}
            for r in runs
        ]
        verdict = claim(frame_of(runs), jobs).verdict
        wrong += verdict in (SUPPORTED, NOT_SUPPORTED)
    # α per direction at most; two binomial standard errors of slack over 200 trials
    assert wrong / trials <= 2 * ALPHA + 2 * math.sqrt(2 * ALPHA * (1 - 2 * ALPHA) / trials)


def test_a_real_effect_is_supported_and_its_reverse_is_not():
    rng = np.random.default_rng(3)
    better = frame_of(simulated_runs(rng, ("gn", "gnplus"), seeds=6, shift={"gn": 0.1}))
    assert claims.gnplus_beats_gn(better, ALPHA).verdict == SUPPORTED
    worse = frame_of(simulated_runs(rng, ("gn", "gnplus"), seeds=6, shift={"gnplus": 0.1}))
    assert claims.gnplus_beats_gn(worse, ALPHA).verdict == NOT_SUPPORTED


def test_sensitivity_uses_the_relative_drop():
    """A near-chance GN that loses little in absolute terms still loses a share of what it has."""
    runs = []
    for norm, clean, noisy in (("bn", 0.8, 0.6), ("gn", 0.2, 0.1)):
        for seed in range(4):
            eps = 0.001 * seed
            runs.append(dict(model="m", norm=norm, batch_size=64, seed=seed, regularizer="none",
                             values={("clean", "clean", None, "accuracy"): clean + eps,
                                     ("noise", "gaussian_noise", None, "mean_accuracy"): noisy + eps}))  # fmt: skip
    out = claims.gn_more_sensitive_to_noise(frame_of(runs), ALPHA)
    # absolute drops: BN 0.2 > GN 0.1; relative: GN 0.5 > BN 0.25 → supported, with a caution
    assert out.verdict == SUPPORTED and "Caution" in out.evidence
    assert "Δ +0.24" in out.evidence
    # GN's and BN's clean accuracies do not overlap: no matched comparison, and it says so
    assert "not estimable (clean accuracies do not overlap)" in out.evidence


def test_regularization_pairs_each_regularized_run_with_its_own_seed():
    """GN's seeds differ widely but every regularizer costs each seed a fixed share: paired by
    seed, GN's drops are exact and beat BN's; against the unregularized mean they would scatter.
    The deciding number is each seed's mean drop over the regularizers, here by hand."""
    gn_base, bn_base = [0.40, 0.55, 0.70, 0.62], [0.78, 0.76, 0.77, 0.79]
    share = {
        "gn": {"dropout=0.3": 0.20, "mixup=0.4": 0.30},
        "bn": {"dropout=0.3": 0.05, "mixup=0.4": 0.10},
    }
    runs = []
    for norm, bases in (("gn", gn_base), ("bn", bn_base)):
        for seed, base in enumerate(bases):
            jitter = 0.002 * (seed - 1.5)  # per-seed noise in the drop, so Welch has a variance
            accs = {"none": base} | {r: base * (1 - s - jitter) for r, s in share[norm].items()}
            runs += [dict(model="m", norm=norm, batch_size=64, seed=seed, regularizer=r,
                          values={("clean", "clean", None, "accuracy"): a}) for r, a in accs.items()]  # fmt: skip
    frame = frame_of(runs)
    drops = claims.seed_drops(frame[frame.norm == "gn"], ["dropout=0.3", "mixup=0.4"])
    assert drops["mixup=0.4"].tolist() == pytest.approx(
        [0.30 + 0.002 * (s - 1.5) for s in range(4)]
    )
    out = claims.gn_more_sensitive_to_regularization(frame, ALPHA)
    gn_mean = [0.25 + 0.002 * (s - 1.5) for s in range(4)]
    bn_mean = [0.075 + 0.002 * (s - 1.5) for s in range(4)]
    expected = statistics.welch(gn_mean, bn_mean)
    assert out.verdict == SUPPORTED and out.p_value == pytest.approx(expected.p_greater)
    assert "mean over 2 regularizers: Δ +0.1750" in out.evidence and "(n 4/4)" in out.evidence
    assert "Per regularizer (Holm, not deciding)" in out.evidence
    # a seed whose regularized run is missing is left out of the mean, and named
    partial = frame[
        ~((frame.norm == "gn") & (frame.seed == 3) & (frame.regularizer == "mixup=0.4"))
    ]
    out = claims.gn_more_sensitive_to_regularization(partial, ALPHA)
    assert "(n 3/4)" in out.evidence and "gn: 1 seed(s) without every run" in out.evidence
    # the reverse (BN loses more) is "not supported"
    swapped = frame.assign(norm=frame.norm.map({"gn": "bn", "bn": "gn"}))
    assert claims.gn_more_sensitive_to_regularization(swapped, ALPHA).verdict == NOT_SUPPORTED


# -- statistics by hand -------------------------------------------------------------------------


def test_matched_difference_is_the_ancova_group_coefficient_by_hand():
    """Perturbed accuracy at equal clean accuracy: y = c + s·x + δ·[a], fitted by the normal
    equations written out here, and refused where the x ranges do not overlap."""
    xa, ya = [0.60, 0.65, 0.70, 0.72], [0.50, 0.55, 0.57, 0.61]
    xb, yb = [0.62, 0.68, 0.74, 0.78], [0.46, 0.50, 0.56, 0.58]
    m = statistics.matched_difference(xa, ya, xb, yb)
    x = np.array(xa + xb)
    y = np.array(ya + yb)
    design = np.column_stack([np.ones(8), x, [1, 1, 1, 1, 0, 0, 0, 0]])
    xtx_inv = np.linalg.inv(design.T @ design)
    beta = xtx_inv @ design.T @ y
    resid = y - design @ beta
    se = math.sqrt(resid @ resid / 5 * xtx_inv[2, 2])
    assert m.delta == pytest.approx(beta[2]) and m.slope == pytest.approx(beta[1])
    assert m.se == pytest.approx(se) and m.df == 5
    assert m.p_value == pytest.approx(2 * stats.t.sf(abs(beta[2]) / se, 5))
    assert m.ci_low == pytest.approx(beta[2] - stats.t.ppf(0.975, 5) * se)
    # the planted gap: group a sits about 0.07 higher at the same clean accuracy
    assert 0.03 < m.delta < 0.11
    # no overlap of clean accuracy: an extrapolation, refused; too few runs: refused
    assert statistics.matched_difference([0.3, 0.35], [0.2, 0.25], [0.7, 0.8], [0.5, 0.6]) is None
    assert statistics.matched_difference([0.6], [0.5], [0.6, 0.7], [0.5, 0.6]) is None


def test_welch_equivalence_and_variance_ratio_by_hand():
    a, b = [0.70, 0.72, 0.74, 0.72], [0.71, 0.70, 0.72, 0.71]
    d = statistics.welch(a, b)
    va, vb = np.var(a, ddof=1), np.var(b, ddof=1)
    se = math.sqrt(va / 4 + vb / 4)
    assert d.delta == pytest.approx(0.01) and d.p_greater == pytest.approx(
        stats.t.sf(0.01 / se, d.df)
    )
    # TOST at margin 0.03: max of P(T ≥ (Δ + m)/se) and P(T ≤ (Δ − m)/se)
    expected = max(stats.t.sf((0.01 + 0.03) / se, d.df), stats.t.cdf((0.01 - 0.03) / se, d.df))
    assert statistics.equivalence(a, b, 0.03) == pytest.approx(expected)
    assert statistics.equivalence(a, b, 0.03) < 0.05 < statistics.equivalence(a, b, 0.005)
    ratio, p = statistics.variance_ratio(a, b)
    assert ratio == pytest.approx(va / vb) and p == pytest.approx(stats.f.sf(va / vb, 3, 3))


def test_intervals_are_clipped_to_the_metric_range():
    mean, lo, hi = statistics.mean_interval([0.98, 0.99, 1.0], (0.0, 1.0))
    half = stats.t.ppf(0.975, 2) * np.std([0.98, 0.99, 1.0], ddof=1) / math.sqrt(3)
    assert (mean, lo, hi) == pytest.approx((0.99, 0.99 - half, 1.0))


def test_cells_show_runs_below_three_and_clipped_intervals_from_three():
    two = Cell([0.742, 0.75])
    assert two.text() == "0.742 / 0.750" and math.isnan(two.low)
    three = Cell([0.2, 0.5, 0.9])
    assert three.low == 0.0 and three.text().startswith("0.533 [0.000, ")


def table_of(values: dict[str, list[float]]) -> pd.DataFrame:
    rows = [
        dict(model="m", batch_size=64, regularizer="none", norm=n, value=v)
        for n, vs in values.items()
        for v in vs
    ]
    return pd.DataFrame(rows)


def test_ranks_tie_unless_a_corrected_test_separates_them():
    frame = table_of({"a": [0.90, 0.91, 0.92], "b": [0.60, 0.61, 0.62], "c": [0.89, 0.93, 0.90]})
    t = pivot(frame, id="x", title="x", description="x")
    assert t.ranks == {"a": 1, "c": 1, "b": 3}
    assert t.rank_label("a") == "1=" and t.rank_label("b") == "3"
    assert not any(cell.best for row in t.rows.values() for cell in row.values())  # a ~ c: no ★
    clear = pivot(table_of({"a": [0.90, 0.91, 0.92], "b": [0.60, 0.61, 0.62]}), id="y",
                  title="y", description="y")  # fmt: skip
    assert clear.rows["a"]["m · bs 64"].best and clear.ranks == {"a": 1, "b": 2}


def test_mce_uses_one_fixed_reference_and_the_reference_scatters_around_one():
    rows = []
    errors = {
        ("bn", 0): (0.2, 0.5),
        ("bn", 1): (0.3, 0.7),
        ("gn", 0): (0.4, 0.6),
        ("gn", 1): (0.4, 0.8),
    }
    for job_id, ((norm, seed), (clean_err, corr_err)) in enumerate(errors.items()):
        base = dict(model="m", batch_size=64, regularizer="none", norm=norm, seed=seed,
                    job_id=job_id, status="done")  # fmt: skip
        rows.append(
            dict(
                base,
                family="clean",
                name="clean",
                parameter=None,
                metric="accuracy",
                value=1 - clean_err,
            )
        )
        rows.append(dict(base, family="corruption", name="fog", parameter=3.0, metric="accuracy", value=1 - corr_err))  # fmt: skip
    mce, relative = _mce_tables(pd.DataFrame(rows), "bn", ["bn", "gn"])
    cell = mce.rows["bn"]["m · bs 64"]
    # the reference error is the BN mean, 0.6: BN runs 0.5/0.6 and 0.7/0.6, GN 0.6/0.6, 0.8/0.6
    assert cell.values == pytest.approx([0.5 / 0.6, 0.7 / 0.6]) and cell.mean == pytest.approx(1.0)
    assert mce.rows["gn"]["m · bs 64"].values == pytest.approx([1.0, 0.8 / 0.6])
    # relative: (E − E_clean) / (E_ref − E_ref,clean) with E_ref,clean the BN mean, 0.25
    assert relative.rows["gn"]["m · bs 64"].values == pytest.approx([0.2 / 0.35, 0.4 / 0.35])


def test_corruptions_at_chance_are_flagged():
    rows = [
        dict(norm=n, family="corruption", name=c, parameter=s, metric="accuracy", value=v)
        for n in ("bn", "gn")
        for c, v in (("fog", 0.1), ("contrast", 0.6))
        for s in (1.0, 5.0)
    ]
    assert chance_corruptions(pd.DataFrame(rows)) == ["fog"]


def test_stability_rows_are_means_overall_and_per_third():
    stability = [
        {"step": s, "landscape_range": float(s), "landscape_range_per_length": 1.0,
         "grad_change_max": 0.0, "beta_smoothness": 2.0}
        for s in (0, 10, 20, 30, 40, 50)
    ]  # fmt: skip
    rows = {(r["name"], r["parameter"], r["metric"]): r["value"] for r in stability_rows(stability)}
    assert rows[("landscape_range", None, "mean")] == 25.0
    # thirds of [0, 51): steps 0, 10 | 20, 30 | 40, 50
    assert [rows[("landscape_range", p, "phase_mean")] for p in (0, 1, 2)] == [5.0, 25.0, 45.0]


def test_mce_intervals_carry_the_reference_means_uncertainty():
    """A CE is a ratio to the reference's seed-mean errors, so every other row's interval must
    include how well that mean is known: SE² = s²/n + mean²·(sd_ref / (√n_ref · mean_ref))², with
    Welch–Satterthwaite degrees of freedom, here by hand."""
    from robustbench_norm.reporting.leaderboard import Cell, Table
    from robustbench_norm.reporting.tables import carry_reference_uncertainty

    table = Table("mce", "mCE", "", False, ["c"])
    table.rows = {
        "bn": {"c": Cell([0.9, 1.0, 1.1], None)},
        "gn": {"c": Cell([1.2, 1.3, 1.4], None)},
    }
    alone = (table.rows["gn"]["c"].low, table.rows["gn"]["c"].high)
    carry_reference_uncertainty(table, "bn")
    own = np.var([1.2, 1.3, 1.4], ddof=1) / 3  # 0.01 / 3
    rse = np.std([0.9, 1.0, 1.1], ddof=1) / math.sqrt(3) / 1.0  # 0.1 / √3
    ref = 1.3**2 * rse**2
    df = (own + ref) ** 2 / (own**2 / 2 + ref**2 / 2)
    half = stats.t.ppf(0.975, df) * math.sqrt(own + ref)
    gn = table.rows["gn"]["c"]
    assert (gn.low, gn.high) == pytest.approx((1.3 - half, 1.3 + half))
    assert gn.low < alone[0] and gn.high > alone[1]  # wider than the runs' spread alone
    # the reference's own row keeps its runs' interval around 1
    bn = table.rows["bn"]["c"]
    assert bn.mean == pytest.approx(1.0) and bn.low == pytest.approx(
        1.0 - stats.t.ppf(0.975, 2) * 0.1 / math.sqrt(3)
    )


def _phase_jobs(rng, late: dict, scale: dict, seeds: int = 5) -> list[dict]:
    """Jobs with 9 stability measurements (3 per third); ``late[(norm, bs)]`` is the mean of
    the last third, the first two thirds are 100 (none), 20 (BN) and 40 (GN), times
    ``scale[bs]``."""
    early = {"none": 100.0, "bn": 20.0, "gn": 40.0}
    jobs = []
    for norm, bs, seed in itertools.product(("none", "bn", "gn"), (8, 64), range(seeds)):
        means = [early[norm], early[norm], late[(norm, bs)]]
        stability = [
            {"step": 10 * k, "landscape_range_per_length":
             scale[bs] * means[k // 3] * (1 + 0.05 * rng.standard_normal())}
            for k in range(9)
        ]  # fmt: skip
        jobs.append(dict(model="resnet20", norm=norm, batch_size=bs, seed=seed,
                         regularizer="none", status="done", stability=stability))  # fmt: skip
    return jobs


def test_part_of_training_is_decided_per_batch_size_with_its_refutation_inside_holm():
    rng = np.random.default_rng(7)
    late = {("none", 8): 100.0, ("bn", 8): 20.0, ("gn", 8): 60.0,  # GN helps late at bs 8
            ("none", 64): 100.0, ("bn", 64): 20.0, ("gn", 64): 100.0}  # fmt: skip
    scale = {8: 1.0, 64: 30.0}  # landscape values live on different scales per batch size
    claim = claims.gn_helps_only_in_part_of_training(_phase_jobs(rng, late, scale), ALPHA)
    labels = [c.label for c in claim.comparisons]
    assert len(labels) == 12 and all(c.n == "5/5" for c in claim.comparisons)  # never pooled
    assert sum(label.startswith("resnet20 bs 8: ") for label in labels) == 6
    assert claim.verdict == NOT_SUPPORTED
    # the deciding p is the Holm-adjusted one over the whole family, not a raw extra test
    late8 = next(c for c in claim.comparisons if c.label == "resnet20 bs 8: GN ≈ none late")
    assert claim.p_value == pytest.approx(
        min(statistics.holm([c.p_against for c in claim.comparisons]))
    )
    assert claim.p_value > late8.p_against  # adjusted upward from the raw refuting p
    # where GN does not help late at either batch size, equivalence late supports the claim
    late[("gn", 8)] = 100.0
    claim = claims.gn_helps_only_in_part_of_training(_phase_jobs(rng, late, scale), ALPHA)
    assert claim.verdict == SUPPORTED, claim.evidence


def test_each_stability_table_pools_the_runs_of_one_setting_only():
    rng = np.random.default_rng(11)
    runs = simulated_runs(rng, ("bn", "gn"), regularizers=("none", "noise=time_varying"))
    for r in runs:  # a regularizer that makes BN's runs scatter widely
        if r["regularizer"] != "none" and r["norm"] == "bn":
            r["values"][("clean", "clean", None, "accuracy")] = 0.3 + 0.3 * rng.random()
    frame = frame_of(runs)
    jobs = [dict(model=r["model"], norm=r["norm"], batch_size=r["batch_size"], seed=r["seed"],
                 regularizer=r["regularizer"], status="done", stability=[]) for r in runs]  # fmt: skip
    tables = {t.id: t for t in build_tables(frame, jobs, ["bn", "gn"], None)}
    assert {i for i in tables if i.startswith("stability")} == {
        "stability-resnet20-bs8", "stability-resnet20-bs64",
        "stability-resnet20-bs8-noise-time-varying", "stability-resnet20-bs64-noise-time-varying",
    }  # fmt: skip
    table = tables["stability-resnet20-bs64"]
    assert table.title == "Training stability · resnet20 · bs 64"
    bn = [r["values"][("clean", "clean", None, "accuracy")] for r in runs
          if (r["norm"], r["batch_size"], r["regularizer"]) == ("bn", 64, "none")]  # fmt: skip
    assert table.rows["bn"]["accuracy seed sd"].values == [pytest.approx(np.std(bn, ddof=1))]
    assert table.rows["bn"]["diverged runs"].display == "0 / 4"


def test_the_unmatched_accuracy_caution_is_decided_per_setting():
    """GN trails BN by 0.06 at batch 8 and 0.14 at batch 64: pooled, the gap (0.10) would hide
    the caution that batch 64 needs."""
    rng = np.random.default_rng(5)
    runs = simulated_runs(rng, ("bn", "gn"))
    for r in runs:
        gap = {8: 0.06, 64: 0.14}[r["batch_size"]] if r["norm"] == "gn" else 0.0
        r["values"][("clean", "clean", None, "accuracy")] = 0.8 - gap + 0.001 * rng.random()
    claim = claims.gn_more_sensitive_to_noise(frame_of(runs), ALPHA)
    assert "Caution: clean accuracy resnet20 bs 64 GN 0.66" in claim.evidence
    assert "bs 8 GN" not in claim.evidence


def test_a_relative_ce_over_a_reference_that_barely_degrades_is_not_defined():
    # the reference (BN) loses 0.004 on fog and 0.3 on snow: fog's ratio is left out
    out = metrics.corruption_errors(
        {("fog", 1): 0.30, ("snow", 1): 0.50}, {("fog", 1): 0.204, ("snow", 1): 0.50}, 0.2, 0.2
    )
    assert math.isnan(out["relative_ce"]["fog"])
    assert out["relative_ce"]["snow"] == pytest.approx(0.3 / 0.3)
    assert out["relative_mce"]["all"] == pytest.approx(1.0)  # the mean over the defined one
    only_fog = metrics.corruption_errors({("fog", 1): 0.3}, {("fog", 1): 0.204}, 0.2, 0.2)
    assert math.isnan(only_fog["relative_mce"]["all"])
    rows = []
    for job_id, (norm, seed) in enumerate(itertools.product(("bn", "gn"), range(3))):
        base = dict(model="m", batch_size=64, regularizer="none", norm=norm, seed=seed,
                    job_id=job_id, status="done", parameter=None)  # fmt: skip
        clean = 0.8 if norm == "bn" else 0.6 + 0.01 * seed
        rows.append(dict(base, family="clean", name="clean", metric="accuracy", value=clean))
        rows.append(dict(base, family="corruption", name="fog", parameter=3.0, metric="accuracy",
                         value=clean - (0.004 if norm == "bn" else 0.2)))  # fmt: skip
    mce, relative = _mce_tables(pd.DataFrame(rows), "bn", ["bn", "gn"])
    for norm in ("bn", "gn"):
        cell = relative.rows[norm]["m · bs 64"]
        assert cell.text() == "not defined (the reference barely degrades)" and not cell.ranked
    assert relative.ranks == {}  # nothing to rank
    assert mce.rows["gn"]["m · bs 64"].ranked  # CE itself stays defined


def test_ranks_compare_rows_on_the_columns_all_of_them_share():
    """BN beats GN clearly in the two columns every row has; in a sweep column only BN and GN
    have, GN is better. Before, BN had to win there too, while GN+ only had the two columns."""
    rows = []
    values = {("bn", "a"): 0.9, ("gn", "a"): 0.7, ("gnplus", "a"): 0.8,
              ("bn", "b"): 0.9, ("gn", "b"): 0.7, ("gnplus", "b"): 0.8,
              ("bn", "sweep"): 0.5, ("gn", "sweep"): 0.6}  # fmt: skip
    for (norm, column), mean in values.items():
        for seed in range(4):
            rows.append({"norm": norm, "column": column, "value": mean + 0.004 * (seed - 1.5),
                         "model": "m", "batch_size": 8, "regularizer": "none"})  # fmt: skip
    table = pivot(pd.DataFrame(rows), id="t", title="t", description="d",
                  column_of=lambda r: r.column)  # fmt: skip
    assert table.ranks == {"bn": 1, "gnplus": 2, "gn": 3}
    assert table.rank_tests() == 3 * 2 * 2


def test_a_supported_claim_says_why_its_table_shows_a_tie():
    from robustbench_norm.reporting.report import _explain_rank_ties

    rng = np.random.default_rng(1)
    rows = [{"norm": n, "value": m + 0.05 * rng.standard_normal(), "model": "m", "batch_size": 8,
             "regularizer": "none"}
            for n, m in (("gnplus", 0.80), ("gn", 0.76), ("bn", 0.9)) for _ in range(6)]  # fmt: skip
    table = pivot(pd.DataFrame(rows), id="clean", title="Clean accuracy", description="d")
    assert table.ranks["gnplus"] == table.ranks["gn"]  # a tie after Holm over 6 tests
    claim = claims.Claim("GN+ beats GN at every batch size", "e", "t", 0.01, SUPPORTED,
                         [comparison(0.01, 0.99)])  # fmt: skip
    _explain_rank_ties([table], [claim])
    assert "ranks gnplus and gn alike: its ranks correct over 6 tests" in claim.evidence
    other = claims.Claim("GN+ beats GN at every batch size", "e", "t", 0.3, INCONCLUSIVE, [])
    _explain_rank_ties([table], [other])
    assert other.evidence == "e"


def test_a_stability_table_without_measures_says_why_and_ranks_nothing():
    rng = np.random.default_rng(2)
    runs = simulated_runs(rng, ("bn", "gn"), seeds=2, batch_sizes=(64,))
    for r in runs:  # a suite without [stability]
        r["values"] = {k: v for k, v in r["values"].items() if k[0] != "stability"}
    jobs = [dict(model=r["model"], norm=r["norm"], batch_size=r["batch_size"], seed=r["seed"],
                 regularizer="none", status="done", stability=[]) for r in runs]  # fmt: skip
    (table,) = [t for t in build_tables(frame_of(runs), jobs, ["bn", "gn"], None)
                if t.id == "stability"]  # fmt: skip
    assert table.columns == ["accuracy seed sd", "diverged runs"]
    assert "the suite has no [stability] section" in table.description
    assert "a sd over 2 runs is itself uncertain" in table.description
    assert not table.has_ranks and table.rank_label("bn") == "—"
