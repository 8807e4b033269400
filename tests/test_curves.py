"""Learning curves: the ladder a suite becomes, the plateau rule by hand, the page from a real
run on the embedded data, and the guards around a run that spans sittings."""

from __future__ import annotations

import csv
import json

import pandas as pd
import pytest

from robustbench_norm.cli import main
from robustbench_norm.errors import RobustBenchError
from robustbench_norm.reporting.curves import _shortfall_markdown, decide_plateau, shortfall
from robustbench_norm.suites.curves import Ladder, curve_suite
from robustbench_norm.suites.execute import RunSettings, run_suite
from robustbench_norm.suites.store import Store
from robustbench_norm.suites.suite import load_suite

SUITE = """
name = "tiny"
width = 4
batch_sizes = [32, 64]
seeds = [0]
test_limit = 50
[[norms]]
name = "bn"
[[norms]]
name = "gnplus"
options = { groups = 2 }
[train]
steps = 6
[regularization]
dropout = [0.0, 0.3]
[stability]
every = 2
[evaluate.noise]
sigmas = [0.1]
"""


def _frame(means: dict[tuple[str, int], float]) -> pd.DataFrame:
    """Two seeds per (norm, budget), ±0.002 around the given mean."""
    rows = []
    for (norm, images), mean in means.items():
        for seed, delta in ((0, -0.002), (1, 0.002)):
            rows.append(dict(model="m", norm=norm, batch_size=64, seed=seed, images=images,
                             status="done", value=mean + delta, wall_seconds=1.0))  # fmt: skip
    return pd.DataFrame(rows)


def test_the_plateau_is_the_first_budget_whose_doubling_moves_no_layer_by_more_than_001():
    means = {
        ("a", 1000): 0.70, ("a", 2000): 0.80, ("a", 4000): 0.808, ("a", 8000): 0.81,
        ("b", 1000): 0.60, ("b", 2000): 0.75, ("b", 4000): 0.746, ("b", 8000): 0.75,
    }  # fmt: skip
    plateau = decide_plateau(_frame(means))
    assert plateau.budget == 2000 and plateau.pair == (2000, 4000)
    assert plateau.gains[("m", "a", 64)] == pytest.approx(0.008)
    assert plateau.gains[("m", "b", 64)] == pytest.approx(-0.004)  # within 0.01 either way
    assert "Plateau budget: 2,000" in plateau.sentence(1000)


def test_without_a_plateau_the_largest_complete_doubling_is_reported():
    means = {
        ("a", 1000): 0.70, ("a", 2000): 0.80, ("a", 4000): 0.85, ("a", 8000): 0.90,
        ("b", 1000): 0.60, ("b", 2000): 0.70, ("b", 4000): 0.75,  # no 8000 yet
    }  # fmt: skip
    plateau = decide_plateau(_frame(means))
    assert plateau.budget is None and plateau.pair == (2000, 4000)  # 4000 → 8000 is incomplete
    assert plateau.gains[("m", "a", 64)] == pytest.approx(0.05)
    assert "No plateau within the ladder" in plateau.sentence(1000)
    assert decide_plateau(_frame({("a", 1000): 0.7, ("a", 3000): 0.8})).pair is None
    cut = _frame(means)
    cut = cut[~((cut.norm == "b") & (cut.images == 4000) & (cut.seed == 1))]
    assert decide_plateau(cut).pair == (1000, 2000)  # 4000 has one seed of b: not a whole rung


def test_what_is_left_to_the_plateau_is_extrapolated_from_the_last_two_doublings():
    means = {
        ("a", 1000): 0.70, ("a", 2000): 0.80, ("a", 4000): 0.85, ("a", 8000): 0.875,
        ("b", 1000): 0.60, ("b", 2000): 0.62, ("b", 4000): 0.66, ("b", 8000): 0.70,
    }  # fmt: skip
    plateau = decide_plateau(_frame(means))
    assert plateau.budget is None and plateau.pair == (4000, 8000)
    # a: gains 0.05 then 0.025, r = 0.5: 0.025 · 0.5 / (1 − 0.5) = 0.025 still to gain
    assert plateau.remaining[("m", "a", 64)] == (8000, pytest.approx(0.025))
    # b: the gains grow (0.04, 0.04 after 0.02): no geometric estimate
    assert plateau.remaining[("m", "b", 64)] == (8000, None)
    assert "still 0.025–0.025 below its plateau" in plateau.sentence(1000)


