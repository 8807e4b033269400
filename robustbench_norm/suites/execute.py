"""Run a suite: plan → execute jobs (in-process, worker processes or Ray) → one store writer.

Resuming is the default. A job whose key (spec + code version) already finished in this store,
in this run or any earlier one, is linked instead of recomputed. Re-running an interrupted
command continues its run: finished jobs are skipped and none is duplicated. The job that was
cut off resumes from its last training epoch. Results reach the store only from this process,
one job per transaction, so a kill never leaves half a job behind.
"""

from __future__ import annotations

import os
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from robustbench_norm.data import default_cache_dir, load_split
from robustbench_norm.errors import RobustBenchError
from robustbench_norm.evaluate import CleanSpec, evaluate
from robustbench_norm.norms.fingerprint import fingerprints
from robustbench_norm.perturb.corruptions import CorruptionCache
from robustbench_norm.progress import progress_bar
from robustbench_norm.provenance import provenance
from robustbench_norm.suites.store import JobOutcome, Store
from robustbench_norm.suites.suite import JobSpec, Suite
from robustbench_norm.train import load_trained, resolve_device, train

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
    if settings.threads:
        torch.set_num_threads(settings.threads)
    started = time.perf_counter()
    try:
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
                time.perf_counter() - started,
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
        clean = evaluate(model, test, CleanSpec(), device=device)
        rows.append({"family": "clean", **clean.metrics[0]})
        flags = [("clean", "clean", None, clean.clean_correct)]
        warnings = []
        for evaluation in job.evaluations:
            res = evaluate(
                model,
                test.subset(evaluation.limit),
                evaluation.spec,
                device=device,
                cache_dir=settings.cache_dir,
                quiet=settings.quiet,
            )
            # each family's own clean row is left out: clean accuracy is the full-subset one
            rows += [{"family": res.family, **m} for m in res.metrics if m["name"] != "clean"]
            flags += [(res.family, c.name, c.parameter, c.correct) for c in res.conditions]
            warnings += res.warnings
        return outcome("done", flags, warnings)
    except Exception as e:  # a failed job is recorded and the run goes on
        detail = str(e) if isinstance(e, RobustBenchError) else traceback.format_exc()
        return JobOutcome(
            job.key, "failed", detail, None, time.perf_counter() - started, {}, [], [], []
        )


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
            cache.ensure(test.subset(limit), pairs, spec.seed, quiet=settings.quiet)


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
) -> RunSummary:
    """Run every job of ``suite`` into ``store``; see the module docstring for resuming."""
    if executor not in EXECUTORS:
        raise RobustBenchError(f"executor {executor!r} is not one of {', '.join(EXECUTORS)}")
    if jobs < 1:
        raise RobustBenchError(f"--jobs {jobs} must be at least 1")
    run_id = None if settings.fresh else store.resumable_run(suite.name, suite.hash)
    if run_id is None:
        facts = provenance(threads=_job_threads(settings, executor, jobs, ray_cpus))
        run_id = store.start_run(suite.name, suite.hash, suite.text, facts)
    if not store.fingerprints_of_run(run_id):  # the exact identity of every layer measured
        store.save_fingerprints(run_id, fingerprints(suite.norm_configs()))

    pending: list[tuple[JobSpec, int]] = []
    reused = 0
    for job in suite.jobs:
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
    summary = RunSummary(run_id, len(suite.jobs), reused, 0)
    if pending:
        prepare_corruptions(suite, settings)

    def write(job: JobSpec, job_id: int, outcome: JobOutcome) -> None:
        store.record(job_id, outcome)
        summary.executed += 1
        tag = f"{job.train.model}/{job.label}/bs{job.train.batch_size}/seed{job.train.seed}"
        if outcome.status == "failed":
            summary.failed.append(f"{tag}: {outcome.error.strip().splitlines()[-1]}")
        elif outcome.status == "diverged":
            summary.diverged.append(tag)
        if on_job is not None:
            on_job(job, outcome)

    bar = progress_bar(len(pending), f"suite {suite.name}", "job", settings.quiet)
    try:
        if executor == "ray":
            _run_ray(pending, settings, store, write, bar, ray_address, ray_cpus, ray_gpus)
        elif jobs > 1:
            _run_processes(pending, settings, store, write, bar, jobs)
        else:
            for job, job_id in pending:
                store.set_status(job_id, "running")
                write(job, job_id, execute_job(job, settings))
                bar.update(1)
    finally:
        bar.close()
    store.finish_run(run_id, "finished" if not summary.failed else "failed")
    return summary


def _job_threads(settings: RunSettings, executor: str, jobs: int, ray_cpus: float) -> int:
    """The torch thread count each job trains with (it changes the numbers: provenance)."""
    if settings.threads:
        return settings.threads
    if executor == "ray":
        return max(1, int(ray_cpus))
    if jobs > 1:
        return max(1, (os.cpu_count() or 1) // jobs)
    return torch.get_num_threads()


def _run_processes(pending, settings, store, write, bar, workers: int) -> None:
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from multiprocessing import get_context

    threads = settings.threads or max(1, (os.cpu_count() or 1) // workers)
    settings = RunSettings(**{**settings.__dict__, "threads": threads, "quiet": True})
    # spawn: a forked child would inherit torch's thread pools from this process
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        futures = {}
        for job, job_id in pending:
            store.set_status(job_id, "running")
            futures[pool.submit(execute_job, job, settings)] = (job, job_id)
        for future in as_completed(futures):
            job, job_id = futures[future]
            write(job, job_id, future.result())
            bar.update(1)


def _run_ray(pending, settings, store, write, bar, address, cpus, gpus) -> None:
    try:
        import ray
    except ImportError:
        raise RobustBenchError(
            "the ray executor needs Ray: pip install 'robustbench-norm[ray]'"
        ) from None
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, include_dashboard=False, log_to_driver=not settings.quiet)
    # every job writes checkpoints and reads the corruption cache: absolute paths for workers
    settings = RunSettings(
        **{
            **settings.__dict__,
            "workdir": str(Path(settings.workdir).resolve()),
            "cache_dir": str(Path(settings.cache_dir or default_cache_dir()).resolve()),
            "threads": settings.threads or max(1, int(cpus)),
            "quiet": True,
        }
    )
    remote = ray.remote(execute_job).options(num_cpus=cpus, num_gpus=gpus)
    try:
        refs = {}
        for job, job_id in pending:
            store.set_status(job_id, "running")
            refs[remote.remote(job, settings)] = (job, job_id)
        while refs:
            done, _ = ray.wait(list(refs), num_returns=1)
            job, job_id = refs.pop(done[0])
            write(job, job_id, ray.get(done[0]))
            bar.update(1)
    finally:
        if started_here:
            ray.shutdown()
