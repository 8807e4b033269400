"""Test-time statistics: each layer against float64 formulas normalizing with the batch's own
moments, running averages untouched, and the prior's two limits."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import norm_reference as ref
import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from robustbench_norm.cli import main
from robustbench_norm.data import load_split, to_float_nchw
from robustbench_norm.errors import RobustBenchError
from robustbench_norm.evaluation import (
    BatchStatistics,
    BatchStatisticsPlan,
    CleanSpec,
    NoiseSpec,
    evaluate,
)
from robustbench_norm.norms import BatchGroupNorm, BatchNorm, ContinualNorm, GNPlus
from robustbench_norm.norms.adaptation import running_statistics_layers, using_batch_statistics
from robustbench_norm.perturb.attacks import AttackSpec
from robustbench_norm.perturb.noise import gaussian_noise_images
from robustbench_norm.reporting.report import build_report, write_report
from robustbench_norm.suites.store import JobOutcome, Store
from robustbench_norm.suites.suite import load_suite
from robustbench_norm.training import TrainSpec, load_trained, train
from robustbench_norm.training.models import build_model

SUITES = Path(__file__).resolve().parents[1] / "suites"

C, GROUPS = 8, 2


def _trained_buffers(layer: nn.Module, seed: int = 0) -> nn.Module:
    """A float64 layer whose running averages, affine and λ are far from their initial values
    (so that running and batch statistics differ), left in eval mode."""
    g = torch.Generator().manual_seed(seed)
    layer = layer.double()
    with torch.no_grad():
        layer.running_mean.copy_(
            torch.randn(layer.running_mean.shape, generator=g, dtype=torch.float64)
        )
        layer.running_var.copy_(
            torch.rand(layer.running_var.shape, generator=g, dtype=torch.float64) + 0.5
        )
        layer.weight.copy_(torch.rand(C, generator=g, dtype=torch.float64) + 0.5)
        layer.bias.copy_(torch.randn(C, generator=g, dtype=torch.float64))
    return layer.eval()  # fmt: skip


def _input(n: int = 6, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, C, 5, 5, generator=g, dtype=torch.float64) * 2 + 0.7


def _batch_reference(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The layer's formula (norm_reference) with the batch's own mean and biased variance."""
    stats = ref.RunningStats(layer.running_mean.numel())  # fed, but its values unused
    gamma, beta = layer.weight.detach(), layer.bias.detach()
    if isinstance(layer, GNPlus):
        lam = torch.sigmoid(layer.lambda_logit.detach())
        out = ref.gnplus(x, variant=layer.variant, lam=lam, gamma=gamma, beta=beta,
                         groups=GROUPS, training=True, running=stats)  # fmt: skip
        return out
    if isinstance(layer, BatchGroupNorm):
        return ref.affine(ref.bgn(x, GROUPS, True, stats), gamma, beta)
    if isinstance(layer, ContinualNorm):
        return ref.affine(ref.cn(x, GROUPS, True, stats), gamma, beta)
    return ref.affine(ref.bn(x, *ref.batch_stats(x)), gamma, beta)


LAYERS = {
    "bn": lambda: BatchNorm(C),
    "torch-bn": lambda: nn.BatchNorm2d(C),
    "gnplus-parallel": lambda: GNPlus(C, GROUPS, "parallel", lambda_init=0.3),
    "gnplus-gn_first": lambda: GNPlus(C, GROUPS, "gn_first", lambda_init=0.3),
    "gnplus-bn_first": lambda: GNPlus(C, GROUPS, "bn_first", lambda_init=0.3),
    "gnplus-autograd": lambda: GNPlus(C, GROUPS, "parallel", lambda_init=0.3, impl="autograd"),
    "bgn": lambda: BatchGroupNorm(C, GROUPS),
    "cn": lambda: ContinualNorm(C, GROUPS),
}


@pytest.mark.parametrize("name", LAYERS)
def test_test_batch_statistics_normalize_with_the_batchs_own_moments(name):
    layer = _trained_buffers(LAYERS[name]())
    x = _input()
    before = {k: v.clone() for k, v in layer.state_dict().items()}
    with torch.no_grad():
        running = layer(x)
        with using_batch_statistics(layer) as switched:
            adapted = layer(x)
        after = layer(x)
    assert switched == 1
    torch.testing.assert_close(adapted, _batch_reference(layer, x), rtol=1e-10, atol=1e-10)
    assert not torch.allclose(adapted, running)  # the two settings differ for these buffers
    assert torch.equal(after, running)  # `running` results are unchanged afterwards
    for k, v in layer.state_dict().items():  # running averages (and counters) never change
        assert torch.equal(v, before[k]), k


