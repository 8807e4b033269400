"""Nights: a suite run every night, each night a fresh draw, every night kept.

**Fresh seeds.** Training on one machine is deterministic: the same seeds and code give the same
models bit for bit, and the store would reuse them, so a night of unchanged code would add
nothing. Night *n* therefore trains the suite's seeds shifted by *n* × their span (seeds
``[0, 1]``: night 0 trains 0 and 1, night 1 trains 2 and 3, …). Every night of unchanged code
is then another draw from the same distribution, which is what lets a pooled baseline grow
(``reporting/pool.py``). The night's number comes from the history, so a night cut off and
started again trains the same seeds and its run resumes.

**The history is the suite's published store.** Each night's run (jobs, results, flags,
fingerprints, provenance) is copied in under new ids, and a ``nights`` table says, per run:
the night's number, date and commit, the check's verdict and the runs its baseline pooled. A
store without that table is an ordinary store; the table is created by the first night.
"""

from __future__ import annotations

import json
import re
import tempfile
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path

from robustbench_norm.errors import RobustBenchError
from robustbench_norm.suites.store import Store, now
from robustbench_norm.suites.suite import Suite

NIGHTS_TABLE = """CREATE TABLE IF NOT EXISTS nights (
    run_id INTEGER PRIMARY KEY REFERENCES runs(id),
    suite TEXT NOT NULL,
    night INTEGER NOT NULL,
    date TEXT NOT NULL,
    commit_sha TEXT,
    verdict TEXT NOT NULL,
    baseline TEXT NOT NULL,
    summary TEXT NOT NULL
)"""

#: verdicts of nights that may serve as a baseline: a passed check, the first night of its kind
#: (nothing to compare with), or an undecided one (no regression shown, too few runs to rule
#: one out: exactly what pooling more nights resolves; left out, a small suite's pool would
#: never grow). A regression, an incomplete night or one that is not comparable is kept in the
#: history but never trusted.
BASELINE_VERDICTS = ("pass", "first", "undecided")


@dataclass(frozen=True)
class Night:
    run_id: int
    suite: str
    night: int
    date: str
    commit: str | None
    verdict: str
    #: run ids (in the history store) whose runs the night's check pooled as its baseline
    baseline: tuple[int, ...]
    #: the check's summary (``nightly --json``'s document, without the history)
    summary: dict

    @property
    def trusted(self) -> bool:
        return self.verdict in BASELINE_VERDICTS


def night_seeds(seeds: tuple[int, ...] | list[int], night: int) -> tuple[int, ...]:
    """The seeds night ``night`` trains: the suite's, shifted by ``night`` × their span."""
    if night < 0:
        raise RobustBenchError(f"night {night} must be ≥ 0")
    span = max(seeds) - min(seeds) + 1
    return tuple(s + night * span for s in seeds)


def night_suite(suite: Suite, night: int) -> Suite:
    """The suite as night ``night`` runs it: the same jobs on that night's seeds. Its text (the
    leaderboard's ``suite.toml``; its hash finds a resumed run) has the night's seeds, so that
    running it again reproduces the night."""
    seeds = sorted({j.train.seed for j in suite.jobs})
    shifted = dict(zip(seeds, night_seeds(seeds, night), strict=True))
    jobs = tuple(replace(j, train=replace(j.train, seed=shifted[j.train.seed])) for j in suite.jobs)
    return replace(suite, jobs=jobs, text=_night_text(suite.text, night, list(shifted.values())))


def _night_text(text: str, night: int, seeds: list[int]) -> str:
    """The suite text with its top-level ``seeds = […]`` line set to the night's seeds (left
    as it is, with a note, where that line cannot be found on one line)."""
    note = f"# nightly: night {night}, seeds {seeds} (robustbench-norm nightly)"
    line = re.compile(r"^seeds\s*=\s*\[[^\]\n]*\][^\n]*$", re.MULTILINE)
    rewritten, count = line.subn(f"seeds = {seeds}    {note}", text, count=1)
    try:
        if count and tomllib.loads(rewritten).get("seeds") == seeds:
            return rewritten
    except tomllib.TOMLDecodeError:
        pass
    return text.rstrip("\n") + f"\n{note}\n"


def has_nights(store: Store) -> bool:
    row = store.conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'nights'"
    ).fetchone()
    return row is not None


def nights_of(store: Store, suite: str | None = None) -> list[Night]:
    """The store's nights (of ``suite``), oldest first; empty for an ordinary store."""
    if not has_nights(store):
        return []
    rows = store.conn.execute(
        "SELECT * FROM nights WHERE (? IS NULL OR suite = ?) ORDER BY night, run_id",
        (suite, suite),
    ).fetchall()
    return [
        Night(
            r["run_id"],
            r["suite"],
            r["night"],
            r["date"],
            r["commit_sha"],
            r["verdict"],
            tuple(json.loads(r["baseline"])),
            json.loads(r["summary"]),
        )
        for r in rows
    ]


def next_night(history: Store | None, suite: str) -> int:
    """The number the next night of ``suite`` gets: one more than the last one kept."""
    kept = nights_of(history, suite) if history is not None else []
    return kept[-1].night + 1 if kept else 0


def copy_run(src: Store, run_id: int, dest: Store) -> int:
    """Copy one finished run of ``src`` (its jobs, results, flags, fingerprints and the runs
    that computed jobs it reused) into ``dest`` under new ids, in one transaction; the new id
    of the run."""
    with tempfile.TemporaryDirectory() as tmp:
        exported = src.export_run(run_id, Path(tmp) / "run.sqlite")
        dest.conn.execute("ATTACH DATABASE ? AS night", (str(exported),))
        try:
            with dest.transaction() as c:
                run_offset = c.execute("SELECT coalesce(max(id), 0) FROM runs").fetchone()[0]
                job_offset = c.execute("SELECT coalesce(max(id), 0) FROM jobs").fetchone()[0]
                shift = {"id": None, "run_id": run_offset, "job_id": job_offset}
                for table, own in (("runs", run_offset), ("jobs", job_offset)):
                    _copy_table(c, dest, table, {**shift, "id": own})
                for table in ("run_jobs", "fingerprints", "results", "flags"):
                    _copy_table(c, dest, table, shift)
        finally:
            dest.conn.execute("DETACH DATABASE night")
    return run_id + run_offset


def _copy_table(c, dest: Store, table: str, shift: dict[str, int | None]) -> None:
    """INSERT … SELECT with every id column moved by its offset; columns only the newer side
    has keep their defaults."""
    theirs = {r["name"] for r in c.execute(f"PRAGMA night.table_info({table})")}
    columns = [name for name in dest.columns(table) if name in theirs]
    selected = [
        f"{name} + {shift[name]}" if shift.get(name) is not None else name for name in columns
    ]
    c.execute(
        f"INSERT INTO main.{table} ({', '.join(columns)}) "
        f"SELECT {', '.join(selected)} FROM night.{table}"
    )


def record_night(
    history: Store,
    run_id: int,
    suite: str,
    night: int,
    verdict: str,
    baseline: tuple[int, ...],
    summary: dict,
    commit: str | None,
) -> None:
    """Add a copied run to the history's ``nights`` table."""
    with history.transaction() as c:
        c.execute(NIGHTS_TABLE)
        c.execute(
            "INSERT INTO nights VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                run_id,
                suite,
                night,
                now(),
                commit,
                verdict,
                json.dumps(list(baseline)),
                json.dumps(summary, sort_keys=True),
            ),
        )
