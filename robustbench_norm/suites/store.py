"""The results store: one SQLite file holding runs, jobs, tidy results and per-example flags.

* ``runs``: one execution of a suite, with provenance (git sha and dirty flag, package
  versions, torch/CUDA/cuDNN, device, host).
* ``jobs``: one trained-and-evaluated model (spec JSON and key, status pending, running, done,
  failed or diverged; error text; training log). A finished job is reused by any later run of
  the same spec and code.
* ``run_jobs``: which jobs make up a run (a job can belong to many runs).
* ``results``: (job, family, name, parameter, metric, value, statistics) rows; ``statistics`` is
  ``running`` or the test-time statistics setting the row was measured under
  (``test-batch 500``, see evaluate.BatchStatistics).
* ``flags``: per-example correctness per condition and statistics (bit-packed, zlib), for
  per-example analyses.
* ``fingerprints``: per run and norm label, the layer's fingerprint (``norms/fingerprint.py``),
  so a published run carries the exact identity of the layers it measured.

A job's results and its status change are committed in one transaction: they appear whole or
not at all. WAL mode plus a busy timeout and retries let several processes write one store at
once. The schema is versioned: a store of an older version is upgraded when opened for writing
and read as it is when opened read-only; a newer one is refused with a clear message.
"""

from __future__ import annotations

import json
import os
import sqlite3
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from robustbench_norm.errors import RobustBenchError
from robustbench_norm.specs import RUNNING
from robustbench_norm.suites.sqlite_io import storage_error
from robustbench_norm.suites.store_file import (  # noqa: F401  (re-exported)
    DEFAULT_STORE,
    LOCK_NOTICE,
    LOCK_TIMEOUT,
    StoreFile,
)


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def pack_flags(correct: np.ndarray) -> bytes:
    return zlib.compress(np.packbits(np.asarray(correct, dtype=bool)).tobytes(), 9)


def unpack_flags(blob: bytes, count: int) -> np.ndarray:
    bits = np.frombuffer(zlib.decompress(blob), dtype=np.uint8)
    return np.unpackbits(bits)[:count].astype(bool)


#: What a finished job cost, in seconds: its recorded wall time, or its training time summed over
#: every sitting (the ``train``/``wall_seconds`` row) where that is larger. Code before 4bd0e5c
#: (2026-11-30) recorded only a resumed job's last sitting as its wall time; its training row
#: always held the sum, so this is a lower bound there and exact for every job since.
_JOB_SECONDS = (
    "MAX(COALESCE(j.wall_seconds, 0), COALESCE((SELECT MAX(t.value) FROM results t WHERE "
    "t.job_id = j.id AND t.family = 'train' AND t.name = 'wall_seconds'), 0))"
)


@dataclass
class JobOutcome:
    """What executing a job produced; written to the store in one transaction."""

    key: str
    status: str
    error: str | None
    checkpoint: str | None
    wall_seconds: float
    train_log: dict
    stability: list
    #: tidy rows: family, name, parameter, metric, value
    results: list[dict[str, Any]]
    #: (family, name, parameter, correct, statistics) per condition
    flags: list[tuple[str, str, float | None, np.ndarray]]
    #: sanity-check findings of the evaluations (e.g. an attack over its budget)
    warnings: list[str] = field(default_factory=list)


