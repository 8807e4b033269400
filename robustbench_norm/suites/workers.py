"""Where a run's jobs execute: in this process, in local worker processes, or on Ray.

Each backend takes jobs up to its ``capacity`` and hands back outcomes as they finish; the run
loop (execute.py) claims jobs and writes every outcome to the store from this process only.
``abort`` stops everything at once, for Ctrl-C and for a full disk: workers are killed, not
waited for, and the jobs they held resume from their last epoch on the next run.

Worker processes ignore Ctrl-C (the parent handles it) and exit on their own when the parent
dies, even by ``kill -9``: a watcher thread polls the parent's pid.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from robustbench_norm.data import default_cache_dir
from robustbench_norm.errors import RobustBenchError
from robustbench_norm.suites.store import JobOutcome

#: how often a worker checks that its parent is still alive (seconds)
PARENT_POLL = 1.0

Execute = Callable[[Any, Any], JobOutcome]


class InProcess:
    """One job at a time in this process (the default executor)."""

    capacity = 1

    def __init__(self, execute: Execute, settings) -> None:
        self.execute, self.settings = execute, settings
        self._done: list[tuple[int, JobOutcome]] = []

    def submit(self, token: int, job) -> None:
        self._done.append((token, self.execute(job, self.settings)))

    def wait(self) -> list[tuple[int, JobOutcome]]:
        done, self._done = self._done, []
        return done

    def close(self) -> None:
        self._done.clear()

    abort = close


def _watch_parent(parent: int) -> None:
    """In a worker: ignore Ctrl-C and exit as soon as the parent process is gone."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def watch() -> None:
        while True:
            time.sleep(PARENT_POLL)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


class ProcessPool:
    """``workers`` spawned processes (spawn: a forked child would inherit torch's thread pools)."""

    def __init__(self, execute: Execute, settings, workers: int) -> None:
        from concurrent.futures import ProcessPoolExecutor
        from multiprocessing import get_context

        self.execute, self.settings, self.capacity = execute, settings, workers
        # killed workers (abort) leave the pool's semaphores to multiprocessing's resource
        # tracker, which would print a warning about them at exit; they are cleaned up anyway
        os.environ.setdefault("PYTHONWARNINGS", "ignore:resource_tracker:UserWarning")
        self.pool = ProcessPoolExecutor(
            workers,
            mp_context=get_context("spawn"),
            initializer=_watch_parent,
            initargs=(os.getpid(),),
        )
        self._futures: dict = {}

    def submit(self, token: int, job) -> None:
        self._futures[self.pool.submit(self.execute, job, self.settings)] = token

    def wait(self) -> list[tuple[int, JobOutcome]]:
        from concurrent.futures import FIRST_COMPLETED, wait

        done, _ = wait(list(self._futures), return_when=FIRST_COMPLETED)
        return [(self._futures.pop(f), f.result()) for f in done]

    def close(self) -> None:
        self.pool.shutdown(wait=True)

    def abort(self) -> None:
        processes = list(getattr(self.pool, "_processes", {}).values())
        self.pool.shutdown(wait=False, cancel_futures=True)
        for p in processes:
            p.kill()


class RayBackend:
    """Jobs as Ray tasks (a local Ray, or a cluster with ``address``)."""

    capacity = 1 << 30  # Ray queues them itself

    def __init__(self, execute: Execute, settings, address, cpus: float, gpus: float) -> None:
        try:
            import ray
        except ImportError:
            raise RobustBenchError(
                "the ray executor needs Ray: pip install 'robustbench-norm[ray]'"
            ) from None
        self.ray = ray
        self.started_here = not ray.is_initialized()
        if self.started_here:
            ray.init(address=address, include_dashboard=False, log_to_driver=not settings.quiet)
        # every job writes checkpoints and reads the corruption cache: absolute paths for workers
        self.settings = replace(
            settings,
            workdir=str(Path(settings.workdir).resolve()),
            cache_dir=str(Path(settings.cache_dir or default_cache_dir()).resolve()),
        )
        self.remote = ray.remote(execute).options(num_cpus=cpus, num_gpus=gpus)
        self._refs: dict = {}

    def submit(self, token: int, job) -> None:
        self._refs[self.remote.remote(job, self.settings)] = token

    def wait(self) -> list[tuple[int, JobOutcome]]:
        done, _ = self.ray.wait(list(self._refs), num_returns=1)
        return [(self._refs.pop(done[0]), self.ray.get(done[0]))]

    def close(self) -> None:
        if self.started_here:
            self.ray.shutdown()

    def abort(self) -> None:
        for ref in self._refs:
            self.ray.cancel(ref, force=True)
        self.close()
