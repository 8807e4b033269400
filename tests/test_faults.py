"""Nothing silent: every bad input, fault and interruption gets one clear line and a non-zero
exit, and nothing already computed or published is lost.

Each case here failed on the code before it (a traceback, a silent wrong result or lost data).
Faults are real: a damaged SQLite page, a truncated checkpoint, a full tmpfs, a read-only bind
mount, SIGINT and SIGKILL to real processes.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from confinement import cli, confined

from robustbench_norm.cli import main
from robustbench_norm.data import load_split
from robustbench_norm.errors import NormInputError, RobustBenchError
from robustbench_norm.norms import make_norm
from robustbench_norm.perturb.corruptions import CorruptionCache
from robustbench_norm.suites import store_file
from robustbench_norm.suites.execute import RunSettings, run_suite
from robustbench_norm.suites.job_claims import JobClaims
from robustbench_norm.suites.store import JobOutcome, Store
from robustbench_norm.suites.suite import load_suite
from robustbench_norm.training import TrainSpec, train

MINI = """
name = "mini"
models = ["resnet20"]
width = 4
batch_sizes = [64]
seeds = [0, 1]
test_limit = 50
[[norms]]
name = "bn"
[[norms]]
name = "gnplus"
options = { groups = 2 }
[train]
steps = 6
lr = 0.05
log_every = 2
[evaluate.noise]
sigmas = [0.1]
"""


def write_suite(tmp_path: Path, text: str = MINI, name: str = "mini.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def answer(argv: list[str], capsys) -> tuple[int, str]:
    """Run the CLI in-process; return (exit code, stderr) after checking the answer's form."""
    code = main(argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    return lines[0]


def tiny_run(tmp_path: Path, suite: Path | None = None, **settings) -> Path:
    store_path = tmp_path / "store.sqlite"
    settings = {"workdir": str(tmp_path / "work"), "quiet": True, "threads": 1, **settings}
    with Store.open(store_path) as store:
        run_suite(load_suite(suite or write_suite(tmp_path)), store, RunSettings(**settings))
    return store_path


def damage(path: Path) -> None:
    """Overwrite three pages in the middle of an SQLite file with garbage."""
    size = path.stat().st_size
    with path.open("r+b") as f:
        f.seek(min(4096 * 3, size // 2))
        f.write(np.random.default_rng(0).bytes(4096 * 3))


def checkpoint_of(tmp_path: Path) -> Path:
    spec = TrainSpec(width=4, steps=2, batch_size=64, log_every=1)
    return train(spec, tmp_path / "ckpt", device="cpu", quiet=True).checkpoint


# -- bad suite values: caught when the suite is loaded, naming the key -----------------------------

BAD_SUITES = [
    ("test_limit = 50", "test_limit = -900", "test_limit"),
    ("test_limit = 50", "test_limit = 0", "test_limit"),
    ("sigmas = [0.1]", "sigmas = [nan]", "sigmas"),
    ("sigmas = [0.1]", "sigmas = [1e300]", "sigmas"),
    ("sigmas = [0.1]", "sigmas = [0.1]\nseed = -1", "seed"),
    ("seeds = [0, 1]", "seeds = [-1, 0]", "seeds"),
    ("seeds = [0, 1]", "seeds = [0, 0]", "seeds"),
    ("lr = 0.05", "lr = inf", "train.lr"),
    ("lr = 0.05", "lr = 0.05\nmomentum = 1.5", "momentum"),
    ("options = { groups = 2 }", "options = { groups = 2, eps = 0.0 }", "eps"),
    ("options = { groups = 2 }", "options = { groups = 2, momentum = -0.1 }", "momentum"),
    ("options = { groups = 2 }", 'options = { groups = 2, impl = "cuda" }', "impl"),
    (
        "sigmas = [0.1]",
        'sigmas = [0.1]\n[evaluate.corruptions]\nnames = ["contrast"]\nseed = -1',
        "corruptions.seed",
    ),
    (
        "sigmas = [0.1]",
        'sigmas = [0.1]\n[[evaluate.attacks]]\nname = "fgsm"\nlimit = -90',
        "attacks[0].limit",
    ),
    (
        "sigmas = [0.1]",
        'sigmas = [0.1]\n[[evaluate.attacks]]\nname = "fgsm"\nepsilons = [nan]',
        "attacks[0].epsilons",
    ),
    (
        "sigmas = [0.1]",
        'sigmas = [0.1]\n[[evaluate.attacks]]\nname = "pgd_linf"\nrel_stepsize = -1.0',
        "rel_stepsize",
    ),
    # torch keeps a seed's low 32 bits: seeds 0 and 2³² would train one model, counted twice
    ("seeds = [0, 1]", "seeds = [0, 4294967296]", "seeds[1]"),
    ("seeds = [0, 1]", "seeds = [9223372036854775807]", "seeds[0]"),
    # repeats: measured (or planned) twice, counted twice in every mean
    ("batch_sizes = [64]", "batch_sizes = [64, 64]", "batch_sizes: repeats 64"),
    ("sigmas = [0.1]", "sigmas = [0.1, 0.1]", "sigmas: repeats 0.1"),
    (
        "sigmas = [0.1]",
        'sigmas = [0.1]\n[evaluate.corruptions]\nnames = ["contrast", "fog", "contrast"]',
        "corruptions.names: repeats 'contrast'",
    ),
    (
        "sigmas = [0.1]",
        'sigmas = [0.1]\n[[evaluate.attacks]]\nname = "fgsm"\n[[evaluate.attacks]]\nname = "fgsm"',
        "attacks[1].name",
    ),
    (
        "sigmas = [0.1]",
        'sigmas = [0.1]\n[[evaluate.attacks]]\nname = "fgsm"\nepsilons = ["8/255", 0.03137254901960784]',
        "attacks[0].epsilons: repeats",
    ),
    # sizes the data cannot have: refused at load, not after training (or silently capped)
    ("batch_sizes = [64]", "batch_sizes = [100000]", "5,000 training images"),
    ("test_limit = 50", "test_limit = 9223372036854775807", "exceeds the 1,000 test images"),
    ("sigmas = [0.1]", "sigmas = [0.1]\nlimit = 1001", "noise.limit"),
]


@pytest.mark.parametrize(("old", "new", "named"), BAD_SUITES, ids=[b[1] for b in BAD_SUITES])
def test_a_bad_suite_value_is_refused_at_load_naming_its_key(tmp_path, capsys, old, new, named):
    assert old in MINI
    suite = write_suite(tmp_path, MINI.replace(old, new))
    code, err = answer(["plan", str(suite)], capsys)
    assert code == 2
    assert named in one_error_line(err)


def test_limits_are_positive_in_the_library_too():
    split = load_split("fashion-mnist-mini", "test")
    for bad in (0, -995):
        with pytest.raises(RobustBenchError, match="positive"):
            split.subset(bad)
    assert len(split.subset(5)) == 5


# -- the CLI: one line for every fault ----------------------------------------------------------


def test_unreadable_suite_paths(tmp_path, capsys):
    latin1 = tmp_path / "latin1.toml"
    latin1.write_bytes(b'name = "caf\xe9"\n')
    code, err = answer(["plan", str(latin1)], capsys)
    assert code == 2 and "UTF-8" in one_error_line(err)
    code, err = answer(["plan", str(tmp_path)], capsys)
    assert code == 2 and "not a file" in one_error_line(err)


def test_store_and_out_under_a_regular_file(tmp_path, capsys):
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    suite = write_suite(tmp_path)
    code, err = answer(["run", str(suite), "--store", str(blocker / "s.sqlite")], capsys)
    assert code == 2 and "writable folder" in one_error_line(err)
    store = tiny_run(tmp_path)
    code, err = answer(["report", "--store", str(store), "--out", str(blocker / "lb")], capsys)
    assert code == 2 and "afile" in one_error_line(err)
    code, err = answer(["report", "--store", str(store), "--out", str(blocker)], capsys)
    assert code == 2 and "is a file" in one_error_line(err)


def test_a_damaged_store_is_named_by_report_check_list_and_run(tmp_path, capsys):
    store = tiny_run(tmp_path)
    bad = tmp_path / "bad.sqlite"
    bad.write_bytes(store.read_bytes())
    damage(bad)
    commands = [
        ["report", "--store", str(bad), "--out", str(tmp_path / "lb")],
        ["check", "--baseline", f"{bad}:latest", "--candidate", f"{store}:latest"],
        ["list", "runs", "--store", str(bad)],
        ["run", str(write_suite(tmp_path)), "--store", str(bad)],
    ]
    for argv in commands:
        code, err = answer(argv, capsys)
        line = one_error_line(err)
        assert code == 2 and str(bad) in line and "damaged" in line, argv
    not_sqlite = tmp_path / "text.sqlite"
    not_sqlite.write_text("hello\n" * 200)
    code, err = answer(["list", "runs", "--store", str(not_sqlite)], capsys)
    assert code == 2 and "not an SQLite file" in one_error_line(err)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_a_gpu_fails_once_up_front(tmp_path, capsys):
    ckpt = checkpoint_of(tmp_path)
    code, err = answer(["eval", str(ckpt), "--device", "cuda"], capsys)
    assert code == 2 and "no CUDA device" in one_error_line(err) and "damaged" not in err
    code, err = answer(["train", "--device", "cuda", "--steps", "1"], capsys)
    assert code == 2 and "use --device cpu" in one_error_line(err)
    suite = write_suite(tmp_path)
    store = tmp_path / "cuda.sqlite"
    code, err = answer(["run", str(suite), "--store", str(store), "--device", "cuda"], capsys)
    assert code == 2 and "no CUDA device" in one_error_line(err)
    assert not store.exists()  # a usage error creates nothing


def test_eval_limit_must_be_positive(tmp_path, capsys):
    ckpt = checkpoint_of(tmp_path)
    for bad in ("0", "-995"):
        with pytest.raises(SystemExit) as exit_:
            main(["eval", str(ckpt), "--limit", bad])
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and "--limit" in err.splitlines()[-1]
        assert "Traceback" not in err


def test_layers_refuse_impossible_options_at_build_and_integer_input():
    with pytest.raises(RobustBenchError, match="impl='cuda'"):
        make_norm("gnplus", 8, groups=2, impl="cuda")
    layer = make_norm("gnplus", 8, groups=2)
    with pytest.raises(NormInputError, match="floating-point"):
        layer(torch.ones(2, 8, 4, 4, dtype=torch.long))


def test_seeds_are_refused_outside_torchs_32_bits_everywhere(capsys):
    with pytest.raises(RobustBenchError, match="low 32 bits"):
        TrainSpec(seed=2**32)
    assert TrainSpec(seed=2**32 - 1).seed == 2**32 - 1
    code, err = answer(["train", "--seed", str(2**32), "--steps", "1"], capsys)
    assert code == 2 and "train.seed=4294967296" in one_error_line(err)


def test_run_usage_errors_are_caught_before_anything_is_created(tmp_path, capsys):
    suite = write_suite(tmp_path)
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    store = tmp_path / "never.sqlite"
    cases = [
        (["--workdir", str(blocker / "w")], "lies under"),
        (["--cache-dir", str(blocker)], "is a regular file"),
        (["--jobs", "0"], "--jobs 0"),
        (["--device", "tpu9"], "not a device name"),
    ]
    for extra, message in cases:
        started = time.monotonic()
        code, err = answer(["run", str(suite), "--store", str(store), *extra], capsys)
        assert code == 2 and message in one_error_line(err), extra
        assert time.monotonic() - started < 20  # refused, not trained first
        assert not store.exists() and not (tmp_path / "results").exists(), extra


def test_the_suites_secondary_list_may_be_empty_as_on_the_command_line(tmp_path):
    suite = load_suite(write_suite(tmp_path, MINI + "[check]\nsecondary = []\n"))
    assert suite.check.secondary == ()


# -- report --out: only a leaderboard is ever replaced -------------------------------------------


def _tree(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.name.endswith(("-shm", "-wal"))  # SQLite's, made by reading
    }


def test_report_out_never_deletes_a_folder_it_did_not_write(tmp_path, capsys, monkeypatch):
    store = tiny_run(tmp_path)  # store.sqlite and work/checkpoints/ under tmp_path
    mine = tmp_path / "myfolder"
    (mine / "sub").mkdir(parents=True)
    (mine / "notes.txt").write_text("my notes")
    (mine / "sub" / "data.csv").write_text("a,b\n")
    before = _tree(tmp_path)
    cases = [
        (tmp_path, "holds the store"),  # the store's own folder
        (tmp_path / "work", "report did not write"),  # the checkpoints
        (mine, "report did not write (2 entries: notes.txt, sub)"),
    ]
    for out, message in cases:
        code, err = answer(["report", "--store", str(store), "--out", str(out)], capsys)
        assert code == 2 and message in one_error_line(err), out
    monkeypatch.chdir(mine / "sub")
    for out in (".", "..", str(tmp_path)):
        code, err = answer(["report", "--store", str(store), "--out", out], capsys)
        assert code == 2 and "current folder or one above it" in one_error_line(err), out
    assert _tree(tmp_path) == before  # nothing lost, nothing half-written


def test_report_replaces_its_own_leaderboard_and_regenerates_it_from_its_store(tmp_path, capsys):
    store = tiny_run(tmp_path)
    out = tmp_path / "lb"
    assert answer(["report", "--store", str(store), "--out", str(out)], capsys)[0] == 0
    manifest = json.loads((out / ".leaderboard.json").read_text())
    assert sorted(manifest["files"]) == sorted(p.name for p in out.iterdir() if p.name[0] != ".")
    first = _tree(out)
    # from its own exported store: the documented way to regenerate a published leaderboard
    assert (
        answer(["report", "--store", str(out / "store.sqlite"), "--out", str(out)], capsys)[0] == 0
    )
    again = _tree(out)
    assert {k: v for k, v in again.items() if k != "store.sqlite"} == {
        k: v for k, v in first.items() if k != "store.sqlite"
    }
    (out / "mine.txt").write_text("keep me")
    code, err = answer(["report", "--store", str(store), "--out", str(out)], capsys)
    assert code == 2 and "did not write: mine.txt" in one_error_line(err)
    assert (out / "mine.txt").read_text() == "keep me"
    # a leaderboard written before the manifest existed is still recognised as one
    (out / "mine.txt").unlink()
    (out / ".leaderboard.json").unlink()
    assert answer(["report", "--store", str(store), "--out", str(out)], capsys)[0] == 0
    assert (out / ".leaderboard.json").exists()


# -- clear words --------------------------------------------------------------------------------


def test_plan_names_a_damaged_store_as_damaged(tmp_path, capsys):
    store = tiny_run(tmp_path)
    damage(store)
    code = main(["plan", str(write_suite(tmp_path)), "--store", str(store)])
    out = capsys.readouterr().out
    assert code == 0 and "damaged" in out and "does not exist" not in out
    assert "seed" in out  # the plan itself is still printed


def test_plan_keeps_long_seeds_in_their_column(tmp_path, capsys):
    suite = write_suite(tmp_path, MINI.replace("seeds = [0, 1]", "seeds = [4294967295]"))
    assert main(["plan", str(suite)]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if "4294967295" in line)
    assert row.split()[3:5] == ["64", "4294967295"]


def test_report_on_a_run_whose_jobs_failed_says_why(tmp_path, capsys):
    path = tmp_path / "s.sqlite"
    with Store.open(path) as store:
        run = store.start_run("mini", "h", "name = 'mini'", {})
        labels = dict(model="resnet20", norm="bn", batch_size=64, seed=0, regularizer="none")
        job = store.add_job(run, "k", {}, labels, "running")
        error = "Traceback ...\nRuntimeError: out of memory"
        store.record(job, JobOutcome("k", "failed", error, None, 1.0, {}, [], [], []))
        store.finish_run(run, "failed")
    code, err = answer(["report", "--store", str(path), "--out", str(tmp_path / "lb")], capsys)
    line = one_error_line(err)
    assert code == 2 and "1 of its 1 job(s) failed" in line and "out of memory" in line


def test_fingerprint_compare_with_nothing_in_common_is_an_error(tmp_path, capsys):
    store = tiny_run(tmp_path)
    relabelled = MINI.replace('name = "bn"', 'name = "bn"\nlabel = "bn-2"')
    relabelled = relabelled.replace('name = "gnplus"', 'name = "gnplus"\nlabel = "gnplus-2"')
    other = write_suite(tmp_path, relabelled, "other.toml")
    code, err = answer(["fingerprint", str(other), "--compare", f"{store}:latest"], capsys)
    line = one_error_line(err)
    assert code == 2 and "no norm label in common" in line and "bn, gnplus" in line


def test_list_runs_says_when_there_are_none_and_which_were_interrupted(tmp_path, capsys):
    path = tmp_path / "s.sqlite"
    Store.open(path).close()
    assert main(["list", "runs", "--store", str(path)]) == 0
    assert "no runs in" in capsys.readouterr().out
    with Store.open(path) as store:
        cut = store.start_run("mini", "h", "", {})  # its process died: no live holder
        live = store.start_run("mini", "h", "", {})
        with JobClaims(store) as claims:
            claims.hold_run(live)
            assert main(["list", "runs", "--store", str(path)]) == 0
            rows = {int(r.split()[0]): r.split()[2] for r in capsys.readouterr().out.splitlines()}
        assert rows == {cut: "interrupted", live: "running"}
        assert main(["list", "runs", "--store", str(path)]) == 0  # the holder has finished
        assert "running" not in capsys.readouterr().out


# -- checkpoints: damaged resume points and a full disk -----------------------------------------


def test_a_truncated_resume_point_is_discarded_and_the_job_trains_again(tmp_path):
    spec = TrainSpec(width=4, epochs=2, batch_size=1000, augment=False, log_every=1)
    reference = train(spec, tmp_path / "ref", device="cpu", quiet=True)
    stopped = train(spec, tmp_path / "cut", device="cpu", quiet=True, stop_after_epoch=1)
    assert stopped.status == "interrupted"
    data = stopped.checkpoint.read_bytes()
    stopped.checkpoint.write_bytes(data[: len(data) // 3])
    with pytest.warns(UserWarning, match="damaged"):
        again = train(spec, tmp_path / "cut", device="cpu", quiet=True)
    assert again.status == "done" and again.steps == reference.steps
    a = torch.load(reference.checkpoint, weights_only=False)["model"]
    b = torch.load(again.checkpoint, weights_only=False)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)  # from scratch: the uninterrupted result


def test_a_full_disk_stops_the_run_with_one_line_and_no_stale_files(tmp_path):
    suite = write_suite(tmp_path)
    full = tmp_path / "full"
    full.mkdir()
    store = tmp_path / "store.sqlite"
    argv = cli("run", str(suite), "--store", str(store), "--workdir", str(full), "--threads", "1")
    listing = f"echo FILES; find {full} -type f"
    proc = confined(argv, [("full", full, "16k")], after=listing)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    line = one_error_line(proc.stderr)
    assert "could not write checkpoint" in line and "rerun the same command" in line
    left = proc.stdout.split("FILES", 1)[1].split()
    assert not [f for f in left if f.endswith(".tmp")]  # no half-written checkpoint remains
    # the store lives elsewhere and keeps the run resumable, its job marked as cut off
    with Store.open(store, read_only=True) as s:
        assert [r["status"] for r in s.runs()] == ["running"]
        assert {j["status"] for j in s.jobs_of_run(1)} <= {"pending", "running"}

    full_store = cli("run", str(suite), "--store", str(full / "s.sqlite"), "--threads", "1")
    proc = confined(full_store, [("full", full, "8k")])
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "disk is full" in one_error_line(proc.stderr)


def test_a_store_on_a_read_only_file_system_is_read_but_not_run_into(tmp_path):
    store = tiny_run(tmp_path)
    ro = store.parent
    ok = confined(cli("list", "runs", "--store", str(store)), [("ro", ro)])
    assert ok.returncode == 0 and "mini" in ok.stdout, ok.stderr
    out = tmp_path.parent / f"{tmp_path.name}-lb"
    report = confined(
        cli("report", "--store", str(store), "--out", str(out)), [("ro", ro)], cwd=tmp_path
    )
    assert report.returncode == 0, report.stderr
    assert (out / "README.md").exists()
    check = confined(
        cli(
            "check",
            "--baseline",
            f"{store}:latest",
            "--candidate",
            f"{store}:latest",
            "--metrics",
            "clean/accuracy",
            "--secondary",
        ),
        [("ro", ro)],
    )
    assert check.returncode == 0 and "Traceback" not in check.stderr, check.stderr
    run = confined(cli("run", str(ro / "mini.toml"), "--store", str(store)), [("ro", ro)])
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert "not writable" in one_error_line(run.stderr)


# -- publishing is atomic ------------------------------------------------------------------------


def test_a_failed_publish_leaves_the_previous_leaderboard_intact(tmp_path, capsys):
    store = tiny_run(tmp_path)
    out = tmp_path / "published"
    code, _ = answer(["report", "--store", str(store), "--out", str(out)], capsys)
    assert code == 0
    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in out.iterdir()}
    assert "store.sqlite" in before and "README.md" in before

    broken = tmp_path / "broken.sqlite"
    broken.write_bytes(store.read_bytes())
    damage(broken)
    code, err = answer(["report", "--store", str(broken), "--out", str(out)], capsys)
    assert code == 2 and "damaged" in one_error_line(err)
    after = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in out.iterdir()}
    assert after == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".published")) == []


