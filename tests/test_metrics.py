"""Metrics against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from robustbench_norm.errors import RobustBenchError
from robustbench_norm.evaluation import metrics
from robustbench_norm.suites.sweeps import regularization_sweep, regularizer_label
from robustbench_norm.training import TrainSpec


def test_corruption_errors_match_a_hand_computed_table():
    # two corruptions × two severities; candidate and reference top-1 errors
    ours = {("fog", 1): 0.30, ("fog", 2): 0.50, ("snow", 1): 0.20, ("snow", 2): 0.40}
    ref = {("fog", 1): 0.40, ("fog", 2): 0.60, ("snow", 1): 0.25, ("snow", 2): 0.35}
    out = metrics.corruption_errors(ours, ref, clean_error=0.10, reference_clean_error=0.15)
    # CE_fog = (0.3 + 0.5) / (0.4 + 0.6) = 0.8;  CE_snow = 0.6 / 0.6 = 1.0
    assert out["ce"]["fog"] == pytest.approx(0.8)
    assert out["ce"]["snow"] == pytest.approx(1.0)
    assert out["mce"]["all"] == pytest.approx(0.9)
    # rel CE_fog = ((0.3−0.1) + (0.5−0.1)) / ((0.4−0.15) + (0.6−0.15)) = 0.6 / 0.7
    # rel CE_snow = ((0.2−0.1) + (0.4−0.1)) / ((0.25−0.15) + (0.35−0.15)) = 0.4 / 0.3
    assert out["relative_ce"]["fog"] == pytest.approx(0.6 / 0.7)
    assert out["relative_ce"]["snow"] == pytest.approx(0.4 / 0.3)
    assert out["relative_mce"]["all"] == pytest.approx((0.6 / 0.7 + 0.4 / 0.3) / 2)


def test_missing_reference_is_a_clear_error_not_a_keyerror():
    with pytest.raises(RobustBenchError, match="reference model has no result"):
        metrics.corruption_errors({("fog", 1): 0.3}, {}, 0.1, 0.1)


def test_flip_probability():
    preds = np.array([[1, 2, 3, 4], [1, 2, 0, 4], [0, 2, 0, 4]])
    assert metrics.flip_probability(preds) == pytest.approx(3 / 8)


def test_mean_ci_is_the_student_t_interval():
    mean, half = metrics.mean_ci([0.80, 0.82, 0.84])
    assert mean == pytest.approx(0.82)
    assert half == pytest.approx(4.302652729 * 0.02 / math.sqrt(3), rel=1e-6)
    assert math.isnan(metrics.mean_ci([0.5])[1])


def test_regularization_sweep_one_factor_at_a_time():
    specs = regularization_sweep(TrainSpec(dropout=0.2))
    labels = [regularizer_label(s) for s in specs]
    assert labels == ["none", "dropout=0.1", "dropout=0.3", "dropout=0.5", "mixup=0.2",
                      "mixup=1", "noise=time_varying"]  # fmt: skip
    assert len(regularization_sweep(TrainSpec(), factorial=True)) == 4 * 3 * 2
