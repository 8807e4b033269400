"""The SQLite store: schema versions, whole-or-nothing jobs, concurrent writers, export."""

from __future__ import annotations

import multiprocessing as mp
import sqlite3

import numpy as np
import pytest

from robustbench_norm.errors import RobustBenchError
from robustbench_norm.suites.store import JobOutcome, Store, pack_flags, unpack_flags

LABELS = {"model": "resnet20", "norm": "bn", "batch_size": 64, "seed": 0, "regularizer": "none"}


def outcome(key: str, n: int = 3, value: float = 0.5) -> JobOutcome:
    rows = [{"family": "clean", "name": "clean", "parameter": None, "metric": "accuracy",
             "value": value}] + [{"family": "noise", "name": "gaussian_noise", "parameter": 0.1 * i,
                                  "metric": "accuracy", "value": value / (i + 1)} for i in range(n)]  # fmt: skip
    flags = [("clean", "clean", None, np.arange(37) % 3 == 0, "running")]
    return JobOutcome(key, "done", None, None, 1.0, {"loss": [1.0]}, [], rows, flags, ["w"])


def test_flags_round_trip_exactly():
    for n in (1, 7, 8, 9, 1000):
        f = np.random.default_rng(n).random(n) < 0.5
        assert np.array_equal(unpack_flags(pack_flags(f), n), f)


def test_record_and_read_back(tmp_path):
    with Store.open(tmp_path / "s.sqlite") as store:
        run = store.start_run("suite", "h", "toml", {"git_sha": "x"})
        job = store.add_job(run, "k1", {"a": 1}, LABELS, "pending")
        store.record(job, outcome("k1"))
        store.finish_run(run)
        assert store.finished_job("k1") == job
        assert len(store.results_of_run(run)) == 4
        assert np.array_equal(
            store.flags_of_job(job)[("clean", "clean", None)], np.arange(37) % 3 == 0
        )
        (jobrow,) = store.jobs_of_run(run)
        assert jobrow["status"] == "done" and jobrow["warnings"] == ["w"]
        assert store.resolve_run("latest", "suite") == run


def test_job_seconds_counts_every_sitting_of_a_job_recorded_by_older_code(tmp_path):
    """A job resumed under code before 4bd0e5c recorded its last sitting (here 80 s) as its
    wall time; its training row (749 s) held the sum, and its cost is at least that."""

    def with_training(key: str, wall: float, training: float) -> JobOutcome:
        o = outcome(key)
        o.wall_seconds = wall
        o.results.append({"family": "train", "name": "wall_seconds", "parameter": None,
                          "metric": "seconds", "value": training})  # fmt: skip
        return o

    with Store.open(tmp_path / "s.sqlite") as store:
        run = store.start_run("suite", "h", "toml", {})
        resumed = store.add_job(run, "k1", {"a": 1}, LABELS, "pending")
        whole = store.add_job(run, "k2", {"a": 2}, {**LABELS, "seed": 1}, "pending")
        store.record(resumed, with_training("k1", 80.0, 749.0))
        store.record(whole, with_training("k2", 826.0, 749.0))
        seconds = {j["id"]: (j["wall_seconds"], j["job_seconds"]) for j in store.jobs_of_run(run)}
        assert seconds == {resumed: (80.0, 749.0), whole: (826.0, 826.0)}
        assert sorted(s for _, s in store.finished_job_seconds()) == [749.0, 826.0]


def test_a_failure_inside_record_leaves_nothing_behind(tmp_path):
    with Store.open(tmp_path / "s.sqlite") as store:
        run = store.start_run("suite", "h", "toml", {})
        job = store.add_job(run, "k1", {}, LABELS, "running")
        bad = outcome("k1")
        bad.flags.append(("noise", "x", None, None, "running"))  # cannot be packed: raises
        with pytest.raises(TypeError):
            store.record(job, bad)
        assert store.results_of_run(run) == []
        assert store.flags_of_job(job) == {}
        assert store.jobs_of_run(run)[0]["status"] == "running"


def _writer(path: str, worker: int, count: int) -> None:
    with Store.open(path) as store:
        run = store.start_run(f"suite{worker}", "h", "toml", {})
        for i in range(count):
            key = f"w{worker}-{i}"
            job = store.add_job(run, key, {}, LABELS, "running")
            store.record(job, outcome(key, n=20, value=i / count))
        store.finish_run(run)


def test_two_processes_writing_one_store_at_once(tmp_path):
    path = str(tmp_path / "shared.sqlite")
    Store.open(path).close()
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(path, w, 40)) for w in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
        assert p.exitcode == 0
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert conn.execute("SELECT COUNT(*) FROM jobs WHERE status = 'done'").fetchone()[0] == 80
    assert conn.execute("SELECT COUNT(*) FROM results").fetchone()[0] == 80 * 21
    assert conn.execute("SELECT COUNT(DISTINCT key) FROM jobs").fetchone()[0] == 80


