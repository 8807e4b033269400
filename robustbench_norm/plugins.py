"""User layers from the command line and from suites: import the modules that register them.

A plugin is a Python module that calls :func:`robustbench_norm.register_norm` when imported. It
is named either as an importable module (``my_norms``, ``mypkg.norms``) or as a ``.py`` file;
a suite's ``plugins = [...]`` resolves both relative to the suite file's folder, the CLI's
``--plugin`` relative to the working directory. Importing is idempotent, so worker processes
(``--jobs N``, Ray) load the same list again before their first job.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from pathlib import Path

from robustbench_norm.errors import RobustBenchError


def resolve(spec: str, base: Path | None = None) -> str:
    """An absolute ``.py`` path for a file plugin, or the module name unchanged."""
    if spec.endswith(".py") or "/" in spec:
        path = Path(spec).expanduser()
        if not path.is_absolute():
            path = (base or Path.cwd()) / path
        if not path.is_file():
            raise RobustBenchError(f"plugin {spec!r}: no file {path}")
        return str(path.resolve())
    return spec


def load_plugins(specs: list[str] | tuple[str, ...], base: Path | None = None) -> list[str]:
    """Import every plugin (already resolved, or resolved against ``base``); return them
    resolved, for worker processes and for provenance."""
    resolved = [resolve(s, base) for s in specs]
    for spec in resolved:
        _import(spec, base)
    return resolved


def _import(spec: str, base: Path | None) -> None:
    try:
        if spec.endswith(".py"):
            name = "robustbench_norm_plugin_" + hashlib.sha256(spec.encode()).hexdigest()[:12]
            if name in sys.modules:
                return
            loader = importlib.util.spec_from_file_location(name, spec)
            module = importlib.util.module_from_spec(loader)
            sys.modules[name] = module
            try:
                loader.loader.exec_module(module)
            except BaseException:
                del sys.modules[name]
                raise
        else:
            folders = [str(base)] if base is not None else []
            sys.path[:0] = folders  # a module beside the suite file is importable by name
            try:
                importlib.import_module(spec)
            finally:
                for folder in folders:
                    sys.path.remove(folder)
    except RobustBenchError:
        raise
    except Exception as e:
        raise RobustBenchError(f"plugin {spec!r} failed to import: {type(e).__name__}: {e}") from e