@pytest.mark.parametrize("name", ["bn", "gnplus-parallel", "gnplus-gn_first", "bgn"])
def test_prior_zero_is_test_batch_and_infinite_prior_is_running(name):
    layer = _trained_buffers(LAYERS[name]())
    x = _input()
    with torch.no_grad():
        running = layer(x)
        with using_batch_statistics(layer, prior=0.0):
            batch = layer(x)
        with using_batch_statistics(layer, prior=math.inf):
            assert torch.equal(layer(x), running)
        with using_batch_statistics(layer, prior=1e12):
            torch.testing.assert_close(layer(x), running, rtol=1e-8, atol=1e-8)
        with using_batch_statistics(layer, prior=16.0):
            mixed = layer(x)
    torch.testing.assert_close(batch, _batch_reference(layer, x), rtol=1e-10, atol=1e-10)
    assert not torch.allclose(mixed, batch) and not torch.allclose(mixed, running)


def test_the_prior_mixes_moments_as_schneider_et_al():
    """N = 18 against a batch of n = 6: moments 3/4 running, 1/4 batch, then BN's formula."""
    layer = _trained_buffers(BatchNorm(C))
    x = _input(n=6)
    mu_b, var_b = ref.batch_stats(x)
    mu = 0.75 * layer.running_mean + 0.25 * mu_b
    var = 0.75 * layer.running_var + 0.25 * var_b
    expected = ref.affine(ref.bn(x, mu, var), layer.weight.detach(), layer.bias.detach())
    with torch.no_grad(), using_batch_statistics(layer, prior=18):
        torch.testing.assert_close(layer(x), expected, rtol=1e-10, atol=1e-10)


def test_a_network_switches_every_running_statistics_layer_and_only_those():
    model = build_model("resnet20", "gnplus", 10, 1, 4, groups=2).double().eval()
    gn = build_model("resnet20", "gn", 10, 1, 4, groups=2)
    assert len(running_statistics_layers(model)) == 19  # stem + 18 in the 9 blocks
    assert running_statistics_layers(gn) == []
    x = torch.rand(4, 1, 28, 28, dtype=torch.float64)
    reference = copy.deepcopy(model).train()  # training mode normalizes with batch moments
    with torch.no_grad(), using_batch_statistics(model) as switched:
        torch.testing.assert_close(model(x), reference(x), rtol=1e-9, atol=1e-9)
    assert switched == 19


def test_a_layer_that_raises_gets_its_running_averages_back():
    layer = _trained_buffers(BatchNorm(C))
    kept = layer.running_mean
    with pytest.raises(RobustBenchError), using_batch_statistics(layer):
        layer(torch.zeros(2, C + 1, 3, 3, dtype=torch.float64))  # wrong channels: raises
    assert layer.running_mean is kept


def test_settings_name_their_batch_and_prior_and_refuse_bad_values():
    assert BatchStatistics(500).label == "test-batch 500"
    assert BatchStatistics(64, 16).label == "prior 16 · batch 64"
    plan = BatchStatisticsPlan(batch=500, priors=(16.0,), sweep=(1, 8))
    assert [(s.label, full) for s, full in plan.settings()] == [
        ("test-batch 500", True), ("prior 16 · batch 500", True),
        ("test-batch 1", False), ("prior 16 · batch 1", False),
        ("test-batch 8", False), ("prior 16 · batch 8", False),
    ]  # fmt: skip
    for bad in (0, -3, True, 2.5):
        with pytest.raises(RobustBenchError, match="positive integer"):
            BatchStatistics(bad)
    with pytest.raises(RobustBenchError, match="≥ 0"):
        BatchStatistics(8, -1.0)


