"""Job claims: two processes sharing a store never compute the same job twice.

Before a process computes a job it claims the job's key in the store's ``claims`` table, in one
write transaction, so exactly one claimant wins. Another process that finds the key claimed
skips it for now, does its other work, and then waits until the holder's result appears (it
links that result) or the claim goes stale (it takes the job over). A claim is stale when its
process is gone: on the same host that is checked directly (the pid no longer exists); on
another host, when its heartbeat, refreshed every few seconds by a thread of the holder, is
older than ``stale_after`` seconds.

Results still reach the store one job per transaction, so a process killed mid-job leaves a
stale claim, never half a result.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import threading
import time
import uuid
from contextlib import suppress
from dataclasses import dataclass

from robustbench_norm.suites.store import Store

#: seconds without a heartbeat after which another host's claim is considered abandoned
STALE_AFTER = 120.0
#: claim keys that mark a run as executing (``run:<id>:<owner>``); job keys are hex digests
RUN_KEY = "run:"


def live_runs(store: Store, stale_after: float = STALE_AFTER) -> set[int]:
    """Ids of the runs a live process is executing now (see :meth:`JobClaims.hold_run`). A run
    marked "running" that is not among them was interrupted."""
    host = socket.gethostname()
    try:
        rows = store.conn.execute("SELECT * FROM claims WHERE key LIKE ?", (f"{RUN_KEY}%",))
        return {int(r["key"].split(":")[1]) for r in rows if _alive(r, host, stale_after)}
    except sqlite3.OperationalError:  # a store from before claims existed
        return set()


def _alive(row: sqlite3.Row, host: str, stale_after: float) -> bool:
    if time.time() - row["heartbeat"] > stale_after:
        return False
    if row["host"] != host:
        return True
    try:
        os.kill(row["pid"], 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


@dataclass(frozen=True)
class Holder:
    """Who holds a claim, for messages."""

    host: str
    pid: int

    def __str__(self) -> str:
        return f"pid {self.pid} on {self.host}"


class JobClaims:
    """This process's claims on job keys of one store."""

    def __init__(self, store: Store, stale_after: float = STALE_AFTER) -> None:
        self.store = store
        self.stale_after = stale_after
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.owner = f"{self.host}:{self.pid}:{uuid.uuid4().hex[:8]}"
        self._held: set[str] = set()
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    # -- claiming ---------------------------------------------------------------------------
    def claim(self, key: str) -> Holder | None:
        """Claim ``key``; None on success, else the live process that holds it."""
        with self.store.transaction() as c:
            row = c.execute("SELECT * FROM claims WHERE key = ?", (key,)).fetchone()
            if row is not None and row["owner"] != self.owner and self._alive(row):
                return Holder(row["host"], row["pid"])
            c.execute(
                "INSERT OR REPLACE INTO claims VALUES (?, ?, ?, ?, ?)",
                (key, self.owner, self.host, self.pid, time.time()),
            )
        self._held.add(key)
        return None

    def release(self, key: str) -> None:
        with self.store.transaction() as c:
            c.execute("DELETE FROM claims WHERE key = ? AND owner = ?", (key, self.owner))
        self._held.discard(key)

    def release_all(self) -> None:
        if self._held:
            with self.store.transaction() as c:
                c.execute("DELETE FROM claims WHERE owner = ?", (self.owner,))
            self._held.clear()

    def hold_run(self, run_id: int) -> None:
        """Mark ``run_id`` as being executed by this process (until :meth:`release_all`), so
        that ``list runs`` can tell a run in progress from one whose process died. Each process
        holds its own key: several may execute one run. Dead processes' marks are cleared."""
        with self.store.transaction() as c:
            rows = c.execute("SELECT * FROM claims WHERE key LIKE ?", (f"{RUN_KEY}{run_id}:%",))
            for row in rows.fetchall():
                if not self._alive(row):
                    c.execute("DELETE FROM claims WHERE key = ?", (row["key"],))
        self.claim(f"{RUN_KEY}{run_id}:{self.owner}")

    def _alive(self, row: sqlite3.Row) -> bool:
        return _alive(row, self.host, self.stale_after)

    # -- heartbeat ----------------------------------------------------------------------------
    def __enter__(self) -> JobClaims:
        """Start the heartbeat: a thread with its own connection keeps this process's claims
        fresh while the main thread is busy training."""
        self._stop.clear()
        self._beat = threading.Thread(target=self._heartbeat, name="claims-heartbeat", daemon=True)
        self._beat.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._beat is not None:
            self._beat.join()
        with suppress(Exception):  # a failing store: the claims go stale on their own
            self.release_all()

    def _heartbeat(self) -> None:
        interval = max(0.5, self.stale_after / 8)
        store = None
        try:
            while not self._stop.wait(interval):
                if store is None:
                    store = Store.open(self.store.path, lock_timeout=interval)
                try:
                    with store.transaction() as c:
                        c.execute(
                            "UPDATE claims SET heartbeat = ? WHERE owner = ?",
                            (time.time(), self.owner),
                        )
                except Exception:  # a busy store: the next beat tries again
                    continue
        finally:
            if store is not None:
                store.close()
