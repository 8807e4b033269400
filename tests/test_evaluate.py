"""evaluate(): noise, noise sequences, corruptions and attacks on small trained models."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from robustbench_norm.data import load_split
from robustbench_norm.errors import RobustBenchError
from robustbench_norm.evaluation import (
    CleanSpec,
    CorruptionSpec,
    NoiseSequenceSpec,
    NoiseSpec,
    corruption_error_table,
    evaluate,
    predict,
)
from robustbench_norm.perturb.attacks import ATTACKS, AttackSpec, sanity_warnings
from robustbench_norm.perturb.noise import gaussian_noise_images, noise_sequence_images
from robustbench_norm.training import TrainSpec, load_trained, train

NORMS = {"bn": {}, "gn": {"groups": 2}, "gnplus": {"groups": 2}}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Small ResNet-20s (width 4), trained for 60 steps: accurate enough to be attacked (at 30
    steps BN reached 0.21–0.31 on the first 48 images, depending on the thread count: too close
    to chance for a budget to hurt it measurably)."""
    root = tmp_path_factory.mktemp("models")
    out = {}
    for norm, options in NORMS.items():
        spec = TrainSpec(model="resnet20", width=4, norm=norm, norm_options=options,
                         steps=60, batch_size=128, lr=0.05)  # fmt: skip
        out[norm] = train(spec, root, quiet=True).checkpoint
    return out


@pytest.fixture(scope="module")
def test_split():
    return load_split("fashion-mnist-mini", "test").subset(120)


# -- noise -----------------------------------------------------------------------------------


def test_noise_sequence_frames_are_truncated_to_8_bits_as_cifar_10_p_stores_them(test_split):
    """make_cifar_p.py keeps np.uint8(255 · clip(x + noise, 0, 1)): truncation, not rounding.
    The same draws, redone by hand from the documented seeding."""
    frames, sigma = 4, 0.05
    seq = noise_sequence_images(test_split, frames, sigma, seed=3)
    rng = np.random.default_rng(
        [3, int(test_split.fingerprint[:15], 16), frames, round(sigma * 1_000_000), 2]
    )
    x = test_split.images.astype(np.float32) / 255.0
    assert np.array_equal(seq[0], test_split.images)
    for k in range(1, frames):
        noisy = x + rng.standard_normal(x.shape, dtype=np.float32) * np.float32(sigma)
        expected = np.uint8(np.float32(255.0) * np.clip(noisy, 0.0, 1.0))
        assert np.array_equal(seq[k], expected)
        rounded = np.round(np.clip(noisy, 0.0, 1.0) * 255.0).astype(np.uint8)
        assert (seq[k] != rounded).mean() > 0.3  # rounding would differ on about half


def test_noise_is_a_function_of_split_sigma_and_seed(test_split):
    a = gaussian_noise_images(test_split, 0.1, seed=0)
    assert np.array_equal(a, gaussian_noise_images(test_split, 0.1, seed=0))
    assert not np.array_equal(a, gaussian_noise_images(test_split, 0.1, seed=1))
    assert not np.array_equal(a, gaussian_noise_images(test_split, 0.05, seed=0))
    assert gaussian_noise_images(test_split, 0.0) is test_split.images


def test_noise_has_the_requested_sigma_in_pixel_space(test_split):
    clean = test_split.images.astype(np.float64) / 255
    noisy = gaussian_noise_images(test_split, 0.05, seed=0).astype(np.float64) / 255
    mid = (clean > 0.3) & (clean < 0.7)  # away from clipping at 0 and 1
    assert (noisy - clean)[mid].std() == pytest.approx(0.05, rel=0.03)
    assert abs((noisy - clean)[mid].mean()) < 0.002


def test_noise_at_sigma_zero_is_clean_accuracy(checkpoints, test_split):
    result = evaluate(checkpoints["bn"], test_split, NoiseSpec(sigmas=(0.0, 0.1)))
    assert result.metric("gaussian_noise", 0.0, "accuracy") == result.clean_accuracy
    assert np.array_equal(result.conditions[0].correct, result.clean_correct)
    # the mean over σ leaves out σ = 0
    assert result.metric("gaussian_noise", None, "mean_accuracy") == result.conditions[1].accuracy


