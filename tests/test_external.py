"""Your own model: a torchvision ResNet-18 trained elsewhere (here: untrained) goes through a
suite's evaluations and onto its leaderboard next to the trained layers."""

from __future__ import annotations

import json

import pytest
import torch
import torchvision

from robustbench_norm import InputAdapter, benchmark
from robustbench_norm.cli import main
from robustbench_norm.errors import RobustBenchError
from robustbench_norm.reporting.report import publish
from robustbench_norm.suites.execute import RunSettings, run_suite
from robustbench_norm.suites.store import Store
from robustbench_norm.suites.suite import load_suite

SUITE = """
name = "ext"
width = 4
batch_sizes = [64]
seeds = [0]
test_limit = 60
[[norms]]
name = "bn"
[[norms]]
name = "gnplus"
options = { groups = 2 }
[train]
steps = 3
[evaluate.noise]
sigmas = [0.1]
[[evaluate.attacks]]
name = "fgsm"
epsilons = [0, "2/255"]
limit = 30
"""


def resnet18() -> torch.nn.Module:
    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=10)


def test_a_torchvision_model_is_evaluated_on_a_suite_and_lands_on_its_leaderboard(tmp_path):
    suite_path = tmp_path / "ext.toml"
    suite_path.write_text(SUITE)
    store = tmp_path / "s.sqlite"
    settings = RunSettings(workdir=str(tmp_path / "w"), quiet=True, threads=1)
    with Store.open(store) as s:
        trained = run_suite(load_suite(suite_path), s, settings).run_id

    model = InputAdapter(resnet18(), channels=3, mean=0.5, std=0.25)  # grayscale → RGB
    result = benchmark(model, suite_path, name="resnet18-tv", store=store, settings=settings)
    assert result.label == "resnet18-tv (external)" and not result.reused
    assert 0.0 <= result.clean_accuracy <= 1.0
    families = {r["family"] for r in result.rows}
    assert {"clean", "noise", "attack"} <= families and result.warnings == []

    with Store.open(store, read_only=True) as s:
        run = s.run(result.run_id)
        assert run["provenance"]["based_on_run"] == trained
        identity = run["provenance"]["external_model"]
        assert identity["name"] == "resnet18-tv" and identity["architecture"] == "ResNet"
        assert identity["class"] == "torchvision.models.resnet.ResNet"  # the wrapped model's
        assert identity["wrapper"] == "InputAdapter"
        ext = next(j for j in s.jobs_of_run(result.run_id) if j["norm"].endswith("(external)"))
        # its own architecture label; no batch size or seed it never had (0: none)
        assert (ext["model"], ext["batch_size"], ext["seed"]) == ("ResNet", 0, 0)
        publish(s, result.run_id, tmp_path / "lb")
    board = json.loads((tmp_path / "lb" / "results.json").read_text())
    clean = next(t for t in board["leaderboards"] if t["id"] == "clean")
    rows = {r["norm"]: r for r in clean["rows"]}
    assert set(rows) == {"bn", "gnplus", "resnet18-tv (external)"}
    assert clean["columns"] == ["resnet20 · bs 64", "ResNet · external"]  # its own column
    stability = next(t for t in board["leaderboards"] if t["id"] == "stability")
    assert {r["norm"] for r in stability["rows"]} == {"bn", "gnplus"}  # nothing trained it
    for page in ("README.md", "index.html"):  # the weights' identity, as fingerprints for layers
        assert identity["weights_sha256"] in (tmp_path / "lb" / page).read_text(), page

    again = benchmark(model, suite_path, name="resnet18-tv", store=store, settings=settings)
    assert again.reused and again.rows == result.rows  # same weights: the stored result
    assert again.run_id == result.run_id  # already on the board: no new run

    # the model stays on the suite's board: a new run of the suite carries it
    with Store.open(store) as s:
        rerun = run_suite(load_suite(suite_path), s, settings)
        assert rerun.reused == 2 and rerun.executed == 0
        norms = {j["norm"] for j in s.jobs_of_run(rerun.run_id)}
        assert "resnet18-tv (external)" in norms
    assert main(["detach", "resnet18-tv", "--suite", "ext", "--store", str(store)]) == 0
    with Store.open(store) as s:
        latest = s.resolve_run("latest", "ext")
        assert {j["norm"] for j in s.jobs_of_run(latest)} == {"bn", "gnplus"}
        gone = run_suite(load_suite(suite_path), s, settings)  # and stays off
        assert {j["norm"] for j in s.jobs_of_run(gone.run_id)} == {"bn", "gnplus"}
    assert main(["detach", "resnet18-tv", "--suite", "ext", "--store", str(store)]) == 2


def test_a_model_outside_the_input_contract_gets_the_fix(tmp_path):
    suite_path = tmp_path / "ext.toml"
    suite_path.write_text(SUITE)
    with pytest.raises(RobustBenchError, match="InputAdapter"):
        benchmark(resnet18(), suite_path, name="raw", store=tmp_path / "s.sqlite")
    wrong_classes = InputAdapter(torchvision.models.resnet18(num_classes=7), channels=3)
    with pytest.raises(RobustBenchError, match=r"\(2, 10\) logits"):
        benchmark(wrong_classes, suite_path, name="seven", store=tmp_path / "s.sqlite")


def test_the_input_adapter_repeats_gray_and_normalizes_inside():
    seen = {}

    class Probe(torch.nn.Module):
        def forward(self, x):
            seen["x"] = x
            return x.mean((2, 3))

    adapter = InputAdapter(Probe(), channels=3, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    x = torch.rand(2, 1, 4, 4)
    adapter(x)
    torch.testing.assert_close(seen["x"], ((x - 0.5) / 0.25).expand(-1, 3, -1, -1))
