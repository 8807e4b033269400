"""What a suite will cost before it runs: its job matrix, the work it implies and, from the
durations of jobs already in a store, an estimate of the time it will take."""

from __future__ import annotations

import os
import statistics
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from robustbench_norm.data import dataset_info
from robustbench_norm.evaluation import CorruptionSpec, NoiseSequenceSpec, NoiseSpec
from robustbench_norm.perturb.attacks import format_epsilon
from robustbench_norm.specs import canonical_json
from robustbench_norm.suites.suite import JobSpec, Suite
from robustbench_norm.training import TrainSpec


def describe_plan(suite: Suite, store_path: str | Path | None = None) -> str:
    """The job matrix and the work it implies, without running anything; with a store, also
    which jobs it already holds (``run`` reuses them) and the time the rest should take (see
    :func:`estimate_seconds`)."""
    n_train = dataset_info(suite.dataset).train_size
    done = _finished_jobs(suite, Path(store_path)) if store_path is not None else {}
    lines = [f"suite {suite.name!r} ({suite.path}): {len(suite.jobs)} jobs"]
    if suite.description:
        lines.append(f"  {suite.description}")
    seed_width = max(5, *(len(str(j.train.seed)) + 1 for j in suite.jobs))
    lines.append(
        f"  {'#':>3}  {'model':<9}{'norm':<18}{'batch':>6}{'seed':>{seed_width}}  regularizer"
    )
    steps_total = images_total = 0
    for i, job in enumerate(suite.jobs):
        t = job.train
        where = f"  (in the store: {done[i]})" if i in done else ""
        lines.append(
            f"  {i:>3}  {t.model:<9}{job.label:<18}{t.batch_size:>6}{t.seed:>{seed_width}}  "
            f"{job.regularizer}{where}"
        )
        steps = t.total_steps(n_train)
        steps_total += steps
        images_total += steps * t.batch_size
    lines.append("work:")
    lines.append(
        f"  training: {steps_total:,} optimizer steps in all, {images_total:,} training images "
        f"seen ({n_train:,} in the training set)"
    )
    for e in suite.evaluations:
        limits = [x for x in (e.limit, suite.test_limit) if x is not None]
        n = min(limits) if limits else "all"
        lines.append(f"  evaluate: {_describe_eval(e.spec)} on {n} test images per job")
    plan = suite.test_statistics
    if plan is not None:
        settings = ", ".join(s.label for s, full in plan.settings() if full)
        sweep = ", ".join(s.label for s, full in plan.settings() if not full)
        lines.append(
            f"  evaluate again, models with running statistics (unregularized jobs): {settings} "
            "on every family but attacks" + (f"; {sweep} on clean and noise" if sweep else "")
        )
    lines.append(f"  reference for CE/mCE: {suite.reference}")
    if store_path is not None:
        if done:
            lines.append(
                f"store: {len(done)} of the {len(suite.jobs)} jobs are finished in {store_path} "
                "(with the compute setting shown; `run` with that setting reuses them)"
            )
        lines.append(_estimate_line(suite, Path(store_path), skip=set(done)))
    return "\n".join(lines)


def _finished_jobs(suite: Suite, store_path: Path) -> dict[int, str]:
    """Job index → the compute setting under which the store holds it finished. A job's key
    includes where it trains (device type and CPU threads, fixed when a run starts), so every
    setting this machine could run with is tried."""
    from robustbench_norm.errors import RobustBenchError
    from robustbench_norm.suites.store import Store

    if not store_path.exists():
        return {}
    tags = ["cuda", *(f"cpu-{n}threads" for n in range(1, (os.cpu_count() or 1) + 1))]
    try:
        with Store.open(store_path, read_only=True) as store:
            return {
                i: tag
                for i, job in enumerate(suite.jobs)
                for tag in tags
                if store.finished_job(replace(job, compute=tag).key) is not None
            }
    except RobustBenchError:
        return {}


def _describe_eval(spec) -> str:
    if isinstance(spec, NoiseSpec):
        return f"Gaussian noise σ {list(spec.sigmas)}"
    if isinstance(spec, NoiseSequenceSpec):
        return f"noise sequences ({spec.frames} frames: clean + fresh noise at σ {spec.sigma})"
    if isinstance(spec, CorruptionSpec):
        table = "" if spec.table == "imagenet-c" else f" ({spec.table} table)"
        return f"{len(spec.names)} corruptions × severities {list(spec.severities)}{table}"
    return f"{spec.name} ε {', '.join(format_epsilon(e) for e in spec.epsilons)}"