def test_each_budget_is_measured_against_the_largest_whole_rung():
    means = {
        ("a", 1000): 0.70, ("a", 2000): 0.80, ("a", 4000): 0.85, ("a", 8000): 0.875,
        ("b", 1000): 0.60, ("b", 2000): 0.62, ("b", 4000): 0.66, ("b", 8000): 0.70,
    }  # fmt: skip
    frame = _frame(means)
    # 8000 lacks seed 1 of b: not a whole rung, so 4000 is the largest measured for every layer
    frame = frame[~((frame.norm == "b") & (frame.images == 8000) & (frame.seed == 1))]
    top, below = shortfall(frame)
    assert top == 4000
    assert {b: g.value for b, g in below[("m", "a", 64)].items()} == pytest.approx(
        {1000: 0.15, 2000: 0.05}
    )
    assert {b: g.value for b, g in below[("m", "b", 64)].items()} == pytest.approx(
        {1000: 0.06, 2000: 0.04}
    )
    # seeds at mean ∓ 0.002: s² = 2 · 0.002² / (2 − 1) = 8e-6 at each budget, s²/n = 4e-6,
    # so the difference of two such means has SE √(4e-6 + 4e-6) = 0.002√2
    assert below[("m", "a", 64)][1000].se == pytest.approx(0.002 * 2**0.5)
    table = "\n".join(_shortfall_markdown(frame, 1000))
    assert "| m · a · bs 64 | +0.150 ± 0.003 | +0.050 ± 0.003 |" in table
    top, below = shortfall(_frame(means))
    assert top == 8000 and below[("m", "b", 64)][4000].value == pytest.approx(0.04)
    # one seed per rung: its spread is unknown, so no error is claimed
    one_seed = _frame(means)
    assert shortfall(one_seed[one_seed.seed == 0])[1][("m", "a", 64)][1000].se is None
    assert shortfall(_frame({("a", 1000): 0.7})) == (None, {})