def test_results_under_test_time_statistics_are_kept_apart_from_the_running_ones(tmp_path):
    with Store.open(tmp_path / "s.sqlite") as store:
        run = store.start_run("suite", "h", "toml", {})
        job = store.add_job(run, "k1", {}, LABELS, "running")
        adapted = outcome("k1")
        adapted.results += [{**r, "value": 0.9, "statistics": "test-batch 8"}
                            for r in adapted.results]  # fmt: skip
        adapted.flags.append(("clean", "clean", None, np.ones(37, bool), "test-batch 8"))
        store.record(job, adapted)
        running = store.results_of_run(run)
        assert len(running) == 4 and {r["statistics"] for r in running} == {"running"}
        assert 0.9 not in {r["value"] for r in running}  # the default never mixes the two
        every = store.results_of_run(run, statistics=None)
        assert len(every) == 8
        assert [r["value"] for r in every if r["statistics"] == "test-batch 8"] == [0.9] * 4
        assert store.flags_of_job(job, "test-batch 8")[("clean", "clean", None)].all()
        assert not store.flags_of_job(job)[("clean", "clean", None)].all()
        exported = store.export_run(run, tmp_path / "out.sqlite")
    with Store.open(exported, read_only=True) as out:
        assert len(out.results_of_run(run, statistics=None)) == 8


def test_a_version_3_store_is_read_as_running_statistics_and_upgraded_for_writing(tmp_path):
    path = tmp_path / "old.sqlite"
    with Store.open(path) as store:
        run = store.start_run("suite", "h", "toml", {})
        store.record(store.add_job(run, "k1", {}, LABELS, "running"), outcome("k1"))
    conn = sqlite3.connect(path)  # back to version 3: no statistics column
    for table in ("results", "flags"):
        conn.execute(f"ALTER TABLE {table} DROP COLUMN statistics")
    conn.execute("UPDATE meta SET value = '3' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    with Store.open(path, read_only=True) as old:
        assert old.schema_version == 3
        rows = old.results_of_run(run, statistics=None)
        assert len(rows) == 4 and {r["statistics"] for r in rows} == {"running"}
        assert len(old.flags_of_job(1)) == 1
        old.export_run(run, tmp_path / "exported.sqlite")  # into a version-4 store
    with Store.open(tmp_path / "exported.sqlite", read_only=True) as new:
        assert len(new.results_of_run(run)) == 4
    with Store.open(path) as upgraded:
        assert upgraded.schema_version == 4
        assert {r["statistics"] for r in upgraded.results_of_run(run, None)} == {"running"}


def test_schema_version_mismatch_is_a_clear_error(tmp_path):
    path = tmp_path / "s.sqlite"
    Store.open(path).close()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    with pytest.raises(RobustBenchError, match="schema version 99, written by a newer"):
        Store.open(path)


def test_a_foreign_sqlite_file_or_garbage_is_refused(tmp_path):
    foreign = tmp_path / "other.sqlite"
    conn = sqlite3.connect(foreign)
    conn.execute("CREATE TABLE people (name TEXT)")
    conn.commit()
    conn.close()
    with pytest.raises(RobustBenchError, match="not a robustbench-norm store"):
        Store.open(foreign)
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(RobustBenchError, match="not a robustbench-norm store"):
        Store.open(garbage)
    with pytest.raises(RobustBenchError, match="does not exist"):
        Store.open(tmp_path / "missing.sqlite", create=False)


def test_export_run_copies_exactly_one_run(tmp_path):
    with Store.open(tmp_path / "s.sqlite") as store:
        runs = []
        for r in range(2):
            run = store.start_run("suite", "h", "toml", {})
            job = store.add_job(run, f"k{r}", {}, LABELS, "running")
            store.record(job, outcome(f"k{r}", value=0.1 * (r + 1)))
            store.finish_run(run)
            runs.append(run)
        dest = store.export_run(runs[1], tmp_path / "published.sqlite")
        # a run that reused a job brings the run that computed it along (its provenance)
        third = store.start_run("suite", "h", "toml", {})
        store.link(third, "k0", store.finished_job("k0"))
        store.finish_run(third)
        store.export_run(third, tmp_path / "reused.sqlite")
    with Store.open(tmp_path / "reused.sqlite") as pub:
        assert [r["id"] for r in pub.runs()] == [runs[0], third]
        assert pub.resolve_run("latest") == third
    with Store.open(dest) as pub:
        assert [r["id"] for r in pub.runs()] == [runs[1]]
        rows = pub.results_of_run(runs[1])
        assert {r["key"] for r in rows} == {"k1"} and len(rows) == 4
    assert not (tmp_path / "published.sqlite-wal").exists()


def test_read_only_open_leaves_a_published_store_byte_for_byte(tmp_path):
    with Store.open(tmp_path / "s.sqlite") as store:
        run = store.start_run("suite", "h", "toml", {})
        store.record(store.add_job(run, "k", {}, LABELS, "running"), outcome("k"))
        store.finish_run(run)
        published = store.export_run(run, tmp_path / "published.sqlite")
    before = published.read_bytes()
    with Store.open(published, read_only=True) as pub:
        assert pub.resolve_run("latest") == run
        assert len(pub.results_of_run(run)) == 4
    assert published.read_bytes() == before
    with pytest.raises(RobustBenchError, match="does not exist"):
        Store.open(tmp_path / "nope.sqlite", read_only=True)
