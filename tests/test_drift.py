"""The slow-drift test: against a hand computation, on simulated null histories (any false
alarm over 30 nights, looking every night, ≤ α) and against a planted drift."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from robustbench_norm.reporting.calibration import first_drift_alarm, simulated_history
from robustbench_norm.reporting.drift import HORIZON, WINDOW, detect_drift, look_level


def test_the_recent_window_against_the_earlier_nights_by_hand():
    earlier = [[0.70, 0.72], [0.71, 0.69], [0.70, 0.71], [0.72, 0.70], [0.69, 0.71]]
    recent = [[0.66, 0.68], [0.65, 0.67], [0.66, 0.64], [0.67, 0.65], [0.64, 0.66]]
    (finding,) = detect_drift({"gnplus · resnet20 · bs 64 · clean/accuracy": earlier + recent})
    a, b = np.concatenate(recent), np.concatenate(earlier)
    # one-sided Welch by hand: is the recent window lower?
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    p = stats.t.cdf((a.mean() - b.mean()) / math.sqrt(va + vb), df)
    assert finding.p_value == pytest.approx(p, rel=1e-9)
    assert finding.delta == pytest.approx(a.mean() - b.mean())
    assert finding.drift and finding.p_adjusted < look_level(0.05) == 0.05 / 21


def test_lower_is_better_metrics_are_turned_round_and_short_histories_wait():
    rising = [[0.10, 0.11]] * WINDOW + [[0.20, 0.21], [0.19, 0.22], [0.2, 0.2], [0.21, 0.2],
                                         [0.2, 0.19]]  # fmt: skip
    (flip,) = detect_drift({"bn · s · noise_sequence/flip_probability": rising})
    # more flips is worse: Δ is oriented so that negative is worse
    assert flip.drift and flip.recent > flip.reference and flip.delta < 0
    assert detect_drift({"bn · s · clean/accuracy": rising[:-1]}) == []  # 9 nights: not yet


def test_null_histories_raise_any_alarm_in_30_nights_at_most_alpha():
    """Looking every night from night 10 to 30 (21 looks), 9 series, 2 runs a night."""
    rng = np.random.default_rng(0)
    alarms = [first_drift_alarm(simulated_history(HORIZON, 2, rng), 0.05) for _ in range(150)]
    rate = np.mean([a is not None for a in alarms])
    assert rate <= 0.05 + 2 * math.sqrt(0.05 * 0.95 / 150)


def test_a_planted_drift_is_found():
    """GN+ loses 0.004 a night from night 10 on, well inside one night's seed spread (0.026
    on clean accuracy): the night-to-night gate passes each night; the drift test finds it."""
    rng = np.random.default_rng(1)
    alarms = [
        first_drift_alarm(simulated_history(HORIZON, 2, rng, {"gnplus": 0.004}, 10), 0.05)
        for _ in range(40)
    ]
    assert np.mean([a is not None for a in alarms]) >= 0.8
    assert all(a is None or a > 10 for a in alarms)  # never before the drift began
