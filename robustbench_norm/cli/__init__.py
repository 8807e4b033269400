"""``robustbench-norm``: wires commands to the library; no logic of its own lives here.

``commands.py`` holds what each command does, ``parser.py`` its arguments. ``main`` turns every
error a user or the machine can fix into one ``error:`` line and a non-zero exit.
"""

from __future__ import annotations

import sqlite3
import sys
import warnings
from collections.abc import Sequence

from robustbench_norm.cli.commands import EXIT_INTERRUPTED, EXIT_USER_ERROR
from robustbench_norm.cli.parser import build_parser
from robustbench_norm.errors import RobustBenchError

__all__ = ["build_parser", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command. Whatever goes wrong that the user or the machine can fix ends as one
    ``error:`` line and a non-zero exit, never a traceback (``--debug`` shows it)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    warnings.formatwarning = _one_line_warning
    try:
        if getattr(args, "plugin", None):
            from robustbench_norm.plugins import load_plugins

            args.plugin = load_plugins(args.plugin)
        return args.func(args)
    except KeyboardInterrupt:
        if args.debug:
            raise
        print(
            "interrupted; rerun the same command to resume (finished jobs are kept)",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    except (RobustBenchError, OSError, sqlite3.Error) as e:
        if args.debug:
            raise
        print(f"error: {_message(e)}", file=sys.stderr)
        return EXIT_USER_ERROR


def _message(e: BaseException) -> str:
    """One line for an error; OS errors name the path and what went wrong with it."""
    if isinstance(e, OSError) and e.filename is not None:
        return f"{e.filename}: {e.strerror or e}"
    if isinstance(e, sqlite3.Error):
        return f"a results store could not be read or written: {e}"
    return " ".join(str(e).split("\n"))


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    return f"warning: {message}\n"
