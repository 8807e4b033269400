"""Running suites end to end: resume, kill-and-resume, worker processes, Ray, regression checks
and the leaderboard files. Uses a tiny suite (ResNet-20 width 4, a dozen steps per job)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from robustbench_norm.cli import main
from robustbench_norm.reporting.report import JSON_SCHEMA, write_report
from robustbench_norm.suites.execute import RunSettings, run_suite
from robustbench_norm.suites.store import Store
from robustbench_norm.suites.suite import load_suite

TINY = """
name = "tiny"
description = "test suite"
models = ["resnet20"]
width = 4
batch_sizes = [128]
seeds = [0, 1]
test_limit = 100
[[norms]]
name = "bn"
[[norms]]
name = "gn"
options = { groups = 2 }
[[norms]]
name = "gnplus"
options = { groups = 2 }
[train]
steps = 12
lr = 0.05
log_every = 4
[stability]
every = 6
etas = [0.05, 0.1, 0.2, 0.4]
[evaluate.noise]
sigmas = [0.1]
[evaluate.corruptions]
names = ["contrast"]
severities = [3]
[[evaluate.attacks]]
name = "fgsm"
epsilons = [0.0, 0.0157]
limit = 40
"""


def results_by_key(store: Store, run_id: int) -> dict:
    out = {}
    for r in store.results_of_run(run_id):
        out[(r["key"], r["family"], r["name"], r["parameter"], r["metric"])] = r["value"]
    return out


def comparable(results: dict) -> dict:
    """Results without wall-clock timings."""
    return {k: v for k, v in results.items() if k[2] != "wall_seconds"}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    path = root / "tiny.toml"
    path.write_text(TINY)
    cache = root / "cache"
    settings = RunSettings(workdir=str(root / "work"), cache_dir=str(cache), quiet=True, threads=1)
    with Store.open(root / "store.sqlite") as store:
        summary = run_suite(load_suite(path), store, settings)
        expected = comparable(results_by_key(store, summary.run_id))
    return {"root": root, "suite": path, "cache": cache, "summary": summary, "results": expected}


def test_run_finishes_every_job_and_a_rerun_reuses_them(tiny):
    s = tiny["summary"]
    assert (s.total, s.executed, s.reused, s.failed) == (6, 6, 0, [])
    with Store.open(tiny["root"] / "store.sqlite") as store:
        again = run_suite(load_suite(tiny["suite"]), store,
                          RunSettings(workdir=str(tiny["root"] / "work"), quiet=True))  # fmt: skip
        assert (again.executed, again.reused) == (0, 6)
        assert comparable(results_by_key(store, again.run_id)) == tiny["results"]
        n_jobs = store.conn.execute("SELECT COUNT(*) FROM jobs").fetchone()[0]
    assert n_jobs == 6  # linked, not duplicated


def test_killed_run_resumes_without_losing_or_duplicating_jobs(tiny, tmp_path):
    store_path = tmp_path / "killed.sqlite"
    cmd = [sys.executable, "-m", "robustbench_norm.cli", "run", str(tiny["suite"]),
           "--store", str(store_path), "--workdir", str(tmp_path / "work"),
           "--cache-dir", str(tiny["cache"]), "--threads", "2", "--quiet"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    done_before: dict = {}
    deadline = time.time() + 240
    while time.time() < deadline:
        time.sleep(0.5)
        if store_path.exists():
            try:
                conn = sqlite3.connect(f"file:{store_path}?mode=ro", uri=True, timeout=5)
                rows = conn.execute(
                    "SELECT id, key, updated FROM jobs WHERE status = 'done'"
                ).fetchall()
                conn.close()
            except sqlite3.OperationalError:
                continue
            if len(rows) >= 2:
                done_before = {key: (job_id, updated) for job_id, key, updated in rows}
                break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 2 <= len(done_before) < 6, "the run should be cut off part-way"
    with Store.open(store_path) as store:
        before = {k: v for k, v in results_by_key(store, 1).items() if k[0] in done_before}

    finished = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr
    assert "reused" in finished.stdout
    with Store.open(store_path) as store:
        runs = store.runs()
        assert [r["status"] for r in runs] == ["finished"]  # the same run, continued
        jobs = store.jobs_of_run(1)
        assert len(jobs) == 6 and {j["status"] for j in jobs} == {"done"}
        for key, (job_id, updated) in done_before.items():
            row = store.conn.execute(
                "SELECT id, updated FROM jobs WHERE key = ?", (key,)
            ).fetchall()
            assert [tuple(r) for r in row] == [(job_id, updated)]  # not recomputed, not duplicated
        after = results_by_key(store, 1)
        assert {k: after[k] for k in before} == before
        # the fixture's matrix at another thread count (1 there, 2 here): other keys
        labels = {(j["norm"], j["seed"]) for j in jobs}
        assert len(labels) == len({k[0] for k in tiny["results"]}) == 6
        assert not {k[0] for k in after} & {k[0] for k in tiny["results"]}


def test_worker_processes_give_the_sequential_results(tiny, tmp_path):
    settings = RunSettings(workdir=str(tmp_path / "work"), cache_dir=str(tiny["cache"]),
                           quiet=True, threads=1)  # fmt: skip
    with Store.open(tmp_path / "pool.sqlite") as store:
        summary = run_suite(load_suite(tiny["suite"]), store, settings, jobs=2)
        assert summary.executed == 6 and not summary.failed
        assert comparable(results_by_key(store, summary.run_id)) == tiny["results"]


@pytest.mark.slow  # 22 s of Ray start-up; the Ray path's other test is slow too (make test-slow)
def test_ray_executor_runs_the_matrix_with_the_same_results(tiny, tmp_path):
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        settings = RunSettings(workdir=str(tmp_path / "work"), cache_dir=str(tiny["cache"]),
                               quiet=True, threads=1)  # fmt: skip
        with Store.open(tmp_path / "ray.sqlite") as store:
            summary = run_suite(load_suite(tiny["suite"]), store, settings, executor="ray",
                                ray_cpus=1)  # fmt: skip
            assert summary.executed == 6 and not summary.failed
            assert comparable(results_by_key(store, summary.run_id)) == tiny["results"]
    finally:
        ray.shutdown()


REGRESSION = """
name = "regress"
models = ["resnet20"]
width = 4
batch_sizes = [128]
seeds = [0]
test_limit = 300
[[norms]]
name = "gnplus"
options = {{ groups = 2{extra} }}
[train]
steps = 20
lr = 0.05
[evaluate.noise]
sigmas = [0.1]
"""


def test_planted_regression_is_flagged_and_an_identical_rerun_passes(tmp_path, capsys):
    good = tmp_path / "good.toml"
    good.write_text(REGRESSION.format(extra=""))
    # the planted regression: λ frozen at 1, i.e. GN+ reduced to plain GN
    bad = tmp_path / "bad.toml"
    bad.write_text(REGRESSION.format(extra=", lambda_init = 1.0, learn_lambda = false"))
    store = tmp_path / "store.sqlite"
    common = ["--store", str(store), "--workdir", str(tmp_path / "work"), "--quiet"]
    assert main(["run", str(good), *common]) == 0  # run 1: the baseline
    assert main(["run", str(bad), *common]) == 0  # run 2: the regressed layer
    assert main(["run", str(good), "--fresh", *common]) == 0  # run 3: retrained from scratch
    capsys.readouterr()

    watch = ["--metrics", "clean/accuracy", "noise/accuracy", "--secondary"]
    assert main(["check", "--baseline", f"{store}:1", "--candidate", f"{store}:2", *watch]) == 1
    out = capsys.readouterr().out
    assert "layer changed: gnplus" in out and "configuration" in out  # exact, no training

    assert main(["check", "--baseline", f"{store}:1", "--candidate", f"{store}:3", *watch]) == 0
    out = capsys.readouterr().out
    assert "PASS" in out and "unchanged" in out and "+0.0000" in out
    with Store.open(store) as s:
        jobs = [s.jobs_of_run(r)[0]["id"] for r in (1, 3)]
    assert jobs[0] != jobs[1]  # the rerun really recomputed


def test_report_goes_to_results_and_only_publish_writes_leaderboards(tiny, tmp_path, monkeypatch):
    """`make run` must leave the committed leaderboards alone; publishing is its own step."""
    monkeypatch.chdir(tmp_path)
    store = str(tiny["root"] / "store.sqlite")
    assert main(["report", "--store", store, "--run", "1"]) == 0
    draft = tmp_path / "results" / "leaderboards" / "tiny"
    assert (draft / "README.md").exists() and not (tmp_path / "leaderboards").exists()
    prints = json.loads((draft / "fingerprints.json").read_text())
    assert set(prints) == {"bn", "gn", "gnplus"}
    assert "## Layer fingerprints" in (draft / "README.md").read_text()
    assert main(["report", "--store", store, "--run", "1", "--publish"]) == 0
    published = tmp_path / "leaderboards" / "tiny"
    with Store.open(published / "store.sqlite", read_only=True) as exported:
        assert set(exported.fingerprints_of_run(1)) == {"bn", "gn", "gnplus"}
        provenance = exported.run(1)["provenance"]
    assert {"cpu_model", "cpu_capability", "blas", "onednn", "torch_threads"} <= set(provenance)
    assert provenance["torch_threads"] == 1  # the fixture runs with threads=1


def test_a_published_leaderboard_regenerates_byte_for_byte_from_its_own_store(
    tiny, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)  # the page's commands name the folder as given: "board"
    assert main(["report", "--store", str(tiny["root"] / "store.sqlite"), "--run", "1",
                 "--out", "board"]) == 0  # fmt: skip
    first = {p.name: p.read_bytes() for p in Path("board").iterdir()}
    assert main(["report", "--store", "board/store.sqlite", "--out", "board"]) == 0
    second = {p.name: p.read_bytes() for p in Path("board").iterdir()}
    assert sorted(first) == sorted(second) and "store.sqlite" in first
    for name in first:
        assert first[name] == second[name], name
    readme = first["README.md"].decode()
    assert "`robustbench-norm run board/suite.toml`" in readme  # the files that exist
    assert "--baseline board/store.sqlite:latest" in readme
    assert "robustbench-norm fingerprint board/suite.toml --compare board/store.sqlite" in readme
    page = first["index.html"].decode()
    assert (
        'id="fingerprints"' in page and "<code>robustbench-norm run board/suite.toml</code>" in page
    )


def test_report_writes_every_file_with_real_numbers(tiny, tmp_path):
    out = tmp_path / "lb"
    with Store.open(tiny["root"] / "store.sqlite") as store:
        paths = write_report(store, 1, out)
    names = {p.name for p in paths}
    assert {"README.md", "results.csv", "results.json", "index.html"} <= names
    assert {
        "corruptions.png",
        "attacks.png",
        "training.png",
        "stability.png",
        "lambda.png",
    } <= names
    doc = json.loads((out / "results.json").read_text())
    assert doc["schema"] == JSON_SCHEMA
    assert {"suite", "run", "jobs", "leaderboards", "claims", "results"} <= set(doc)
    assert doc["run"]["provenance"]["torch"].startswith("2.14.1")
    boards = {b["id"]: b for b in doc["leaderboards"]}
    clean = boards["clean"]
    assert {r["norm"] for r in clean["rows"]} == {"bn", "gn", "gnplus"}
    accs = {r["norm"]: next(iter(r["cells"].values()))["mean"] for r in clean["rows"]}
    expected = {
        k[0]: v for k, v in tiny["results"].items() if k[1:] == ("clean", "clean", None, "accuracy")
    }
    assert sorted(accs.values()) == sorted(
        round(sum(v for kk, v in expected.items() if kk in keys) / 2, 6)
        for keys in _keys_by_norm(tiny)
    )
    # CE is linear in each run's errors against the fixed (seed-mean) reference: the reference
    # runs' mCE averages to exactly 1, while each run scatters around it
    bn_mce = next(
        iter(next(r for r in boards["mce"]["rows"] if r["norm"] == "bn")["cells"].values())
    )
    assert bn_mce["mean"] == pytest.approx(1.0) and len(set(bn_mce["values"])) == 2
    assert bn_mce["low"] is None  # 2 runs: the values, no interval
    assert len(doc["claims"]) == 6 and all(c["verdict"] for c in doc["claims"])
    readme = (out / "README.md").read_text()
    assert "## Claims of the GN+ paper" in readme and " / " in readme
    # 2 runs per norm: cells list the runs' values and nothing is starred without a test
    assert "±" not in readme.split("## Leaderboards")[1].split("## Plots")[0]


def _keys_by_norm(tiny) -> list[set]:
    with Store.open(tiny["root"] / "store.sqlite") as store:
        jobs = store.jobs_of_run(1)
    by_norm: dict[str, set] = {}
    for j in jobs:
        by_norm.setdefault(j["norm"], set()).add(j["key"])
    return list(by_norm.values())


def test_a_failing_job_is_recorded_and_the_run_exits_3(tmp_path, capsys):
    suite = tmp_path / "fails.toml"
    suite.write_text(TINY.replace('name = "tiny"', 'name = "fails"\ndataset = "cifar10"')
                     .replace("seeds = [0, 1]", "seeds = [0]")
                     .split("[evaluate.noise]")[0])  # fmt: skip
    env_root = tmp_path / "no-data"
    os.environ["ROBUSTBENCH_NORM_CACHE"] = str(env_root)
    try:
        code = main(["run", str(suite), "--store", str(tmp_path / "s.sqlite"),
                     "--workdir", str(tmp_path / "w"), "--quiet"])  # fmt: skip
    finally:
        del os.environ["ROBUSTBENCH_NORM_CACHE"]
    assert code == 3
    err = capsys.readouterr().err
    assert "FAILED" in err and "dataset 'cifar10'" in err and "--download" in err
    with Store.open(tmp_path / "s.sqlite") as store:
        assert {j["status"] for j in store.jobs_of_run(1)} == {"failed"}


def test_a_job_resumed_after_training_records_its_whole_cost(tmp_path):
    """A job cut off during evaluation resumes from its trained checkpoint. Its recorded time
    (what `plan` prices suites from, and the job time a leaderboard states) still counts the
    training done before the cut, not only the evaluation after it."""
    from robustbench_norm.suites.execute import execute_job

    suite = tmp_path / "resumed.toml"
    suite.write_text(TINY.replace("seeds = [0, 1]", "seeds = [0]").replace("steps = 12", "steps = 40")
                     .split("[stability]")[0])  # fmt: skip
    job = load_suite(suite).jobs[0]
    settings = RunSettings(workdir=str(tmp_path / "w"), quiet=True, threads=1)
    first = execute_job(job, settings)
    training = next(r["value"] for r in first.results if r["name"] == "wall_seconds")
    assert first.status == "done" and training < first.wall_seconds
    started = time.perf_counter()
    again = execute_job(job, settings)  # the checkpoint is final: evaluation only
    segment = time.perf_counter() - started
    assert segment < training  # so a record of this process alone would be too short
    assert training < again.wall_seconds <= training + segment


def test_export_snapshots_a_store_being_written_and_a_run_resumes_from_the_copy(
    tiny, tmp_path, capsys
):
    """Between sittings of a long run its store is exported and committed: the copy holds what
    was committed when it was taken (not a writer's open transaction), is one file, replaces
    an old copy and its stale journal, and `run` on it reuses every finished job."""
    source = tiny["root"] / "store.sqlite"
    dest = tmp_path / "snapshot.sqlite"
    Path(f"{dest}-wal").write_bytes(b"an old copy's journal")
    writer = sqlite3.connect(source, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("UPDATE runs SET status = 'uncommitted'")
    try:
        assert main(["export", str(dest), "--store", str(source)]) == 0
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    assert "6 finished jobs" in capsys.readouterr().out
    assert not Path(f"{dest}-wal").exists() and not list(tmp_path.glob(".*partial"))
    copy = sqlite3.connect(dest)
    assert copy.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    assert {r[0] for r in copy.execute("SELECT status FROM runs")} == {"finished"}
    n_results = copy.execute("SELECT COUNT(*) FROM results").fetchone()[0]
    copy.close()
    with Store.open(source, read_only=True) as original:
        assert original.conn.execute("SELECT COUNT(*) FROM results").fetchone()[0] == n_results
    with Store.open(dest) as store:
        again = run_suite(load_suite(tiny["suite"]), store,
                          RunSettings(workdir=str(tmp_path / "w"), quiet=True, threads=1))  # fmt: skip
    assert (again.executed, again.reused) == (0, 6)
    assert main(["export", str(source), "--store", str(source)]) == 2
    assert main(["export", str(tmp_path / "no" / "x.sqlite"), "--store", str(source)]) == 2
    err = capsys.readouterr().err
    assert "is --store itself" in err and "does not exist; create it" in err


def test_cli_plan_list_and_report(tiny, tmp_path, capsys):
    assert main(["plan", str(tiny["suite"])]) == 0
    assert "6 jobs" in capsys.readouterr().out
    store = str(tiny["root"] / "store.sqlite")
    assert main(["list", "runs", "--store", store]) == 0
    assert "tiny" in capsys.readouterr().out
    for what in ("models", "datasets", "corruptions", "attacks"):
        assert main(["list", what]) == 0
    assert "pgd_linf" in capsys.readouterr().out
    out = tmp_path / "lb"
    assert main(["report", "--store", store, "--suite", "tiny", "--out", str(out)]) == 0
    assert (out / "store.sqlite").exists() and (out / "index.html").exists()
    assert main(["report", "--store", store, "--suite", "nope"]) == 2


def test_suite_errors_exit_2_before_any_work(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text(TINY.replace("width = 4", "widht = 4"))
    assert main(["run", str(bad), "--store", str(tmp_path / "s.sqlite")]) == 2
    assert "widht: unknown key" in capsys.readouterr().err
    assert not (tmp_path / "s.sqlite").exists()  # rejected before the store was even created


def test_a_run_whose_jobs_diverge_still_gets_a_leaderboard(tmp_path):
    text = TINY.replace("lr = 0.05", "lr = 1e8").replace("seeds = [0, 1]", "seeds = [0]")
    path = tmp_path / "diverge.toml"
    path.write_text(text.replace('name = "tiny"', 'name = "diverge"'))
    with Store.open(tmp_path / "s.sqlite") as store:
        summary = run_suite(
            load_suite(path), store, RunSettings(workdir=str(tmp_path / "w"), quiet=True)
        )
        assert len(summary.diverged) >= 1
        write_report(store, summary.run_id, tmp_path / "lb")
    doc = json.loads((tmp_path / "lb" / "results.json").read_text())  # strict JSON: no NaN
    stability = next(b for b in doc["leaderboards"] if b["id"] == "stability")
    diverged = {r["norm"]: r["cells"]["diverged runs"]["mean"] for r in stability["rows"]}
    assert sum(diverged.values()) == len(summary.diverged)
    assert "diverged" in (tmp_path / "lb" / "README.md").read_text()


@pytest.mark.slow
def test_the_real_smoke_suite_through_ray(tmp_path):
    """suites/smoke.toml itself on a local 2-CPU Ray (about 3 minutes; `make test-slow`)."""
    ray = pytest.importorskip("ray")
    suite = load_suite(Path(__file__).parents[1] / "suites" / "smoke.toml")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        with Store.open(tmp_path / "ray.sqlite") as store:
            summary = run_suite(
                suite,
                store,
                RunSettings(workdir=str(tmp_path / "w"), cache_dir=str(tmp_path / "c"), quiet=True),
                executor="ray",
            )
            assert (summary.executed, summary.failed) == (6, [])
            paths = write_report(store, summary.run_id, tmp_path / "lb")
    finally:
        ray.shutdown()
    doc = json.loads((tmp_path / "lb" / "results.json").read_text())
    clean = next(b for b in doc["leaderboards"] if b["id"] == "clean")
    adapted = {"bn · test-batch 250", "gnplus · test-batch 250"}  # [evaluate.test_statistics]
    assert {r["norm"] for r in clean["rows"]} == {"bn", "gn", "gnplus"} | adapted
    assert all(0.1 < next(iter(r["cells"].values()))["mean"] <= 1.0 for r in clean["rows"])
    assert len(paths) >= 8
