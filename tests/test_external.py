"""Your own model: a torchvision ResNet-18 trained elsewhere (here: untrained) goes through a
suite's evaluations and onto its leaderboard next to the trained layers."""

from __future__ import annotations

import json

import pytest
import torch
import torchvision

from robustbench_norm import InputAdapter, benchmark
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
        assert run["provenance"]["external_model"]["name"] == "resnet18-tv"
        norms = sorted(j["norm"] for j in s.jobs_of_run(result.run_id))
        assert norms == ["bn", "gnplus", "resnet18-tv (external)"]  # beside the trained ones
        publish(s, result.run_id, tmp_path / "lb")
    board = json.loads((tmp_path / "lb" / "results.json").read_text())
    clean = next(t for t in board["leaderboards"] if t["id"] == "clean")
    rows = {r["norm"]: r for r in clean["rows"]}
    assert set(rows) == {"bn", "gnplus", "resnet18-tv (external)"}
    assert len(clean["columns"]) == 1  # the same column as the trained models
    stability = next(t for t in board["leaderboards"] if t["id"] == "stability")
    assert {r["norm"] for r in stability["rows"]} == {"bn", "gnplus"}  # nothing trained it
    assert "resnet18-tv (external)" in (tmp_path / "lb" / "README.md").read_text()

    again = benchmark(model, suite_path, name="resnet18-tv", store=store, settings=settings)
    assert again.reused and again.rows == result.rows  # same weights: the stored result


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