def test_noise_sequences_follow_cifar10p_and_flip_probability_is_computed_by_hand(
    checkpoints, test_split
):
    """Frame 0 clean, then fresh noise of one fixed σ per frame; FP against the clean frame,
    consecutive FP and the accuracy on the noisy frames, all recomputed here."""
    frames = noise_sequence_images(test_split, 6, 0.05)
    assert np.array_equal(frames[0], test_split.images)
    x = frames.astype(np.float64) / 255
    mid = (x[0] > 0.2) & (x[0] < 0.8)  # away from the clipping at 0 and 1
    for k in range(1, 6):
        assert (x[k] - x[0])[mid].std() == pytest.approx(0.05, rel=0.05)  # the same σ …
    assert not np.array_equal(frames[1], frames[2])  # … drawn fresh for every frame
    model, _ = load_trained(checkpoints["gn"])
    preds = np.stack([predict(model, f, 100, torch.device("cpu")) for f in frames])
    result = evaluate(checkpoints["gn"], test_split, NoiseSequenceSpec(frames=6, sigma=0.05))
    fp = result.metric("noise_sequence", 0.05, "flip_probability")
    assert fp == pytest.approx(np.mean(preds[1:] != preds[0]))
    consecutive = result.metric("noise_sequence", 0.05, "consecutive_flip_probability")
    assert consecutive == pytest.approx(np.mean(preds[2:] != preds[1:-1]))
    accuracy = result.metric("noise_sequence", 0.05, "mean_accuracy")
    assert accuracy == pytest.approx(np.mean(preds[1:] == test_split.labels))
    with pytest.raises(RobustBenchError, match="sigma"):
        NoiseSequenceSpec(frames=31, sigma=0.0)


# -- corruptions -----------------------------------------------------------------------------


def test_corruption_evaluation_reads_the_cache(checkpoints, test_split, tmp_path):
    spec = CorruptionSpec(names=("fog", "contrast"), severities=(1, 5))
    result = evaluate(checkpoints["gnplus"], test_split, spec, cache_dir=tmp_path)
    assert [(c.name, c.parameter) for c in result.conditions] == [
        ("fog", 1.0), ("fog", 5.0), ("contrast", 1.0), ("contrast", 5.0)
    ]  # fmt: skip
    table = corruption_error_table(result)
    assert table[("fog", 5)] == pytest.approx(1 - result.conditions[1].accuracy)
    mean_fog = np.mean([c.accuracy for c in result.conditions[:2]])
    assert result.metric("fog", None, "mean_accuracy") == pytest.approx(mean_fog)
    files = sorted(p.name for p in tmp_path.rglob("*.npy"))
    assert files == ["contrast-s1-seed0.npy", "contrast-s5-seed0.npy", "fog-s1-seed0.npy",
                     "fog-s5-seed0.npy"]  # fmt: skip


# -- attacks ---------------------------------------------------------------------------------

#: few steps: these tests check budgets and bookkeeping, not attack strength
FAST = {
    name: {"steps": 5}
    for name in ("pgd_linf", "pgd_l2", "apgd_ce", "apgd_t", "deepfool_linf", "deepfool_l2")
}
FAST |= {"fgsm": {}, "cw_l2": {"steps": 10, "cw_binary_search_steps": 2}}


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_attack_respects_its_budget_and_is_monotone(name, checkpoints, test_split):
    split = test_split.subset(48)
    spec = AttackSpec(name, **FAST[name])
    result = evaluate(checkpoints["bn"], split, spec)
    assert result.warnings == []  # budgets kept, ε = 0 is clean, raw results monotone
    robust = [result.metric(name, e, "robust_accuracy") for e in spec.epsilons]
    assert spec.epsilons[0] == 0.0 and robust[0] == result.clean_accuracy
    assert all(b <= a for a, b in itertools.pairwise(robust))
    assert all(r <= result.clean_accuracy for r in robust)
    for e in spec.epsilons:
        assert result.metric(name, e, "max_perturbation") <= e * (1 + 1e-4) + 1e-6
    if name in ("pgd_linf", "pgd_l2", "deepfool_l2"):
        assert robust[-1] < robust[0]  # the largest budget really hurts