# -- the corruption cache verifies what it loads -----------------------------------------------


def test_a_replaced_or_truncated_cache_entry_is_regenerated(tmp_path):
    from robustbench_norm.perturb import corruptions

    split = load_split("fashion-mnist-mini", "test").subset(20)
    cache = CorruptionCache(tmp_path)
    path = cache.ensure(split, [("contrast", 2)], seed=0, quiet=True)[("contrast", 2)]
    original = np.load(path)
    corruptions._VERIFIED.clear()  # a new process: nothing verified yet
    np.save(path, np.zeros_like(original))  # same size, other content
    assert np.array_equal(
        np.load(cache.ensure(split, [("contrast", 2)], quiet=True)[("contrast", 2)]), original
    )
    corruptions._VERIFIED.clear()
    path.write_bytes(path.read_bytes()[:100])
    assert np.array_equal(
        np.load(cache.ensure(split, [("contrast", 2)], quiet=True)[("contrast", 2)]), original
    )
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["sha256"] == hashlib.sha256(original.tobytes()).hexdigest()


# -- thread count: pinned per run and part of the key ---------------------------------------------


def test_the_thread_count_is_part_of_every_key_and_pinned_on_resume(tmp_path):
    suite = load_suite(write_suite(tmp_path))
    with Store.open(tmp_path / "s.sqlite") as store:
        one = run_suite(
            suite, store, RunSettings(workdir=str(tmp_path / "w"), quiet=True, threads=1)
        )
        keys_one = {j["key"] for j in store.jobs_of_run(one.run_id)}
        two = run_suite(
            suite, store, RunSettings(workdir=str(tmp_path / "w"), quiet=True, threads=2)
        )
        assert (two.executed, two.reused) == (4, 0)  # other threads: other models, not reused
        jobs_two = store.jobs_of_run(two.run_id)
        assert not keys_one & {j["key"] for j in jobs_two}
        assert {j["spec"]["compute"] for j in jobs_two} == {"cpu-2threads"}
        assert store.run(two.run_id)["provenance"]["torch_threads"] == 2
        # an unfinished run resumes at the count it started with; asking for another is refused
        store.conn.execute("UPDATE runs SET status = 'running' WHERE id = ?", (two.run_id,))
        notes: list[str] = []
        implicit = RunSettings(workdir=str(tmp_path / "w"), quiet=True)
        resumed = run_suite(suite, store, implicit, say=notes.append)
        assert (resumed.run_id, resumed.executed, resumed.reused) == (two.run_id, 0, 4)
        if torch.get_num_threads() != 2:
            assert notes == [f"resuming run {two.run_id} with 2 thread(s) per job, as it started"]
        store.conn.execute("UPDATE runs SET status = 'running' WHERE id = ?", (two.run_id,))
        with pytest.raises(RobustBenchError, match="--threads 2"):
            run_suite(suite, store, RunSettings(workdir=str(tmp_path / "w"), quiet=True, threads=1))


