"""An SQLite file as a store: opening it safely, waiting for its write lock, upgrading its
schema. What the file holds, and the records written to it, are :mod:`store`'s concern.

Opening checks what a user can get wrong or a disk can break — a folder or a missing file given
as the store, another program's SQLite file, damaged pages (``PRAGMA quick_check``), a newer
schema, a read-only file system — and answers each with one message naming the file and the
fix. A read-only open never writes to the file, not even its journal mode.
"""

from __future__ import annotations

import sqlite3
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Self

from robustbench_norm.errors import RobustBenchError, StorageError
from robustbench_norm.suites.sqlite_io import check_writable, connect_read_only, storage_error
from robustbench_norm.suites.store_schema import MIGRATIONS, SCHEMA, SCHEMA_VERSION

DEFAULT_STORE = Path("results") / "robustbench.sqlite"
#: seconds a writer waits for another process's write lock before it gives up
LOCK_TIMEOUT = 600.0
#: seconds of waiting before the wait is announced
LOCK_NOTICE = 5.0


class StoreFile:
    """A connection to a store file, its transactions and its schema version."""

    def __init__(self, path: Path, conn: sqlite3.Connection, lock_timeout: float) -> None:
        self.path = path
        self.conn = conn
        self.schema_version = SCHEMA_VERSION
        self.lock_timeout = lock_timeout

    @classmethod
    def open(
        cls,
        path: str | Path = DEFAULT_STORE,
        create: bool = True,
        read_only: bool = False,
        lock_timeout: float = LOCK_TIMEOUT,
    ) -> Self:
        """Open (or create) a store. ``read_only`` never writes to the file, not even its
        journal mode: a published baseline stays byte-for-byte as committed, and a store on a
        read-only file system can still be listed, reported and checked.

        Every fault comes back as one :class:`StorageError` naming the file and the fix: a
        missing or unwritable folder, a read-only file system, damaged pages (``PRAGMA
        quick_check`` runs on every open; milliseconds for a store of a few MB)."""
        path = Path(path)
        if path.is_dir():
            raise StorageError(f"store {path} is a folder; pass --store a .sqlite file path")
        if not path.exists() and (not create or read_only):
            raise RobustBenchError(f"store {path} does not exist; run a suite first (--store)")
        if read_only:
            conn = connect_read_only(path)
        else:
            check_writable(path)
            try:
                conn = sqlite3.connect(path, timeout=1.0, isolation_level=None)
            except sqlite3.Error as e:
                raise storage_error(path, e) from None
        conn.row_factory = sqlite3.Row
        store = cls(path, conn, lock_timeout)
        try:
            conn.execute("PRAGMA busy_timeout = 1000")  # waits are counted in transaction()
            store._check_integrity()
            if not read_only:
                conn.execute("PRAGMA foreign_keys = ON")
                if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                    conn.execute("PRAGMA journal_mode = WAL")
            store._migrate(read_only)
        except sqlite3.Error as e:
            conn.close()
            raise storage_error(path, e) from None
        except BaseException:
            conn.close()
            raise
        return store

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _check_integrity(self) -> None:
        try:
            rows = self.conn.execute("PRAGMA quick_check").fetchall()
        except sqlite3.DatabaseError as e:
            if "not a database" in str(e) or "encrypted" in str(e):
                raise RobustBenchError(
                    f"{self.path} is not an SQLite file, so not a robustbench-norm store; pass "
                    "another --store"
                ) from None
            raise
        problems = [r[0] for r in rows if r[0] != "ok"]
        if problems:
            raise sqlite3.DatabaseError(f"database disk image is malformed: {problems[0]}")

    # -- transactions ---------------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE … COMMIT. While another process holds the write lock it waits, says
        so after a few seconds (and every minute after), and gives up with a
        :class:`StorageError` after ``lock_timeout`` seconds. A failed write (disk full,
        read-only, damaged) rolls back and becomes a StorageError too."""
        started = time.monotonic()
        announced = None
        while True:
            try:
                self.conn.execute("BEGIN IMMEDIATE")
                break
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) and "busy" not in str(e):
                    raise storage_error(self.path, e) from None
            waited = time.monotonic() - started
            if waited >= self.lock_timeout:
                raise StorageError(
                    f"store {self.path} stayed locked by another process for {waited:.0f} s; "
                    "wait for that process to finish (robustbench-norm list runs shows what is "
                    "running) or use another --store"
                )
            if waited >= LOCK_NOTICE and (announced is None or waited - announced >= 60):
                print(
                    f"waiting for the write lock of store {self.path}: another process holds "
                    f"it ({waited:.0f} s so far; giving up after {self.lock_timeout:.0f} s)",
                    file=sys.stderr,
                    flush=True,
                )
                announced = waited
            time.sleep(0.1)
        try:
            yield self.conn
        except BaseException as e:
            with suppress(sqlite3.Error):  # SQLite may have rolled back (e.g. a full disk)
                self.conn.execute("ROLLBACK")
            if isinstance(e, sqlite3.Error):
                raise storage_error(self.path, e) from None
            raise
        try:
            self.conn.execute("COMMIT")
        except sqlite3.Error as e:
            with suppress(sqlite3.Error):
                self.conn.execute("ROLLBACK")
            raise storage_error(self.path, e) from None

    def _migrate(self, read_only: bool = False) -> None:
        try:
            row = self.conn.execute(
                "SELECT value FROM meta WHERE key = 'schema_version'"
            ).fetchone()
        except sqlite3.OperationalError:
            row = None
        if row is None:
            tables = self.conn.execute(
                "SELECT name FROM sqlite_master WHERE type='table'"
            ).fetchall()
            if read_only or (tables and "meta" not in {t["name"] for t in tables}):
                raise RobustBenchError(
                    f"{self.path} is an SQLite file but not a robustbench-norm store; "
                    "pass another --store"
                )
            with self.transaction() as c:
                for statement in SCHEMA.split(";"):
                    if statement.strip():
                        c.execute(statement)
                c.execute(
                    "INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)",
                    (str(SCHEMA_VERSION),),
                )
            return
        version = int(row["value"])
        if version > SCHEMA_VERSION or version not in (SCHEMA_VERSION, *MIGRATIONS):
            raise RobustBenchError(
                f"store {self.path} has schema version {version}, written by a newer "
                f"robustbench-norm; this version reads schema {SCHEMA_VERSION} and older. Use "
                "the matching robustbench-norm release, or start a new store with --store"
            )
        self.schema_version = version
        if version < SCHEMA_VERSION and not read_only:
            with self.transaction() as c:
                for v in range(version, SCHEMA_VERSION):
                    for statement in MIGRATIONS[v]:
                        c.execute(statement)
                c.execute(
                    "UPDATE meta SET value = ? WHERE key = 'schema_version'",
                    (str(SCHEMA_VERSION),),
                )
            self.schema_version = SCHEMA_VERSION
