"""Run a suite: plan → execute jobs (in-process, worker processes or Ray) → one store writer.

Resuming is the default. A job whose key (spec + code version + compute setting) already
finished in this store, in this run or any earlier one, is linked instead of recomputed.
Re-running an interrupted command continues its run: finished jobs are skipped and none is
duplicated. The job that was cut off resumes from its last training epoch. Results reach the
store only from this process, one job per transaction, so a kill never leaves half a job behind.

The thread count is pinned per run: every job of a run trains with the same number of torch
threads (``--threads``, else the cores shared out over ``--jobs``), the count is part of each
job's key (as ``compute``, with the device type), and a resumed run keeps the count it started
with. Two processes running the same suite into one store share the work through job claims
(job_claims.py) instead of computing every job twice.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from robustbench_norm.data import default_cache_dir, load_split
from robustbench_norm.errors import RobustBenchError, StorageError
from robustbench_norm.evaluation import (
    BatchStatisticsPlan,
    CleanSpec,
    NoiseSpec,
    evaluate,
)
from robustbench_norm.norms.adaptation import running_statistics_layers
from robustbench_norm.norms.fingerprint import fingerprints
from robustbench_norm.norms.registry import BUILTIN, layer_identity, layer_origin
from robustbench_norm.perturb.attacks import AttackSpec
from robustbench_norm.perturb.corruptions import CorruptionCache
from robustbench_norm.plugins import load_plugins
from robustbench_norm.progress import job_lines, note, progress_bar
from robustbench_norm.provenance import provenance
from robustbench_norm.specs import RUNNING, code_files
from robustbench_norm.suites.job_claims import JobClaims
from robustbench_norm.suites.plan import progress_weights
from robustbench_norm.suites.store import JobOutcome, Store
from robustbench_norm.suites.suite import JOB_CODE, JobSpec, Suite
from robustbench_norm.suites.workers import InProcess, ProcessPool, RayBackend
from robustbench_norm.training import compute_tag, load_trained, resolve_device, train

EXECUTORS = ("local", "ray")


@dataclass(frozen=True)
class RunSettings:
    """Where and how jobs run; none of it changes a result."""

    workdir: str = "results"
    device: str = "auto"
    cache_dir: str | None = None
    data_root: str | None = None
    download: bool = False
    fresh: bool = False
    quiet: bool = False
    #: torch threads per job (None: torch's default, or cores ÷ parallel jobs)
    threads: int | None = None
    #: plugin modules that register user layers (loaded again in every worker process)
    plugins: tuple[str, ...] = ()


@dataclass
class RunSummary:
    run_id: int
    total: int
    reused: int
    executed: int
    failed: list[str] = field(default_factory=list)
    diverged: list[str] = field(default_factory=list)


def execute_job(job: JobSpec, settings: RunSettings) -> JobOutcome:
    """Train one job (or reuse its checkpoint) and run every evaluation. Never raises for a
    problem inside the job: it comes back as status "failed" with the error text."""
    with job_lines(job.title):
        return _execute_job(job, settings)


def _execute_job(job: JobSpec, settings: RunSettings) -> JobOutcome:
    if settings.threads:
        torch.set_num_threads(settings.threads)
    started = time.perf_counter()
    try:
        load_plugins(settings.plugins)  # a worker process starts without them
        device = resolve_device(settings.device)
        result = train(
            job.train,
            settings.workdir,
            device=device,
            data_root=settings.data_root,
            download=settings.download,
            quiet=settings.quiet,
            fresh=settings.fresh,
        )
        trained = time.perf_counter()
        log = result.log
        rows = [
            _row("train", "steps", None, "steps", result.steps),
            _row("train", "wall_seconds", None, "seconds", result.wall_seconds),
        ]
        if log.get("loss"):
            rows.append(_row("train", "final", None, "loss", log["loss"][-1]))
            rows.append(_row("train", "final", None, "train_accuracy", log["accuracy"][-1]))
        rows += stability_rows(result.stability)

        def outcome(status: str, flags: list, warnings: list) -> JobOutcome:
            return JobOutcome(
                job.key,
                status,
                None,
                str(result.checkpoint),
                # training summed over every process that trained it (a resumed job's earlier
                # segments included) + this evaluation: what the job costs, however cut up
                result.wall_seconds + time.perf_counter() - trained,
                log,
                result.stability,
                rows,
                flags,
                warnings,
            )

        if result.status == "diverged":
            rows.append(_row("train", "diverged", None, "step", result.diverged_step))
            return outcome("diverged", [], [])
        model, _ = load_trained(result.checkpoint, device)
        test = load_split(
            job.train.dataset, "test", data_root=settings.data_root, download=settings.download
        ).subset(job.test_limit)
        evaluated, flags, warnings = evaluate_all(
            model, test, job.evaluations, device, settings, job.test_statistics
        )
        rows += evaluated
        return outcome("done", flags, warnings)
    except StorageError:
        raise  # the disk, not the job: stop the run (rerunning resumes it)
    except Exception as e:  # a failed job is recorded and the run goes on
        detail = str(e) if isinstance(e, RobustBenchError) else traceback.format_exc()
        return JobOutcome(
            job.key, "failed", detail, None, time.perf_counter() - started, {}, [], [], []
        )


def evaluate_all(
    model, test, evaluations, device, settings: RunSettings, plan: BatchStatisticsPlan | None = None
) -> tuple[list, list, list]:
    """Clean accuracy and every evaluation of a job on ``model`` — then, for a model with
    running statistics, again under each test-time statistics setting of ``plan`` — as a store
    records them: the tidy result rows, the per-example flags and the sanity warnings."""
    rows, flags, warnings = _evaluate_under(model, test, evaluations, device, settings, None)
    if plan is None or not running_statistics_layers(model):
        return rows, flags, warnings
    for statistics, full in plan.settings():
        chosen = [e for e in evaluations if full or isinstance(e.spec, NoiseSpec)]
        chosen = [e for e in chosen if not isinstance(e.spec, AttackSpec)]
        more = _evaluate_under(model, test, chosen, device, settings, statistics)
        rows += more[0]
        flags += more[1]
        warnings += more[2]
    return rows, flags, warnings


def _evaluate_under(model, test, evaluations, device, settings, statistics):
    label = RUNNING if statistics is None else statistics.label
    clean = evaluate(model, test, CleanSpec(), device=device, statistics=statistics)
    rows = [{"family": "clean", **clean.metrics[0], "statistics": label}]
    flags = [("clean", "clean", None, clean.clean_correct, label)]
    warnings: list[str] = []
    for evaluation in evaluations:
        started = time.perf_counter()
        res = evaluate(
            model,
            test.subset(evaluation.limit),
            evaluation.spec,
            device=device,
            cache_dir=settings.cache_dir,
            quiet=settings.quiet,
            statistics=statistics,
        )
        # each family's own clean row is left out: clean accuracy is the full-subset one
        rows += [
            {"family": res.family, **m, "statistics": label}
            for m in res.metrics
            if m["name"] != "clean"
        ]
        flags += [(res.family, c.name, c.parameter, c.correct, label) for c in res.conditions]
        warnings += res.warnings
        seconds = time.perf_counter() - started
        where = "" if statistics is None else f" under {label} statistics"
        note(f"  evaluated {res.family}{where} ({len(res.conditions)} conditions) in "
             f"{seconds:.0f} s", settings.quiet)  # fmt: skip
    return rows, flags, warnings


STABILITY_MEASURES = (
    "landscape_range",
    "landscape_range_per_length",
    "grad_change_max",
    "beta_smoothness",
)


def stability_rows(stability: list[dict]) -> list[dict]:
    """Each Santurkar measure's mean over training and its mean in each third of training
    (parameter 0, 1, 2: early, middle, late) — a mean alone lets early training dominate."""
    rows = []
    if not stability:
        return rows
    steps = [s["step"] for s in stability]
    lo, hi = min(steps), max(steps) + 1
    for name in STABILITY_MEASURES:
        values = [(s["step"], s[name]) for s in stability if name in s]
        if not values:
            continue
        rows.append(_row("stability", name, None, "mean", sum(v for _, v in values) / len(values)))
        for phase in range(3):
            start, end = lo + (hi - lo) * phase / 3, lo + (hi - lo) * (phase + 1) / 3
            inside = [v for step, v in values if start <= step < end]
            if inside:
                rows.append(_row("stability", name, phase, "phase_mean", sum(inside) / len(inside)))
    return rows


def _row(family: str, name: str, parameter, metric: str, value) -> dict:
    return {
        "family": family,
        "name": name,
        "parameter": parameter,
        "metric": metric,
        "value": None if value is None else float(value),
        "statistics": RUNNING,
    }


def prepare_corruptions(suite: Suite, settings: RunSettings) -> None:
    """Generate every corrupted test set the suite needs, once, on all cores, before any job:
    parallel jobs then only read the cache and never generate the same file twice."""
    conditions = suite.corruption_conditions()
    if not conditions:
        return
    test = load_split(
        suite.dataset, "test", data_root=settings.data_root, download=settings.download
    ).subset(suite.test_limit)
    cache = CorruptionCache(settings.cache_dir or default_cache_dir())
    for spec, limit in conditions:
        if spec.corruptions_dir is None:
            pairs = [(c, s) for c in spec.names for s in spec.severities]
            cache.ensure(
                test.subset(limit), pairs, spec.seed, quiet=settings.quiet, table=spec.table
            )


def check_run_settings(
    settings: RunSettings, executor: str = "local", jobs: int = 1
) -> torch.device:
    """Every usage error of a run's settings, before anything is created or trained: a run
    that would fail only after its jobs trained (a workdir under a regular file) or leave an
    empty store behind (``--jobs 0``, ``--device tpu9``) fails here. Returns the device."""
    if executor not in EXECUTORS:
        raise RobustBenchError(f"executor {executor!r} is not one of {', '.join(EXECUTORS)}")
    if jobs < 1:
        raise RobustBenchError(f"--jobs {jobs} must be at least 1")
    if settings.threads is not None and settings.threads < 1:
        raise RobustBenchError(f"--threads {settings.threads} must be at least 1")
    for flag, folder in (("--workdir", settings.workdir), ("--cache-dir", settings.cache_dir)):
        if folder is not None:
            _check_folder(flag, Path(folder))
    return resolve_device(settings.device)  # no CUDA: one error now, not one per job


def _carry_external_models(store: Store, suite: Suite, run_id: int, say) -> None:
    """Models benchmarked onto the suite's board stay on it: a new run links them (external.py
    decides which still match the suite's evaluations)."""
    from robustbench_norm.suites.external import carried_over  # it builds on this module

    keep, stale = carried_over(store, suite)
    for job in keep:
        store.link(run_id, job["key"], job["id"])
    for name in stale:
        say(f"{name} is not carried into run {run_id}: the suite's evaluations changed since "
            "it was benchmarked; benchmark it again")  # fmt: skip