# -- processes, locks and claims -------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc").exists(), reason="reads the process table from /proc")
def test_worker_processes_exit_when_the_parent_is_killed(tmp_path):
    suite = write_suite(tmp_path, MINI.replace("steps = 6", "steps = 400"))
    argv = cli("run", str(suite), "--store", str(tmp_path / "s.sqlite"), "--jobs", "2",
               "--workdir", str(tmp_path / "w"), "--quiet")  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers: list[int] = []
    deadline = time.time() + 120
    while time.time() < deadline and len(workers) < 2:
        time.sleep(0.5)
        workers = [p for p in _children(proc.pid) if "spawn" in _cmdline(p)]
    assert len(workers) == 2, "the pool should have started 2 workers"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 20
    while time.time() < deadline and any(_alive(p) for p in workers):
        time.sleep(0.5)
    assert not any(_alive(p) for p in workers)


def test_parallel_jobs_in_one_log_say_which_job_each_line_is_about(tmp_path):
    argv = cli("run", str(write_suite(tmp_path)), "--store", str(tmp_path / "s.sqlite"),
               "--jobs", "2", "--workdir", str(tmp_path / "w"), "--threads", "1")  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300)  # a log, not a tty
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    for norm in ("bn", "gnplus"):
        for seed in (0, 1):
            title = f"resnet20/{norm}/bs64/seed{seed}/none"
            own = [line for line in lines if line.startswith(f"[{title}] ")]
            assert own[0].startswith(f"[{title}] resnet20/{norm}: epoch 1/1, 6/6 steps (100 %)")
            assert own[1].startswith(f"[{title}] evaluated noise (1 conditions) in ")
            assert any(line.startswith(f"  {title}: done in ") for line in lines)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