def test_apgd_is_at_least_as_strong_as_pgd_on_the_same_images(checkpoints, test_split):
    """AutoAttack's components against the PGD they replace, at the same step budget: robust
    accuracy never higher at any ε, and APGD-T (targeted DLR, 9 target classes) the lowest."""
    split = test_split.subset(60)
    eps = (0.0, 1 / 255, 4 / 255)
    robust = {}
    for name in ("pgd_linf", "apgd_ce", "apgd_t"):
        result = evaluate(checkpoints["bn"], split, AttackSpec(name, epsilons=eps, steps=10))
        assert result.warnings == []
        robust[name] = [result.metric(name, e, "robust_accuracy") for e in eps]
    for k in range(len(eps)):
        assert robust["apgd_ce"][k] <= robust["pgd_linf"][k]
        assert robust["apgd_t"][k] <= robust["apgd_ce"][k]
    assert robust["apgd_t"][-1] < robust["apgd_t"][0]


def test_sanity_checks_report_planted_violations():
    spec = AttackSpec("fgsm", epsilons=(0.0, 0.1, 0.2))
    clean = np.array([True, True, False, True])
    raw = np.array(
        [[True, True, False, True], [False, True, False, False], [True, True, False, True]]
    )
    sizes = np.array([[0, 0, 0, 0], [0.1, 0.1, 0.1, 0.1], [0.2, 0.2, 0.25, 0.2]])
    warnings = sanity_warnings(spec, raw, sizes, clean)
    assert any("exceed ε=0.2" in w for w in warnings)
    assert any("rises from 0.2500 at ε=0.1 to 0.7500 at ε=0.2" in w for w in warnings)
    raw[0, 0] = False
    assert any("at ε=0" in w for w in sanity_warnings(spec, raw, sizes * 0, clean))


def test_attack_spec_errors():
    with pytest.raises(RobustBenchError, match="unknown attack 'pgd'"):
        AttackSpec("pgd")
    with pytest.raises(RobustBenchError, match="increasing"):
        AttackSpec("fgsm", epsilons=(0.1, 0.0))
    assert AttackSpec("pgd_l2").epsilons == (0.0, 0.1, 0.25, 0.5, 1.0)


# -- batch-size independence ----------------------------------------------------------------


@pytest.mark.parametrize("norm", sorted(NORMS))
def test_results_do_not_depend_on_the_evaluation_batch_size(norm, checkpoints, test_split):
    specs = [CleanSpec(), NoiseSpec(sigmas=(0.1,)), AttackSpec("pgd_linf", steps=3, chunk=40)]
    for spec in specs:
        one = evaluate(checkpoints[norm], test_split.subset(60), spec, batch_size=1)
        many = evaluate(checkpoints[norm], test_split.subset(60), spec, batch_size=60)
        assert np.array_equal(one.clean_predictions, many.clean_predictions)
        for a, b in zip(one.conditions, many.conditions, strict=True):
            assert np.array_equal(a.correct, b.correct) and np.array_equal(
                a.predictions, b.predictions
            )


def test_every_model_sees_the_same_perturbed_inputs(checkpoints, test_split):
    """Same inputs → a model compared with itself agrees on every example, and two models'
    noise results differ only through the models (their clean runs fix the order)."""
    a = evaluate(checkpoints["bn"], test_split, NoiseSpec(sigmas=(0.2,)))
    model, _ = load_trained(checkpoints["bn"])
    b = evaluate(model, test_split, NoiseSpec(sigmas=(0.2,)))
    assert np.array_equal(a.conditions[0].predictions, b.conditions[0].predictions)


def test_bad_batch_size_is_named(checkpoints, test_split):
    with pytest.raises(RobustBenchError, match="batch_size=0"):
        evaluate(checkpoints["bn"], test_split, CleanSpec(), batch_size=0)