def plugin_layers(suite: Suite) -> dict[str, dict[str, str | None]]:
    """Each plugin layer the suite trains: where it comes from and the hash of its code (the
    one its jobs' keys use), so two runs of an edited plugin are told apart on the page."""
    names = sorted({j.train.norm for j in suite.jobs} - set(BUILTIN))
    return {n: {"origin": layer_origin(n), "code_sha256": layer_identity(n)} for n in names}


def _check_folder(flag: str, folder: Path) -> None:
    """A folder that exists or can be made: no regular file on its path, and its nearest
    existing ancestor writable."""
    for path in (folder, *folder.parents):
        if path.exists():
            if not path.is_dir():
                where = "is" if path == folder else f"lies under {path}, which is"
                raise RobustBenchError(
                    f"{flag} {folder} {where} a regular file; pass a folder in a writable place"
                )
            if not os.access(path, os.W_OK | os.X_OK):
                raise StorageError(
                    f"{flag} {folder}: {path} is not writable; pass a folder in a writable place"
                )
            return


def run_suite(
    suite: Suite,
    store: Store,
    settings: RunSettings = RunSettings(),
    *,
    executor: str = "local",
    jobs: int = 1,
    ray_address: str | None = None,
    ray_cpus: float = 1.0,
    ray_gpus: float = 0.0,
    on_job: Callable[[JobSpec, JobOutcome], None] | None = None,
    say: Callable[[str], None] | None = None,
) -> RunSummary:
    """Run every job of ``suite`` into ``store``; see the module docstring for resuming, the
    pinned thread count and sharing a store. ``say`` receives one-line notices (a resumed
    run's thread count, waiting on another process)."""
    device = check_run_settings(settings, executor, jobs)
    say = say or (lambda text: None)
    settings = replace(settings, plugins=tuple(dict.fromkeys((*settings.plugins, *suite.plugins))))
    run_id = None if settings.fresh else store.resumable_run(suite.name, suite.hash)
    threads = _job_threads(settings, executor, jobs, ray_cpus)
    if run_id is not None:
        _check_same_code(store.run(run_id))
        threads = _resumed_threads(store.run(run_id), threads, settings.threads, say)
    else:
        facts = {
            **provenance(threads=threads),
            "plugins": list(settings.plugins),
            "plugin_layers": plugin_layers(suite),
            "code_files": code_files(*JOB_CODE),
        }
        run_id = store.start_run(suite.name, suite.hash, suite.text, facts)
        _carry_external_models(store, suite, run_id, say)
    settings = replace(settings, threads=threads)
    with JobClaims(store) as claims:
        claims.hold_run(run_id)  # `list runs` tells this run from an interrupted one
        if not store.fingerprints_of_run(run_id):  # the exact identity of every layer measured
            store.save_fingerprints(run_id, fingerprints(suite.norm_configs()))
        pending, reused = _pending_jobs(
            suite, store, run_id, compute_tag(device, threads), settings
        )
        summary = RunSummary(run_id, len(suite.jobs), reused, 0)
        if pending:
            prepare_corruptions(suite, settings)
        queue = JobQueue(store, claims, run_id, pending, settings.fresh, say)
        # weighted by each job's price (or steps): a ladder's last rung costs as much as all
        # the others, and a batch-64 job with evaluation as much as a batch-8 one
        weights, unit = progress_weights(store, [job for job, _ in pending])
        bar = progress_bar(sum(weights.values()), f"suite {suite.name}", unit, settings.quiet)

        def write(job: JobSpec, job_id: int, outcome: JobOutcome) -> None:
            store.record(job_id, outcome)
            claims.release(job.key)
            summary.executed += 1
            if outcome.status == "failed":
                summary.failed.append(f"{job.title}: {outcome.error.strip().splitlines()[-1]}")
            elif outcome.status == "diverged":
                summary.diverged.append(job.title)
            bar.update(weights[job.key])
            if on_job is not None:
                on_job(job, outcome)

        backend = _backend(executor, settings, jobs, ray_address, ray_cpus, ray_gpus)
        try:
            _drive(queue, backend, write)
        except BaseException:  # Ctrl-C, a full disk: stop now; rerunning resumes
            backend.abort()
            raise
        finally:
            bar.close()
        backend.close()
        summary.reused += queue.linked
        store.finish_run(run_id, "finished" if not summary.failed else "failed")
    return summary