@pytest.fixture(scope="module")
def bn_model():
    torch.manual_seed(0)
    model = build_model("resnet20", "bn", 10, 1, 4)
    split = load_split("fashion-mnist-mini", "train").subset(256)
    images, _ = split.tensors()
    model.train()
    with torch.no_grad():  # running averages of the clean data: they do not match noisy inputs
        for i in range(0, 256, 64):
            model(images[i : i + 64])
    return model.eval()


def test_an_evaluation_under_test_batch_statistics_is_batched_as_its_setting_says(bn_model):
    split = load_split("fashion-mnist-mini", "test").subset(50)
    images, _ = split.tensors()
    setting = BatchStatistics(20)
    result = evaluate(bn_model, split, CleanSpec(), statistics=setting, batch_size=7)
    expected = []
    reference = copy.deepcopy(bn_model).train()
    with torch.no_grad():
        for i in range(0, 50, 20):  # chunks of 20, 20, 10 in the split's order
            expected.append(reference(images[i : i + 20]).argmax(1))
    assert torch.equal(torch.from_numpy(result.clean_predictions), torch.cat(expected))
    running = evaluate(bn_model, split, CleanSpec())
    assert not (running.clean_predictions == result.clean_predictions).all()
    # evaluation batch size is otherwise irrelevant: running statistics at batch 7 and 500 agree
    again = evaluate(bn_model, split, CleanSpec(), batch_size=7)
    assert (again.clean_predictions == running.clean_predictions).all()


def test_noise_under_test_batch_statistics_normalizes_each_sigmas_batches_alone(bn_model):
    """Every batch holds one noise level: its statistics are those of the noisy images."""
    split = load_split("fashion-mnist-mini", "test").subset(60)
    before = {k: v.clone() for k, v in bn_model.state_dict().items()}
    result = evaluate(bn_model, split, NoiseSpec(sigmas=(0.0, 0.3)), statistics=BatchStatistics(30))
    assert result.metric("gaussian_noise", 0.0, "accuracy") == result.clean_accuracy
    noisy = to_float_nchw(gaussian_noise_images(split, 0.3, seed=0))
    reference = copy.deepcopy(bn_model).train()
    with torch.no_grad():
        expected = torch.cat([reference(noisy[i : i + 30]).argmax(1) for i in (0, 30)])
    assert torch.equal(torch.from_numpy(result.conditions[1].predictions), expected)
    for k, v in bn_model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_attacks_and_models_without_running_statistics_are_refused(bn_model):
    split = load_split("fashion-mnist-mini", "test").subset(10)
    with pytest.raises(RobustBenchError, match="running statistics only"):
        evaluate(bn_model, split, AttackSpec("fgsm"), statistics=BatchStatistics(10))
    gn = build_model("resnet20", "gn", 10, 1, 4, groups=2)
    with pytest.raises(RobustBenchError, match="no layer with running statistics"):
        evaluate(gn, split, CleanSpec(), statistics=BatchStatistics(10))


# -- suites and leaderboards -----------------------------------------------------------------


def test_suites_evaluate_unregularized_models_under_the_planned_statistics(tmp_path):
    suite = load_suite(SUITES / "standard.toml")
    plan = suite.test_statistics
    assert plan == BatchStatisticsPlan(batch=500, priors=(16.0,), sweep=(1, 8, 64))
    for job in suite.jobs:
        assert job.test_statistics == (plan if job.regularizer == "none" else None)
    assert load_suite(SUITES / "smoke.toml").jobs[0].test_statistics.batch == 250
    from robustbench_norm.suites.plan import describe_plan

    text = describe_plan(suite)  # plan says what the adapted evaluations add
    assert "test-batch 500, prior 16 · batch 500 on every family but attacks" in text
    assert "test-batch 1, prior 16 · batch 1" in text
    bad = (SUITES / "smoke.toml").read_text().replace("sweep = [1, 8, 64]", "sweep = [1, 0]")
    (tmp_path / "bad.toml").write_text(bad)
    with pytest.raises(RobustBenchError, match=r"evaluate\.test_statistics: .*batch=0"):
        load_suite(tmp_path / "bad.toml")
    bad = bad.replace("sweep = [1, 0]", "sweeps = [1]")
    (tmp_path / "bad.toml").write_text(bad)
    with pytest.raises(RobustBenchError, match=r"evaluate\.test_statistics\.sweeps: unknown key"):
        load_suite(tmp_path / "bad.toml")


