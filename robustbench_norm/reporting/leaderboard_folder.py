"""Which folder ``report`` may replace, and the manifest that marks one it wrote.

``publish`` swaps a whole folder in at once (a baseline that ``check`` reads is never half
rewritten), so whatever the target folder held before is gone afterwards. That is right for a
leaderboard ``report`` wrote and wrong for anything else: ``--out results`` once deleted the
store and every checkpoint in it. So a folder is replaced only when it is new, empty, or a
leaderboard: it holds :data:`MANIFEST`, written last by ``publish``, and nothing the manifest
does not list. Folders written before the manifest existed are recognised by their
``results.json`` schema and by holding only the files ``report`` writes.

Three targets are refused whatever they hold: the current folder or one above it (``--out .``),
and a folder that holds the store being read (unless it is this leaderboard's own exported
``store.sqlite``, which is how a published leaderboard is regenerated from itself).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from robustbench_norm.errors import RobustBenchError

#: the hidden file that marks a folder as a leaderboard written by ``report``
MANIFEST = ".leaderboard.json"
MANIFEST_SCHEMA = "robustbench-norm/leaderboard-folder@1"
#: what ``report`` wrote before the manifest existed (besides its PNG plots)
_LEGACY_FILES = {
    "README.md", "results.csv", "results.json", "suite.toml", "fingerprints.json",
    "index.html", "store.sqlite",
}  # fmt: skip


def write_manifest(folder: Path) -> Path:
    """List every file of a finished leaderboard folder in its manifest (deterministic: a
    leaderboard regenerated from its own store stays byte-identical)."""
    files = sorted(p.name for p in folder.iterdir() if p.name != MANIFEST)
    document = {
        "schema": MANIFEST_SCHEMA,
        "note": "written by `robustbench-norm report`; the next report into this folder "
        "replaces it whole, and refuses if it holds a file not listed here",
        "files": files,
    }
    path = folder / MANIFEST
    path.write_text(json.dumps(document, indent=1) + "\n")
    return path


def check_replaceable(out: Path, store_path: Path) -> None:
    """Raise unless replacing ``out`` whole can only lose a leaderboard ``report`` wrote."""
    target = out.resolve()
    cwd = Path.cwd().resolve()
    if target == cwd or target in cwd.parents:
        raise RobustBenchError(
            f"--out {out} is the current folder or one above it, and report replaces its "
            "--out folder whole; pass a folder of its own, e.g. results/leaderboards/NAME"
        )
    store = store_path.resolve()
    own_export = store == target / "store.sqlite" and _is_leaderboard(target)
    if target in store.parents and not own_export:
        raise RobustBenchError(
            f"--out {out} holds the store {store_path} that this report reads, and report "
            "replaces its --out folder whole; pass another folder"
        )
    if not target.is_dir():
        return
    entries = sorted(p.name for p in target.iterdir())
    foreign = _foreign(target, entries)
    if foreign is None:
        shown = ", ".join(entries[:3]) + (", …" if len(entries) > 3 else "")
        count = f"{len(entries)} entr{'y' if len(entries) == 1 else 'ies'}"
        raise RobustBenchError(
            f"--out {out} is a folder report did not write ({count}: {shown}); "
            "report replaces its --out folder whole, so it only writes into a new or empty "
            "folder or a leaderboard it wrote. Pass another folder"
        )
    if foreign:
        raise RobustBenchError(
            f"--out {out} is a leaderboard, but holds file(s) report did not write: "
            f"{', '.join(foreign)}; the next report replaces the folder whole, so move them "
            "elsewhere first"
        )


def swap_in(staging: Path, out: Path) -> None:
    """Replace ``out`` by the finished ``staging`` sibling with two renames."""
    if not out.exists():
        os.rename(staging, out)
        return
    retired = out.with_name(f".{out.name}.old-{os.getpid()}")
    shutil.rmtree(retired, ignore_errors=True)
    os.rename(out, retired)
    os.rename(staging, out)
    shutil.rmtree(retired, ignore_errors=True)


def _is_leaderboard(folder: Path) -> bool:
    return folder.is_dir() and _foreign(folder, sorted(p.name for p in folder.iterdir())) == []


def _foreign(folder: Path, entries: list[str]) -> list[str] | None:
    """The entries of ``folder`` that ``report`` did not write: [] for an empty folder or a
    whole leaderboard, None when the folder is no leaderboard at all."""
    if not entries:
        return []
    listed = _manifest_files(folder)
    if listed is None:
        return [] if _is_legacy_leaderboard(folder, entries) else None
    return [e for e in entries if e not in listed and e != MANIFEST]


def _manifest_files(folder: Path) -> set[str] | None:
    """The files the manifest lists; None without a readable manifest of ours."""
    try:
        document = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(document, dict) or document.get("schema") != MANIFEST_SCHEMA:
        return None
    return {str(f) for f in document.get("files", [])}


def _is_legacy_leaderboard(folder: Path, entries: list[str]) -> bool:
    if not all(e in _LEGACY_FILES or e.endswith(".png") for e in entries):
        return False
    try:
        schema = json.loads((folder / "results.json").read_text()).get("schema", "")
    except (OSError, ValueError, AttributeError):
        return False
    return str(schema).startswith("robustbench-norm/leaderboard@")