def _pending_jobs(
    suite: Suite, store: Store, run_id: int, compute: str, settings: RunSettings
) -> tuple[list[tuple[JobSpec, int]], int]:
    """The run's jobs still to compute (with their row ids) and how many are already done:
    finished in this run, or linked from any earlier run with the same key."""
    pending: list[tuple[JobSpec, int]] = []
    reused = 0
    for job in (replace(j, compute=compute) for j in suite.jobs):
        current = store.run_job(run_id, job.key)
        if current is not None and current["status"] in ("done", "diverged"):
            reused += 1
            continue
        finished = None if settings.fresh else store.finished_job(job.key)
        if finished is not None:
            store.link(run_id, job.key, finished)
            reused += 1
        elif current is not None:  # cut off last time: run again in the same row
            pending.append((job, int(current["id"])))
        else:
            pending.append(
                (job, store.add_job(run_id, job.key, job.to_dict(), job.labels(), "pending"))
            )
    return pending, reused


class JobQueue:
    """The run's pending jobs, in order, handed out only when this process holds their claim.

    A job another live process is computing is put aside; once nothing else is left, the queue
    waits for it (saying so) and links the other process's result, or takes the job over if
    that process died without one."""

    def __init__(self, store, claims, run_id, pending, fresh: bool, say, poll: float = 2.0):
        self.store, self.claims, self.run_id = store, claims, run_id
        self.todo = list(pending)
        self.fresh, self.say, self.poll = fresh, say, poll
        self.linked = 0
        self._told: set = set()

    def next(self, block: bool) -> tuple[JobSpec, int] | None:
        """The next job to compute (claimed, marked running); None when none is left, or when
        only other processes' jobs are left and ``block`` is False."""
        while True:
            waiting = []
            while self.todo:
                job, job_id = self.todo.pop(0)
                finished = None if self.fresh else self.store.finished_job(job.key)
                if finished is not None:  # another process finished it meanwhile
                    self.store.link(self.run_id, job.key, finished, replacing=job_id)
                    self.linked += 1
                    continue
                holder = self.claims.claim(job.key)
                if holder is None:
                    self.store.set_status(job_id, "running")
                    self.todo = [(j, i) for j, i, _ in waiting] + self.todo
                    return job, job_id
                waiting.append((job, job_id, holder))
            self.todo = [(job, job_id) for job, job_id, _ in waiting]
            if not self.todo or not block:
                return None
            holders = sorted({str(h) for _, _, h in waiting})
            if tuple(holders) not in self._told:
                self._told.add(tuple(holders))
                self.say(
                    f"waiting for {len(waiting)} job(s) that another process is computing into "
                    f"{self.store.path} ({', '.join(holders)}); its results will be linked"
                )
            time.sleep(self.poll)