# with worker processes (~30 s) in make test-slow; make test keeps the in-process run
@pytest.mark.parametrize("jobs", ["1", pytest.param("2", marks=pytest.mark.slow)])
def test_sigint_says_how_to_resume_and_the_rerun_finishes(tmp_path, jobs):
    suite = write_suite(tmp_path, MINI.replace("steps = 6", "steps = 60"))
    store = tmp_path / "s.sqlite"
    argv = cli("run", str(suite), "--store", str(store), "--workdir", str(tmp_path / "w"),
               "--threads", "1", "--jobs", jobs)  # fmt: skip
    # a shell's background job (`cmd &`) starts with SIGINT ignored, and the child would inherit
    # that: give it the disposition a terminal user's process has
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    deadline = time.time() + 120
    while time.time() < deadline:  # interrupt once the first job is done and others train
        time.sleep(0.3)
        if (tmp_path / "w" / "checkpoints").exists():
            break
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted; rerun the same command to resume" in err
    assert "Traceback" not in err and "Warning" not in err  # workers stop quietly too
    again = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    with Store.open(store, read_only=True) as s:
        assert [r["status"] for r in s.runs()] == ["finished"]
        assert {j["status"] for j in s.jobs_of_run(1)} == {"done"}


def test_a_writer_says_it_waits_on_a_lock_and_gives_up_in_bounded_time(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.setattr(store_file, "LOCK_NOTICE", 0.3)
    path = tmp_path / "s.sqlite"
    Store.open(path).close()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with Store.open(path, lock_timeout=1.5) as store:
            started = time.monotonic()
            with pytest.raises(RobustBenchError, match="stayed locked"):
                store.set_status(1, "running")
            assert 1.4 < time.monotonic() - started < 10
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert f"waiting for the write lock of store {path}" in capsys.readouterr().err


def test_claims_exclude_live_holders_and_expire_with_dead_ones(tmp_path):
    path = tmp_path / "s.sqlite"
    with Store.open(path) as a_store, Store.open(path) as b_store:
        a, b = JobClaims(a_store), JobClaims(b_store)
        b.pid, b.owner = b.pid + 0, b.owner + "-other"  # two claimants in one process
        assert a.claim("k1") is None
        held = b.claim("k1")
        assert held is not None and held.pid == os.getpid()
        a.release("k1")
        assert b.claim("k1") is None
        # a claim whose process is gone is taken over at once
        dead = subprocess.Popen([sys.executable, "-c", "pass"])
        dead.wait()
        with a_store.transaction() as c:
            c.execute("UPDATE claims SET pid = ? WHERE key = 'k1'", (dead.pid,))
        assert a.claim("k1") is None
        # another host's claim counts until its heartbeat is stale
        with a_store.transaction() as c:
            c.execute("UPDATE claims SET host = 'elsewhere', owner = 'x' WHERE key = 'k1'")
        assert b.claim("k1") is not None
        with a_store.transaction() as c:
            c.execute("UPDATE claims SET heartbeat = heartbeat - 1000 WHERE key = 'k1'")
        assert b.claim("k1") is None


def test_two_identical_runs_started_together_compute_each_job_once(tmp_path):
    suite = write_suite(tmp_path, MINI.replace("steps = 6", "steps = 30"))
    store = tmp_path / "shared.sqlite"
    Store.open(store).close()
    argv = cli("run", str(suite), "--store", str(store), "--workdir", str(tmp_path / "w"),
               "--threads", "1")  # fmt: skip
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]  # fmt: skip
    outputs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    with Store.open(store, read_only=True) as s:
        jobs = s.conn.execute("SELECT key, status FROM jobs").fetchall()
        assert sorted(j["status"] for j in jobs) == ["done"] * 4  # 4 jobs, none twice
        assert s.conn.execute("SELECT count(*) FROM claims").fetchone()[0] == 0
        for run in s.runs():
            assert len(s.jobs_of_run(run["id"])) == 4
    executed = [int(out.split(" reused, ")[1].split(" executed")[0]) for out, _ in outputs]
    assert sum(executed) == 4
