"""One rule for progress bars: shown on a terminal, hidden in logs, CI and with --quiet."""

from __future__ import annotations

import sys


def progress_bar(total: int, desc: str, unit: str, quiet: bool = False, initial: int = 0):
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        initial=initial,
        desc=desc,
        unit=unit,
        leave=False,
        disable=quiet or not sys.stderr.isatty(),
    )
