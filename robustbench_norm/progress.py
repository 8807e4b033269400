"""One rule for progress: a bar on a terminal; in logs and CI a line at every milestone (an
epoch, an evaluation family) and at least every half minute, with the elapsed time and an ETA;
nothing with --quiet. A log that stays silent for ten minutes looks exactly like a hung job.

Parallel jobs (``run --jobs N``) share one log, so while a job runs each of its lines starts
with the job's title (:func:`job_lines`). On a terminal their bars would overwrite each other:
there the workers stay silent and the suite's own bar shows the run."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

#: seconds between two progress lines when stderr is not a terminal
LINE_EVERY = 30.0


#: the title of the job this process works on, in front of its lines ("" outside a job)
_job = ""


@contextmanager
def job_lines(title: str) -> Iterator[None]:
    """Start every progress line this process prints with ``[title]`` while the block runs."""
    global _job
    before, _job = _job, f"[{title}] "
    try:
        yield
    finally:
        _job = before


def progress_bar(total: int, desc: str, unit: str, quiet: bool = False, initial: int = 0):
    if quiet:
        return _Silent()
    if not sys.stderr.isatty():
        return LineProgress(total, desc, unit, initial)
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit=unit, leave=False)


def mark(bar, label: str) -> None:
    """A milestone of ``bar``'s work (e.g. ``epoch 2/5``): a line in a log, nothing on a
    terminal (the bar shows it) or when quiet."""
    if isinstance(bar, LineProgress):
        bar.line(label)


def note(text: str, quiet: bool = False) -> None:
    """A one-off progress line for logs (a finished evaluation family); silent on a terminal,
    where bars already show the work, and when quiet."""
    if not quiet and not sys.stderr.isatty():
        print(f"{_job}{text.lstrip() if _job else text}", file=sys.stderr, flush=True)


class _Silent:
    def update(self, n: int = 1) -> None:
        pass

    def set_postfix(self, **kwargs) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass


class LineProgress(_Silent):
    """tqdm's interface (update, set_postfix, close, a context manager), printing plain lines:
    ``resnet20/gnplus: 120/500 steps (24 %), 0:42 elapsed, ETA 2:13, loss=0.912``."""

    def __init__(self, total: int, desc: str, unit: str, initial: int = 0) -> None:
        self.total, self.desc, self.unit = total, desc, unit
        self.done = self.initial = initial
        self.started = self.last = time.monotonic()
        self.postfix = ""
        self.shown = -1  # the count of the last line printed

    def update(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if now - self.last >= LINE_EVERY:
            self.last = now
            self._line(now)

    def set_postfix(self, **kwargs) -> None:
        self.postfix = ", ".join(f"{k}={v}" for k, v in kwargs.items() if k != "refresh")

    def close(self) -> None:
        now = time.monotonic()
        if now - self.started >= LINE_EVERY and self.shown != self.done:  # short work: none
            self._line(now)

    def line(self, label: str = "") -> None:
        """Print the state now (``label``: what was just reached)."""
        self.last = time.monotonic()
        self._line(self.last, label)

    def _line(self, now: float, label: str = "") -> None:
        self.shown = self.done
        elapsed = now - self.started
        reached = f"{label}, " if label else ""
        parts = [f"{_job}{self.desc}: {reached}{self.done}/{self.total} {self.unit}s"]
        if self.total:
            parts[0] += f" ({100 * self.done / self.total:.0f} %)"
        parts.append(f"{_clock(elapsed)} elapsed")
        moved = self.done - self.initial
        if moved > 0 and self.done < self.total:
            parts.append(f"ETA {_clock(elapsed / moved * (self.total - self.done))}")
        if self.postfix:
            parts.append(self.postfix)
        print(", ".join(parts), file=sys.stderr, flush=True)


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