def price_jobs(jobs: Sequence[JobSpec], recorded: list[tuple[dict, float]]) -> list[float | None]:
    """Seconds each job should take in one process (None: no recorded job to go by).

    A job is priced at the median duration of recorded jobs identical to it but for the seed
    (an interrupted publication's other seeds), else at the median seconds per optimizer step
    of recorded jobs with the same model, width, dataset, norm and batch size, else the same but
    any norm, times its own steps. The exact match comes first because evaluation, not
    training, can dominate a job: an unregularized BN job of the standard suite also sweeps
    test-time statistics at batch 1 over the test set, and takes several times as long as its
    dropout twin."""
    same: dict[str, list[float]] = {}
    rates: dict[tuple, list[float]] = {}
    for spec, seconds in recorded:
        if "train" not in spec:  # an external model's evaluation: nothing trained to go by
            continue
        same.setdefault(_seedless(spec), []).append(seconds)
        train = spec["train"]
        steps = _total_steps(TrainSpec.from_dict(train))
        for key in (_key(train, True), _key(train, False)):
            rates.setdefault(key, []).append(seconds / max(1, steps))
    prices: list[float | None] = []
    for job in jobs:
        spec = job.to_dict()
        twins = same.get(_seedless(spec))
        if twins:
            prices.append(statistics.median(twins))
            continue
        rate = rates.get(_key(spec["train"], True)) or rates.get(_key(spec["train"], False))
        prices.append(None if rate is None else statistics.median(rate) * _total_steps(job.train))
    return prices


def estimate_seconds(suite: Suite, recorded: list[tuple[dict, float]]) -> tuple[float, int]:
    """Seconds the suite's jobs should take in one process, and how many jobs had no recorded
    job to go by (see :func:`price_jobs`)."""
    prices = price_jobs(suite.jobs, recorded)
    return sum(p for p in prices if p is not None), prices.count(None)


def progress_weights(store, jobs: Sequence[JobSpec]) -> tuple[dict[str, int], str]:
    """Each job's share of a run's progress bar (by key) and the bar's unit: its price in
    seconds when ``store`` prices every job, else its optimizer steps. Steps alone misjudge a
    suite of mixed batch sizes several times over (a batch-8 step costs a fraction of a
    batch-64 step, and evaluation costs no steps): they put the standard publication's ETA at
    40 hours with about 10 left."""
    prices = price_jobs(jobs, store.finished_job_seconds())
    if all(p is not None for p in prices):
        return {
            job.key: max(1, round(p)) for job, p in zip(jobs, prices, strict=True)
        }, "job-second"
    return {job.key: _total_steps(job.train) for job in jobs}, "step"


def _total_steps(train: TrainSpec) -> int:
    return train.total_steps(dataset_info(train.dataset).train_size)


def _seedless(spec: dict) -> str:
    """A job spec without its seed and compute setting: the jobs that should cost the same."""
    train = {k: v for k, v in spec["train"].items() if k != "seed"}
    return canonical_json({**spec, "train": train, "compute": None})


def _key(train: dict, with_norm: bool) -> tuple:
    base = (train["model"], train["width"], train["dataset"], train["batch_size"])
    return (*base, train["norm"]) if with_norm else base


def _estimate_line(suite: Suite, store_path: Path, skip: set[int] = frozenset()) -> str:
    from robustbench_norm.errors import RobustBenchError
    from robustbench_norm.suites.store import Store

    try:
        with Store.open(store_path, read_only=True) as store:
            recorded = store.finished_job_seconds()
    except RobustBenchError as e:  # a missing store is normal before the first run
        reason = f"{store_path} does not exist yet" if not store_path.exists() else str(e)
        return f"time: no estimate ({reason})"
    if skip:  # priced: only what `run` would compute
        remaining = tuple(j for i, j in enumerate(suite.jobs) if i not in skip)
        if not remaining:
            return "time: none; every job is in the store already"
        suite = replace(suite, jobs=remaining)
    seconds, unknown = estimate_seconds(suite, recorded)
    if unknown == len(suite.jobs):
        return (
            f"time: no estimate ({store_path} holds no finished job of this model, width, "
            "dataset and batch size)"
        )
    known = len(suite.jobs) - unknown
    line = (
        f"time: about {seconds / 60:.0f} min in one process for the {known} jobs priced from "
        f"{len(recorded)} recorded jobs in {store_path} (÷ N with --jobs N on enough cores; "
        "recorded on this store's machine)"
    )
    return line + (f"; {unknown} jobs have no comparable recorded job" if unknown else "")