class Store(StoreFile):
    """A results store: runs, jobs and their results. Open with :meth:`open` (creates the file
    if needed)."""

    # -- runs -----------------------------------------------------------------------------
    def start_run(self, suite: str, suite_hash: str, suite_toml: str, provenance: dict) -> int:
        with self.transaction() as c:
            cur = c.execute(
                "INSERT INTO runs (suite, suite_hash, suite_toml, status, started, provenance) "
                "VALUES (?, ?, ?, 'running', ?, ?)",
                (suite, suite_hash, suite_toml, now(), json.dumps(provenance)),
            )
            return int(cur.lastrowid)

    def resumable_run(self, suite: str, suite_hash: str) -> int | None:
        """The latest unfinished run of exactly this suite file, if any."""
        row = self.conn.execute(
            "SELECT id FROM runs WHERE suite = ? AND suite_hash = ? AND status != 'finished' "
            "ORDER BY id DESC LIMIT 1",
            (suite, suite_hash),
        ).fetchone()
        return None if row is None else int(row["id"])

    def finish_run(self, run_id: int, status: str = "finished") -> None:
        with self.transaction() as c:
            c.execute(
                "UPDATE runs SET status = ?, finished = ? WHERE id = ?", (status, now(), run_id)
            )

    def run(self, run_id: int) -> dict:
        row = self.conn.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise RobustBenchError(f"store {self.path} has no run {run_id}")
        out = dict(row)
        out["provenance"] = json.loads(out["provenance"])
        return out

    def runs(self, suite: str | None = None) -> list[dict]:
        query = "SELECT id, suite, status, started, finished FROM runs"
        args: tuple = ()
        if suite is not None:
            query += " WHERE suite = ?"
            args = (suite,)
        return [dict(r) for r in self.conn.execute(query + " ORDER BY id", args)]

    def resolve_run(self, ref: str | int, suite: str | None = None) -> int:
        """A run id from ``ref``: an id, ``latest`` (the newest run, optionally of ``suite``)
        or ``previous`` (the one before it). A run still in progress — or cut off and never
        resumed — is refused: its numbers are partial."""
        if isinstance(ref, int) or str(ref).isdigit():
            run = self.run(int(ref))
        else:
            wanted = {"latest": 1, "previous": 2}.get(str(ref))
            if wanted is None:
                raise RobustBenchError(f"run {ref!r} must be a run id, 'latest' or 'previous'")
            runs = self.runs(suite)
            if len(runs) < wanted:
                where = f" of suite {suite!r}" if suite else ""
                raise RobustBenchError(
                    f"store {self.path} has {len(runs)} run(s){where}; {ref!r} needs {wanted}"
                )
            run = runs[-wanted]
        if run["status"] == "running":
            raise RobustBenchError(
                f"run {run['id']} ({run['suite']}) in {self.path} is unfinished (started "
                f"{run['started']}); rerun the same `run` command to complete it, or name a "
                "finished run by id (robustbench-norm list runs)"
            )
        return int(run["id"])

    # -- jobs -----------------------------------------------------------------------------
    def finished_job(self, key: str) -> int | None:
        row = self.conn.execute(
            "SELECT id FROM jobs WHERE key = ? AND status IN ('done', 'diverged') "
            "ORDER BY id DESC LIMIT 1",
            (key,),
        ).fetchone()
        return None if row is None else int(row["id"])

    def run_job(self, run_id: int, key: str) -> sqlite3.Row | None:
        return self.conn.execute(
            "SELECT j.* FROM run_jobs r JOIN jobs j ON j.id = r.job_id "
            "WHERE r.run_id = ? AND r.key = ?",
            (run_id, key),
        ).fetchone()

    def link(self, run_id: int, key: str, job_id: int, replacing: int | None = None) -> None:
        """Make ``job_id`` the run's job for ``key``. ``replacing``: this run's own unstarted
        row for the key (another process computed it first), deleted unless something else
        uses it."""
        with self.transaction() as c:
            c.execute("INSERT OR REPLACE INTO run_jobs VALUES (?, ?, ?)", (run_id, key, job_id))
            if replacing is not None and replacing != job_id:
                c.execute(
                    "DELETE FROM jobs WHERE id = ? AND status IN ('pending', 'running') AND id "
                    "NOT IN (SELECT job_id FROM run_jobs)",
                    (replacing,),
                )

    def add_job(self, run_id: int, key: str, spec: dict, labels: dict, status: str) -> int:
        """A new job row (pending or running), linked to ``run_id``."""
        with self.transaction() as c:
            cur = c.execute(
                "INSERT INTO jobs (key, run_id, spec, model, norm, batch_size, seed, regularizer,"
                " status, created, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    key,
                    run_id,
                    json.dumps(spec),
                    labels["model"],
                    labels["norm"],
                    labels["batch_size"],
                    labels["seed"],
                    labels["regularizer"],
                    status,
                    now(),
                    now(),
                ),
            )
            job_id = int(cur.lastrowid)
            c.execute("INSERT OR REPLACE INTO run_jobs VALUES (?, ?, ?)", (run_id, key, job_id))
            return job_id

    def set_status(self, job_id: int, status: str) -> None:
        with self.transaction() as c:
            c.execute(
                "UPDATE jobs SET status = ?, updated = ? WHERE id = ?", (status, now(), job_id)
            )

    def record(self, job_id: int, outcome: JobOutcome) -> None:
        """Write a job's outcome: status, results and flags, all in one transaction."""
        with self.transaction() as c:
            c.execute("DELETE FROM results WHERE job_id = ?", (job_id,))
            c.execute("DELETE FROM flags WHERE job_id = ?", (job_id,))
            c.executemany(
                "INSERT INTO results VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (job_id, r["family"], r["name"], r["parameter"], r["metric"], r["value"],
                     r.get("statistics", RUNNING))
                    for r in outcome.results
                ],
            )  # fmt: skip
            c.executemany(
                "INSERT INTO flags VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (job_id, fam, name, param, len(correct), pack_flags(correct), statistics)
                    for fam, name, param, correct, statistics in outcome.flags
                ],
            )
            c.execute(
                "UPDATE jobs SET status = ?, error = ?, checkpoint = ?, train_log = ?, "
                "stability = ?, warnings = ?, wall_seconds = ?, updated = ? WHERE id = ?",
                (
                    outcome.status,
                    outcome.error,
                    outcome.checkpoint,
                    json.dumps(outcome.train_log),
                    json.dumps(outcome.stability),
                    json.dumps(outcome.warnings),
                    outcome.wall_seconds,
                    now(),
                    job_id,
                ),
            )

    def export_run(self, run_id: int, dest: str | Path) -> Path:
        """Copy one run (its jobs, results and flags) into a new, compact store file: what a
        published leaderboard ships so that later runs can be checked against it."""
        self.run(run_id)
        dest = Path(dest)
        for suffix in ("", "-wal", "-shm"):
            Path(str(dest) + suffix).unlink(missing_ok=True)
        Store.open(dest).close()
        self.conn.execute("ATTACH DATABASE ? AS out", (str(dest),))
        try:
            jobs = "SELECT job_id FROM run_jobs WHERE run_id = ?"
            with self.transaction() as c:
                # the run, plus the earlier runs that computed jobs it reused (their provenance)
                c.execute(
                    f"INSERT INTO out.runs SELECT * FROM runs WHERE id = ? OR id IN "
                    f"(SELECT run_id FROM jobs WHERE id IN ({jobs}))",
                    (run_id, run_id),
                )
                c.execute(
                    f"INSERT INTO out.jobs SELECT * FROM jobs WHERE id IN ({jobs})", (run_id,)
                )
                c.execute(
                    "INSERT INTO out.run_jobs SELECT * FROM run_jobs WHERE run_id = ?", (run_id,)
                )
                if self.schema_version >= 2:
                    c.execute(
                        "INSERT INTO out.fingerprints SELECT * FROM fingerprints WHERE run_id = ?",
                        (run_id,),
                    )
                for table in ("results", "flags"):
                    columns = ", ".join(self.columns(table))  # an older store has fewer
                    c.execute(
                        f"INSERT INTO out.{table} ({columns}) SELECT {columns} FROM {table} "
                        f"WHERE job_id IN ({jobs})",
                        (run_id,),
                    )
        finally:
            self.conn.execute("DETACH DATABASE out")
        return _self_contained(dest)

    def export_all(self, dest: str | Path) -> Path:
        """Copy the whole store, every run, into a compact file: a nightly's history, or the
        snapshot of a store another process is writing (one consistent read; works read-only
        too). ``dest`` is replaced only once the copy is whole, and its old journal with it."""
        dest = Path(dest)
        staging = dest.with_name(f".{dest.name}.partial")
        try:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{staging}{suffix}").unlink(missing_ok=True)
            self.conn.execute("VACUUM INTO ?", (str(staging),))
            _self_contained(staging)
            for suffix in ("-wal", "-shm"):  # an old dest's journal must not replay onto the new
                Path(f"{dest}{suffix}").unlink(missing_ok=True)
            os.replace(staging, dest)
        except sqlite3.Error as e:
            raise storage_error(staging, e) from None
        finally:
            staging.unlink(missing_ok=True)
        return dest

    # -- fingerprints ---------------------------------------------------------------------
    def save_fingerprints(self, run_id: int, prints: dict[str, dict]) -> None:
        with self.transaction() as c:
            c.executemany(
                "INSERT OR REPLACE INTO fingerprints VALUES (?, ?, ?)",
                [(run_id, label, json.dumps(fp)) for label, fp in prints.items()],
            )

    def fingerprints_of_run(self, run_id: int) -> dict[str, dict]:
        """Label → fingerprint; empty for runs made before fingerprints existed."""
        if self.schema_version < 2:
            return {}
        rows = self.conn.execute(
            "SELECT label, fingerprint FROM fingerprints WHERE run_id = ? ORDER BY label",
            (run_id,),
        )
        return {r["label"]: json.loads(r["fingerprint"]) for r in rows}

    # -- reading ----------------------------------------------------------------------------
    def columns(self, table: str) -> list[str]:
        return [r["name"] for r in self.conn.execute(f"PRAGMA table_info({table})")]

    def jobs_of_run(self, run_id: int) -> list[dict]:
        """The run's jobs, each with ``job_seconds`` (see :data:`_JOB_SECONDS`) beside the
        recorded ``wall_seconds``."""
        rows = self.conn.execute(
            f"SELECT j.*, {_JOB_SECONDS} AS job_seconds FROM run_jobs r JOIN jobs j "
            "ON j.id = r.job_id WHERE r.run_id = ? ORDER BY j.id",
            (run_id,),
        ).fetchall()
        out = []
        for r in rows:
            d = dict(r)
            d["spec"] = json.loads(d["spec"])
            d["train_log"] = json.loads(d["train_log"]) if d["train_log"] else {}
            d["stability"] = json.loads(d["stability"]) if d["stability"] else []
            d["warnings"] = json.loads(d["warnings"]) if d["warnings"] else []
            out.append(d)
        return out

    def finished_job_seconds(self) -> list[tuple[dict, float]]:
        """(spec, seconds) of every finished job with a known cost (see :data:`_JOB_SECONDS`):
        what ``plan`` prices jobs by."""
        rows = self.conn.execute(
            f"SELECT spec, {_JOB_SECONDS} AS seconds FROM jobs j WHERE status = 'done'"
        ).fetchall()
        return [(json.loads(r["spec"]), r["seconds"]) for r in rows if r["seconds"] > 0]

    def results_of_run(self, run_id: int, statistics: str | None = RUNNING) -> list[dict]:
        """The run's result rows measured under ``statistics`` (None: under every setting; a
        row's ``statistics`` says which)."""
        # a store older than version 4 (opened read-only) measured everything with running ones
        column = "x.statistics" if self.schema_version >= 4 else f"'{RUNNING}'"
        rows = self.conn.execute(
            "SELECT j.id AS job_id, j.key, j.model, j.norm, j.batch_size, j.seed, j.regularizer,"
            f" j.status, x.family, x.name, x.parameter, x.metric, x.value, {column} AS statistics"
            " FROM run_jobs r JOIN jobs j ON j.id = r.job_id JOIN results x ON x.job_id = j.id "
            f"WHERE r.run_id = ? AND (? IS NULL OR {column} = ?) ORDER BY j.id",
            (run_id, statistics, statistics),
        ).fetchall()
        return [dict(r) for r in rows]

    def flags_of_job(
        self, job_id: int, statistics: str = RUNNING
    ) -> dict[tuple[str, str, float | None], np.ndarray]:
        column = "statistics" if self.schema_version >= 4 else f"'{RUNNING}'"
        rows = self.conn.execute(
            "SELECT family, name, parameter, count, correct FROM flags WHERE job_id = ? AND "
            f"{column} = ?",
            (job_id, statistics),
        )
        return {
            (r["family"], r["name"], r["parameter"]): unpack_flags(r["correct"], r["count"])
            for r in rows
        }


def _self_contained(path: Path) -> Path:
    """One file with no -wal beside it, compacted: what a leaderboard ships."""
    out = sqlite3.connect(path, isolation_level=None)
    out.execute("PRAGMA journal_mode = DELETE")
    out.execute("VACUUM")
    out.close()
    return path