SUITE_TOML = """
name = "adapt"
reference = "bn"
[evaluate.test_statistics]
batch = 500
sweep = [8]
"""


def _store_with_adapted_rows(path):
    """BN loses much of its accuracy to noise with running statistics and little with
    test-batch statistics; GN loses a moderate share. 4 seeds per layer."""
    rng = np.random.default_rng(0)
    drops = {("bn", "running"): 0.5, ("bn", "test-batch 500"): 0.05, ("bn", "test-batch 8"): 0.2,
             ("gn", "running"): 0.25}  # fmt: skip
    with Store.open(path) as store:
        run = store.start_run("adapt", "h", SUITE_TOML, {})
        for norm in ("bn", "gn"):
            for seed in range(4):
                labels = dict(model="resnet20", norm=norm, batch_size=64, seed=seed,
                              regularizer="none")  # fmt: skip
                job = store.add_job(run, f"{norm}{seed}", {}, labels, "running")
                rows = []
                for (layer, statistics), drop in drops.items():
                    if layer != norm:
                        continue
                    clean = 0.9 + rng.normal(0, 0.005)
                    noisy = clean * (1 - drop + rng.normal(0, 0.01))
                    row = {"statistics": statistics, "parameter": None}
                    rows += [
                        {**row, "family": "clean", "name": "clean", "metric": "accuracy",
                         "value": clean},
                        {**row, "family": "noise", "name": "gaussian_noise",
                         "metric": "mean_accuracy", "value": noisy},
                        {**row, "family": "noise", "name": "gaussian_noise", "parameter": 0.1,
                         "metric": "accuracy", "value": noisy},
                    ]  # fmt: skip
                    if statistics != "test-batch 8":
                        rows.append({**row, "family": "corruption", "name": "all",
                                     "metric": "mean_corruption_accuracy", "value": noisy})  # fmt: skip
                store.record(job, JobOutcome(job, "done", None, None, 1.0, {}, [], rows, []))
        store.finish_run(run)
    return run


def test_the_leaderboard_shows_adapted_rows_the_sweep_and_the_claim_both_ways(tmp_path):
    run = _store_with_adapted_rows(tmp_path / "s.sqlite")
    with Store.open(tmp_path / "s.sqlite", read_only=True) as store:
        report = build_report(store, run)
        files = write_report(store, run, tmp_path / "board")
    tables = {t.id: t for t in report.tables}
    # the main batch's setting is a row under its layer; the sweep's batch 8 is not a row
    assert list(tables["clean"].rows) == ["bn", "bn · test-batch 500", "gn"]
    assert list(tables["noise"].rows) == ["bn", "bn · test-batch 500", "gn"]
    assert list(tables["stability"].rows) == ["bn", "gn"]  # adapted rows have no training
    sweep = tables["adaptation-batch"]
    assert list(sweep.rows) == ["bn · test-batch"]
    assert sweep.columns == ["running", "batch 8", "batch 500"]
    (column,) = tables["noise-sigma"].columns  # σ = 0.1, the only σ > 0 here
    assert sweep.rows["bn · test-batch"]["running"].mean == pytest.approx(
        tables["noise-sigma"].rows["bn"][column].mean
    )
    assert sweep.rows["bn · test-batch"]["batch 8"].mean == pytest.approx(
        np.mean([r["value"] for r in store_rows(tmp_path, "test-batch 8", "accuracy")])
    )
    decided, beside = [
        c for c in report.claims if c.claim.startswith("GN is more sensitive to noise")
    ]
    assert decided.verdict == "not supported"  # GN loses less than BN with running averages
    assert beside.verdict == "supported"  # ... and more than BN with test-batch statistics
    assert "test-batch 500 statistics" in beside.claim
    assert "With test-batch 500 statistics for BN: **supported**" in decided.evidence
    assert "the verdict depends on which statistics BN normalizes with" in decided.evidence
    assert tmp_path / "board" / "adaptation.png" in files
    csv = pd.read_csv(tmp_path / "board" / "results.csv")
    assert set(csv.statistics) == {"running", "test-batch 500", "test-batch 8"}


def store_rows(tmp_path, statistics, metric):
    with Store.open(tmp_path / "s.sqlite", read_only=True) as store:
        return [r for r in store.results_of_run(1, statistics) if r["metric"] == metric
                and r["family"] == "noise"]  # fmt: skip


