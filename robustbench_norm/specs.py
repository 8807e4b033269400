"""Identity of a unit of work: the hash of its spec plus the code version of what it uses.

Same spec and same code → same key → a finished result is reused, never recomputed. Changing
any source file a job depends on (a layer, the model, the training loop) changes the key, so a
cached number can never outlive the code that produced it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from functools import cache
from pathlib import Path
from typing import Any

from robustbench_norm.errors import RobustBenchError

#: the statistics label of an ordinary evaluation (BN-style layers use their running averages);
#: a result measured under test-time statistics carries its setting's label instead
RUNNING = "running"

PACKAGE_DIR = Path(__file__).resolve().parent


def canonical_json(value: Any) -> str:
    """Deterministic JSON: sorted keys, no whitespace, tuples as lists, floats via repr."""
    return json.dumps(_plain(value), sort_keys=True, separators=(",", ":"), allow_nan=True)


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


@cache
def code_version(*parts: str) -> str:
    """sha256 over the source of the named package parts (files or folders under the package).

    ``code_version("norms", "models.py")`` changes whenever any ``.py`` file in ``norms/`` or
    ``models.py`` changes; package data listed (e.g. ``"embedded"``) is hashed too.
    """
    h = hashlib.sha256()
    for part in sorted(parts):
        for f in _files(part):
            h.update(str(f.relative_to(PACKAGE_DIR)).encode())
            h.update(f.read_bytes())
    return h.hexdigest()


def code_files(*parts: str) -> dict[str, str]:
    """sha256 of each file :func:`code_version` hashes, by path under the package: what a run
    records so that a resume with other code can name the file that changed."""
    return {
        str(f.relative_to(PACKAGE_DIR)): hashlib.sha256(f.read_bytes()).hexdigest()
        for part in sorted(parts)
        for f in _files(part)
    }


def _files(part: str) -> list[Path]:
    path = PACKAGE_DIR / part
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    return [f for f in files if f.suffix != ".pyc" and "__pycache__" not in f.parts]


def spec_key(spec: Any, code: str) -> str:
    """The 16-hex-digit identity of a spec run with code version ``code``."""
    payload = canonical_json({"spec": spec, "code": code})
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


#: seeds lie in [0, 2³²): torch's CPU generator keeps only a seed's low 32 bits, so seeds 0 and
#: 2³² would train the same model and the statistics would count one draw twice
SEED_LIMIT = 2**32


def check_seed(seed: Any, where: str) -> None:
    """A seed is an integer in [0, 2³²): numpy's generators refuse negative ones, torch's
    keeps 32 bits of larger ones (two suite seeds would silently collide), and a job that
    fails on one only after training has cost its training for nothing."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < SEED_LIMIT:
        raise RobustBenchError(
            f"{where}={seed!r} must be an integer from 0 to {SEED_LIMIT - 1} (2³² − 1): "
            "torch keeps only a seed's low 32 bits"
        )
