"""Metrics with their definitions written out: accuracy, corruption errors, flip probability
and a confidence interval. Everything takes plain numbers or numpy arrays. Tests between runs
live in ``reporting/statistics.py``: with training runs as the unit, a paired or per-example
test (McNemar) would turn seed luck into a verdict."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from scipy import stats

from robustbench_norm.errors import RobustBenchError


def accuracy(correct: np.ndarray) -> float:
    return float(np.mean(correct)) if len(correct) else float("nan")


# -- corruption errors (Hendrycks & Dietterich 2019) ------------------------------------------


#: the reference's smallest mean error increase over clean per severity (one point of
#: accuracy) for which a relative CE is defined
MIN_REFERENCE_DEGRADATION = 0.01


def corruption_errors(
    errors: Mapping[tuple[str, int], float],
    reference_errors: Mapping[tuple[str, int], float],
    clean_error: float,
    reference_clean_error: float,
) -> dict[str, dict[str, float]]:
    """CE_c, relative CE_c and their means against a reference model.

    CE_c = Σ_s E_{s,c} / Σ_s E^ref_{s,c};  relative CE_c = Σ_s (E_{s,c} − E_clean) /
    Σ_s (E^ref_{s,c} − E^ref_clean);  mCE and relative mCE are the means over corruptions.
    A relative CE_c whose reference degrades by less than :data:`MIN_REFERENCE_DEGRADATION` per
    severity on average is not defined (NaN): a ratio over a denominator near zero swings to
    any size and sign (−5 ± 60 was seen), and relative mCE is the mean over the defined ones
    (NaN when none is).
    ``errors`` maps (corruption, severity) → top-1 error. CIFAR has no AlexNet reference, so the
    reference is a named model of the same suite (by default its BN model).
    """
    missing = sorted(set(errors) - set(reference_errors))
    if missing:
        raise RobustBenchError(
            f"the reference model has no result for {missing[:3]}; evaluate the reference on "
            "the same corruptions and severities"
        )
    names = sorted({c for c, _ in errors})
    ce, rel = {}, {}
    for c in names:
        sev = [s for cc, s in errors if cc == c]
        ours = sum(errors[(c, s)] for s in sev)
        ref = sum(reference_errors[(c, s)] for s in sev)
        ce[c] = ours / ref if ref > 0 else float("nan")
        ref_gap = sum(reference_errors[(c, s)] - reference_clean_error for s in sev)
        our_gap = sum(errors[(c, s)] - clean_error for s in sev)
        defined = ref_gap / len(sev) >= MIN_REFERENCE_DEGRADATION
        rel[c] = our_gap / ref_gap if defined else float("nan")
    finite = [v for v in rel.values() if math.isfinite(v)]
    return {
        "ce": ce,
        "relative_ce": rel,
        "mce": {"all": float(np.mean(list(ce.values())))},
        "relative_mce": {"all": float(np.mean(finite)) if finite else float("nan")},
    }


# -- flip probability (Hendrycks & Dietterich 2019, ImageNet-P) -------------------------------


def flip_probability(predictions: np.ndarray) -> float:
    """(frames, N) predictions of a noise sequence whose frame 0 is clean: the share of noisy
    frames whose prediction differs from the clean frame's. This is ImageNet-P's FP for noise
    perturbations (its code compares every frame with the first when the frames are i.i.d.)."""
    if predictions.shape[0] < 2:
        raise RobustBenchError("flip probability needs at least 2 frames")
    return float(np.mean(predictions[1:] != predictions[0]))


def consecutive_flip_probability(predictions: np.ndarray) -> float:
    """(frames, N): the share of consecutive frame pairs (k−1, k) whose predictions differ —
    ImageNet-P's FP for temporally related sequences; on i.i.d. noisy frames, how often two
    independent draws at the same σ disagree."""
    if predictions.shape[0] < 2:
        raise RobustBenchError("flip probability needs at least 2 frames")
    return float(np.mean(predictions[1:] != predictions[:-1]))


# -- uncertainty ----------------------------------------------------------------------------


def mean_ci(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """Mean and the half-width of its Student-t confidence interval (nan with one value)."""
    v = np.asarray([x for x in values if not math.isnan(x)], dtype=np.float64)
    if len(v) == 0:
        return float("nan"), float("nan")
    if len(v) == 1:
        return float(v[0]), float("nan")
    half = stats.t.ppf(0.5 + confidence / 2, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v))
    return float(v.mean()), float(half)