def test_eval_takes_test_batch_statistics_from_the_command_line(tmp_path, capsys):
    spec = TrainSpec(model="resnet20", width=4, norm="bn", steps=3, batch_size=32)
    checkpoint = str(train(spec, tmp_path, quiet=True).checkpoint)
    assert main(["eval", checkpoint, "--noise", "0.1", "--limit", "40", "--test-batch", "20"]) == 0
    out = capsys.readouterr().out
    assert "test-batch 20 statistics" in out
    model, _ = load_trained(checkpoint)
    split = load_split("fashion-mnist-mini", "test").subset(40)
    expected = evaluate(model, split, NoiseSpec(sigmas=(0.1,)), statistics=BatchStatistics(20))
    assert f"{expected.metric('gaussian_noise', 0.1, 'accuracy'):.4f}" in out
    assert main(["eval", checkpoint, "--prior", "16"]) == 2
    assert "--prior needs --test-batch" in capsys.readouterr().err
    assert main(["eval", checkpoint, "--test-batch", "8", "--attack", "fgsm"]) == 2
    assert "running statistics only" in capsys.readouterr().err


def test_the_standard_suite_measures_clean_and_noise_on_every_test_image():
    """Issue 19: a 2,000-image subset's sampling error (≈ 0.009) exceeded BN's seed interval;
    clean accuracy and Gaussian noise now use all 10,000 test images."""
    suite = load_suite(SUITES / "standard.toml")
    assert suite.test_limit is None
    noise = next(e for e in suite.evaluations if isinstance(e.spec, NoiseSpec))
    assert noise.limit is None
    assert all(e.limit for e in suite.evaluations if not isinstance(e.spec, NoiseSpec))


def test_every_page_says_what_an_interval_covers():
    for board in ("standard", "smoke"):
        text = (SUITES.parent / "leaderboards" / board / "README.md").read_text()
        assert (
            "An interval covers the spread between training runs on one fixed set of test " in text
        )
        assert "leaves out the test-sampling error" in text


def test_a_below_chance_model_is_flagged_and_severity_ticks_are_the_severities(
    tmp_path, monkeypatch
):
    from robustbench_norm.reporting import plots
    from robustbench_norm.reporting.report import _warnings

    run = _store_with_adapted_rows(tmp_path / "s.sqlite")
    with Store.open(tmp_path / "s.sqlite") as store:  # GN's runs fall to 0.08: below chance
        store.conn.execute(
            "UPDATE results SET value = 0.08 WHERE family = 'clean' AND job_id IN "
            "(SELECT id FROM jobs WHERE norm = 'gn')"
        )
        report = build_report(store, run)
    assert any("gn (resnet20 · bs 64): clean accuracy 0.080 is at or below chance" in w
               for w in _warnings(report))  # fmt: skip
    assert not any(w.startswith("bn ") and "chance" in w for w in _warnings(report))
    figures = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: figures.append(fig) or path)
    frame = pd.DataFrame(
        [{"family": "corruption", "metric": "accuracy", "name": "fog", "parameter": float(s),
          "norm": "bn", "value": 0.5 + 0.01 * k, "seed": k} for s in (1, 3) for k in range(2)]
    )  # fmt: skip
    plots.accuracy_vs_parameter(frame, "corruption", "accuracy", "severity", "t", tmp_path / "x")
    assert list(figures[0].axes[0].get_xticks()) == [1.0, 3.0]