def _drive(queue: JobQueue, backend, write) -> None:
    """Keep the backend full with claimed jobs and write each outcome as it arrives."""
    in_flight: dict[int, tuple[JobSpec, int]] = {}
    while True:
        while len(in_flight) < backend.capacity:
            item = queue.next(block=not in_flight)
            if item is None:
                break
            token = item[1]
            in_flight[token] = item
            backend.submit(token, item[0])
        if not in_flight:
            return
        for token, outcome in backend.wait():
            job, job_id = in_flight.pop(token)
            write(job, job_id, outcome)


def _backend(executor, settings, jobs, ray_address, ray_cpus, ray_gpus):
    if executor == "ray":
        quiet = replace(settings, quiet=True)
        return RayBackend(execute_job, quiet, ray_address, ray_cpus, ray_gpus)
    if jobs > 1:  # in a log each worker's lines carry its job's title; on a terminal, silent
        quiet = settings.quiet or sys.stderr.isatty()
        return ProcessPool(execute_job, replace(settings, quiet=quiet), jobs)
    return InProcess(execute_job, settings)


def _job_threads(settings: RunSettings, executor: str, jobs: int, ray_cpus: float) -> int:
    """The torch thread count each job trains with (it changes the numbers: part of the key)."""
    if settings.threads:
        return settings.threads
    if executor == "ray":
        return max(1, int(ray_cpus))
    if jobs > 1:
        return max(1, (os.cpu_count() or 1) // jobs)
    return torch.get_num_threads()


def _check_same_code(run: dict) -> None:
    """A run resumes only with the code it started with. Every job's key hashes that code, so
    after a change none of the run's finished jobs would be found again: all would be computed
    anew and the run would hold two generations of results. A publication that spans sittings
    keeps its training and evaluation code fixed; this names the file that moved."""
    started = run["provenance"].get("code_files")
    if not started:  # a run from before code files were recorded
        return
    now = code_files(*JOB_CODE)
    changed = sorted(f for f in set(started) | set(now) if started.get(f) != now.get(f))
    if changed:
        shown = ", ".join(f"robustbench_norm/{f}" for f in changed[:4])
        more = f" and {len(changed) - 4} more" if len(changed) > 4 else ""
        sha = (run["provenance"].get("git_sha") or "")[:12] or "unknown"
        raise RobustBenchError(
            f"run {run['id']} of suite {run['suite']!r} was started with other code: {shown}"
            f"{more} changed, and every job's key hashes it, so its finished jobs would be "
            f"computed again. Resume it with the code it started with (git {sha}, e.g. in a "
            "`git worktree`), or start a new run with --fresh"
        )


def _resumed_threads(run: dict, threads: int, asked: int | None, say) -> int:
    """A resumed run keeps the thread count it started with: its jobs' keys include it."""
    started = run["provenance"].get("torch_threads")
    if not started or started == threads:
        return threads
    if asked is not None:
        raise RobustBenchError(
            f"run {run['id']} was started with {started} thread(s) per job and its jobs' "
            f"results depend on that; resume it with --threads {started}, or start a new run "
            "with --fresh"
        )
    say(f"resuming run {run['id']} with {started} thread(s) per job, as it started")
    return started
