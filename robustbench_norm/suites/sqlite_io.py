"""Opening an SQLite store file, and what its failures mean: every SQLite or OS error on a
store becomes one :class:`StorageError` naming the file and the fix (a full disk, a read-only
file system, damaged pages, a path that is not there)."""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path

from robustbench_norm.errors import StorageError


def connect_read_only(path: Path) -> sqlite3.Connection:
    """A connection that cannot write. A WAL store on a read-only file system cannot create
    its ``-shm`` file, so ``mode=ro`` fails there; ``immutable=1`` then reads it as it is
    (safe: nothing can write to a read-only file system either)."""
    uri = f"file:{path.resolve()}?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=1.0)
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return conn
    except sqlite3.OperationalError as e:
        if "unable to open" not in str(e) and "readonly" not in str(e):
            raise storage_error(path, e) from None
    except sqlite3.Error as e:
        raise storage_error(path, e) from None
    try:
        conn = sqlite3.connect(uri + "&immutable=1", uri=True, timeout=1.0)
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.Error as e:
        raise storage_error(path, e) from None
    return conn


def check_writable(path: Path) -> None:
    """A writable store needs its folder (for the WAL files) and itself to be writable."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StorageError(
            f"cannot create the folder of store {path}: {e.strerror} ({e.filename}); pass "
            "--store a path in a writable folder"
        ) from None
    for target in (path.parent, path) if path.exists() else (path.parent,):
        if not os.access(target, os.W_OK):
            raise StorageError(
                f"store {path} is not writable ({target} is read-only: a read-only file system "
                "or missing permission). Commands that only read it (list, report, check) "
                "work; to run, pass --store a writable path or copy the store"
            )


def free_bytes(folder: Path) -> int | None:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def storage_error(path: Path, e: sqlite3.Error) -> StorageError:
    text = str(e)
    free = free_bytes(path.parent)
    if "full" in text or ("disk I/O" in text and free is not None and free < 1 << 20):
        advice = (
            f"the disk is full ({(free or 0) // 1024} kB free); free space and rerun the same "
            "command (stored jobs are kept)"
        )
    elif "readonly" in text or "read-only" in text:
        advice = "it is read-only; pass --store a writable path"
    elif "not a database" in text:
        advice = "it is not an SQLite file, so not a robustbench-norm store; pass another --store"
    elif "malformed" in text:
        advice = (
            "it is damaged; restore it from a copy (a published store: git checkout -- "
            f"{path}) or start a new store with --store"
        )
    elif "unable to open" in text:
        advice = "check that the path exists and is readable"
    else:
        advice = "see the SQLite message"
    return StorageError(f"store {path}: {text} — {advice}")