def test_a_ladder_trains_each_unregularized_setting_at_every_budget(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(SUITE)
    suite = load_suite(path)
    ladder = curve_suite(suite, Ladder((512, 256), (100, 101), ("bn", "gnplus"), (64,)))
    assert ladder.name == "tiny-curves" and ladder.evaluations == () and ladder.test_limit is None
    assert len(ladder.jobs) == 2 * 2 * 2  # budgets × seeds × norms, batch 64 only
    assert [j.train.images for j in ladder.jobs] == [256] * 4 + [512] * 4  # whole rungs first
    for job in ladder.jobs:
        t = job.train
        assert (t.batch_size, t.steps, t.dropout, t.stability.every) == (64, None, 0.0, 0)
    # the ladder's identity is its training settings, not the suite file: new notes resume it
    path.write_text(SUITE.replace('name = "tiny"', 'name = "tiny"\nnotes = "edited"'))
    again = curve_suite(load_suite(path), Ladder((512, 256), (100, 101), ("bn", "gnplus"), (64,)))
    assert again.hash == ladder.hash
    for bad, message in (
        (Ladder((16,), (1,)), "less than one batch"),
        (Ladder((256, 256), (1,)), "distinct"),
        (Ladder((256,), (1,), ("ln",)), "not in suite"),
        (Ladder((256,), (2**32,)), "low 32 bits"),
    ):
        with pytest.raises(RobustBenchError, match=message):
            curve_suite(suite, bad)


def test_curves_end_to_end_page_csv_resume_and_guards(tmp_path, capsys):
    path = tmp_path / "tiny.toml"
    path.write_text(SUITE)
    store = tmp_path / "s.sqlite"
    out = tmp_path / "page"
    argv = ["curves", str(path), "--budgets", "128", "256", "--seeds", "100", "101",
            "--batch-sizes", "64", "--store", str(store), "--workdir", str(tmp_path / "w"),
            "--threads", "1", "--quiet", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "learning curves of run 1 (tiny-curves)" in printed and "plateau" in printed.lower()
    with Store.open(store, read_only=True) as s:
        jobs = {j["id"]: j for j in s.jobs_of_run(1)}
        clean = {r["job_id"]: r["value"] for r in s.results_of_run(1) if r["family"] == "clean"}
    assert len(jobs) == 8 and {j["status"] for j in jobs.values()} == {"done"}
    with (out / "curves.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 8
    by_job = {
        (j["norm"], j["seed"], j["spec"]["train"]["images"]): clean[i] for i, j in jobs.items()
    }
    for r in rows:  # the page's numbers are the store's, job by job
        assert float(r["value"]) == by_job[(r["norm"], int(r["seed"]), int(r["images"]))]
    page = (out / "README.md").read_text()
    assert "| resnet20 · bn · bs 64 |" in page and "128 (0.026 ep)" in page
    assert "## How far each budget is below the largest one measured (mean at 256" in page
    assert (out / "curves.png").stat().st_size > 10_000 and (out / "store.sqlite").exists()
    assert json.loads((out / ".leaderboard.json").read_text())["files"]

    assert main(argv) == 0  # the same command again: a new run of the 8 finished jobs, reused
    assert "run 2 (tiny-curves)" in capsys.readouterr().out
    with Store.open(store, read_only=True) as s:
        assert len(s.conn.execute("SELECT id FROM jobs").fetchall()) == 8
        assert {j["id"] for j in s.jobs_of_run(2)} == set(jobs)
    # a leaderboard would pool the budgets as one experiment: refused
    code = main(["report", "--store", str(store), "--out", str(tmp_path / "lb")])
    assert code == 2 and "several budgets" in capsys.readouterr().err
    other = [a if a != "256" else "512" for a in argv] + ["--no-run"]
    assert main(other) == 2 and "no run of this ladder" in capsys.readouterr().err

    # a publication of the same training at 512 images on a fresh seed, with another memory
    # layout and no measures: its runs join the curves as the 512-image rung
    published = tmp_path / "pub.toml"
    published.write_text(
        SUITE.replace("batch_sizes = [32, 64]", "batch_sizes = [64]")
        .replace("seeds = [0]", "seeds = [7]")
        .replace("steps = 6", "images = 512\nchannels_last = true")
        .replace("[regularization]\ndropout = [0.0, 0.3]\n", "")
    )
    pub_store = tmp_path / "pub.sqlite"
    assert main(["run", str(published), "--store", str(pub_store), "--workdir",
                 str(tmp_path / "w"), "--threads", "1", "--quiet"]) == 0  # fmt: skip
    capsys.readouterr()
    assert main([*argv, "--no-run", "--with", f"{pub_store}:latest"]) == 0
    with (out / "curves.csv").open() as f:
        rows = list(csv.DictReader(f))
    borrowed = [r for r in rows if r["source"] != "ladder"]
    assert len(rows) == 10 and {(r["norm"], r["seed"], r["images"]) for r in borrowed} == {
        ("bn", "7", "512"),
        ("gnplus", "7", "512"),
    }
    page = (out / "README.md").read_text()
    assert "## Borrowed runs" in page and f"`{pub_store}:1`: 2 runs at 512" in page
    # a run of other training (another learning rate) is not a rung of this ladder
    published.write_text(published.read_text().replace("[train]", "[train]\nlr = 0.3"))
    assert main(["run", str(published), "--store", str(pub_store), "--workdir",
                 str(tmp_path / "w"), "--threads", "1", "--quiet"]) == 0  # fmt: skip
    capsys.readouterr()
    assert main([*argv, "--no-run", "--with", f"{pub_store}:latest"]) == 2
    assert "no unregularized job of that run trains a ladder arm" in capsys.readouterr().err


def test_a_run_resumes_only_with_the_code_it_started_with(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(SUITE.replace("batch_sizes = [32, 64]", "batch_sizes = [64]"))
    suite = load_suite(path)
    settings = RunSettings(workdir=str(tmp_path / "w"), quiet=True, threads=1)
    with Store.open(tmp_path / "s.sqlite") as store:
        first = run_suite(suite, store, settings)
        run = store.run(first.run_id)
        files = run["provenance"]["code_files"]
        assert "training/loop.py" in files and "evaluation/evaluate.py" in files
        assert "norms/gnplus.py" in files
        # the run is cut off; then training/loop.py changes (as recorded: the hash it started with)
        provenance = {**run["provenance"], "code_files": {**files, "training/loop.py": "0" * 64}}
        store.conn.execute(
            "UPDATE runs SET status = 'running', provenance = ? WHERE id = ?",
            (json.dumps(provenance), first.run_id),
        )
        with pytest.raises(RobustBenchError, match=r"robustbench_norm/training/loop.py changed"):
            run_suite(suite, store, settings)
        fresh = run_suite(suite, store, RunSettings(**{**settings.__dict__, "fresh": True}))
        assert fresh.run_id != first.run_id and fresh.executed == len(suite.jobs)