def test_the_leaderboard_sets_verdicts_beside_an_earlier_budgets(tmp_path):
    """[earlier] names an earlier publication: each claim's verdict there and here, and which
    changed. Here BN's running-statistics noise drop shrinks from 0.5 to 0.1, so "GN is more
    sensitive to noise" turns from not supported to supported."""
    import shutil
    import sqlite3

    early = tmp_path / "early.sqlite"
    _store_with_adapted_rows(early)
    now = tmp_path / "now.sqlite"
    shutil.copy(early, now)
    conn = sqlite3.connect(now)
    conn.execute(  # BN (running statistics) now keeps 90 % of its accuracy under noise
        "UPDATE results SET value = 0.81 WHERE statistics = 'running' AND family IN "
        "('noise', 'corruption') AND job_id IN (SELECT id FROM jobs WHERE norm = 'bn')"
    )
    toml = SUITE_TOML + f'[earlier]\nstore = "{early}:latest"\nlabel = "the early budget"\n'
    conn.execute("UPDATE runs SET suite_toml = ?", (toml,))
    conn.commit()
    conn.close()
    with Store.open(now, read_only=True) as store:
        report = build_report(store, 1)
        write_report(store, 1, tmp_path / "board")
    (budget,) = report.budgets
    rows = {r.claim: r for r in budget.rows}
    noise = rows["GN is more sensitive to noise and corruptions than BN"]
    assert (noise.earlier.verdict, noise.now.verdict, noise.changed) == (
        "not supported",
        "supported",
        True,
    )
    assert rows["GN+ beats GN at every batch size"].changed is False
    assert budget.sentence() == (
        "1 of 7 verdicts changed from the early budget: GN is more sensitive to noise and "
        "corruptions than BN."
    )
    budget.rows[0].earlier = None  # a claim the earlier run did not make: not counted
    assert budget.sentence() == (
        "1 of 6 verdicts changed from the early budget: GN is more sensitive to noise and "
        "corruptions than BN. New here, not decided at the early budget: GN+ beats GN at every "
        "batch size."
    )
    readme = (tmp_path / "board" / "README.md").read_text()
    assert "### Verdicts against budget" in readme and "| **changed** |" in readme
    assert 'id="table-budget"' in (tmp_path / "board" / "index.html").read_text()
    board = json.loads((tmp_path / "board" / "results.json").read_text())
    assert board["budget_comparisons"][0]["rows"][0]["claim"] == "GN+ beats GN at every batch size"

    # [[earlier]]: a ladder of budgets. The middle one already shows what this run shows, so the
    # noise claim changed from the early budget only, and the table says from which.
    middle = tmp_path / "middle.sqlite"
    shutil.copy(now, middle)
    toml = SUITE_TOML + "".join(
        f'[[earlier]]\nstore = "{path}:latest"\nlabel = "{label}"\n'
        for path, label in ((early, "the early budget"), (middle, "the middle budget"))
    )
    with sqlite3.connect(now) as conn:
        conn.execute("UPDATE runs SET suite_toml = ?", (toml,))
    conn.close()
    with Store.open(now, read_only=True) as store:
        report = build_report(store, 1)
        write_report(store, 1, tmp_path / "ladder")
    assert [b.label for b in report.budgets] == ["the early budget", "the middle budget"]
    assert [b.sentence().split(":")[0] for b in report.budgets] == [
        "1 of 7 verdicts changed from the early budget",
        "Every verdict is the same as at the middle budget.",
    ]
    readme = (tmp_path / "ladder" / "README.md").read_text()
    assert "| claim | the early budget | the middle budget | this run | changed |" in readme
    noise_row = next(
        line for line in readme.split("### Verdicts against budget")[1].splitlines()
        if line.startswith("| GN is more sensitive to noise and corruptions than BN |")
    )  # fmt: skip
    assert noise_row.endswith("| **changed** from the early budget |")
    assert noise_row.count("**not supported**") == 1 and noise_row.count("**supported**") == 2
    page = (tmp_path / "ladder" / "index.html").read_text()
    assert "<th>the middle budget</th>" in page and "changed from the early budget" in page
    board = json.loads((tmp_path / "ladder" / "results.json").read_text())
    assert [b["label"] for b in board["budget_comparisons"]] == [
        "the early budget",
        "the middle budget",
    ]

    bad = SUITES / "smoke.toml"
    text = bad.read_text() + '\n[earlier]\nstore = "x.sqlite:latest"\nlable = "typo"\n'
    (tmp_path / "bad.toml").write_text(text)
    with pytest.raises(RobustBenchError, match=r"earlier\.lable: unknown key"):
        load_suite(tmp_path / "bad.toml")
    text = (
        bad.read_text()
        + '\n[[earlier]]\nstore = "a.sqlite:1"\nlabel = "a"\n[[earlier]]\nstore = "b"\n'
    )
    (tmp_path / "bad.toml").write_text(text)
    with pytest.raises(RobustBenchError, match=r"earlier\[1\]\.label: is required"):
        load_suite(tmp_path / "bad.toml")
