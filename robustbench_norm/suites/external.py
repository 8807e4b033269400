"""Your own model on a suite's evaluations, recorded next to the suite's trained models.

``benchmark(model, suite, name=...)`` checks the model against the input contract
(evaluation/adapters.py), runs every evaluation of the suite on it (clean, noise, corruptions,
attacks: the same images, draws and seeds as the trained models saw; under the suite's test-time
statistics too when the model has BatchNorm layers), and records it in the store as a new run:
the latest finished run of the suite plus this model, so ``report`` puts it on the leaderboard
as a row ``NAME (external)`` beside the trained layers. Its job is keyed by the model's weights,
class and the evaluation code: benchmarking the same model again reuses the stored result.

An external model has no training runs behind it: it is one model, not a draw of a training
process, so its cells show its single value and the claims (which compare layers) ignore it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from robustbench_norm.data import dataset_info, load_split
from robustbench_norm.errors import RobustBenchError
from robustbench_norm.evaluation.adapters import InputAdapter
from robustbench_norm.provenance import provenance
from robustbench_norm.specs import RUNNING, code_version, spec_key
from robustbench_norm.suites.execute import RunSettings, evaluate_all
from robustbench_norm.suites.store import DEFAULT_STORE, JobOutcome, Store
from robustbench_norm.suites.suite import EVAL_CODE, Suite, load_suite
from robustbench_norm.training import resolve_device

#: appended to the name of an external model's row, so it is never read as a trained layer
EXTERNAL = " (external)"


@dataclass
class BenchmarkResult:
    run_id: int
    job_id: int
    label: str
    #: tidy rows: family, name, parameter, metric, value, statistics (``running`` or a
    #: test-time statistics setting)
    rows: list[dict]
    warnings: list[str]
    reused: bool

    @property
    def clean_accuracy(self) -> float:
        return next(
            r["value"] for r in self.rows if r["family"] == "clean" and r["statistics"] == RUNNING
        )


def benchmark(
    model: nn.Module,
    suite: Suite | str | Path,
    *,
    name: str,
    architecture: str | None = None,
    store: str | Path = DEFAULT_STORE,
    run: str | int = "latest",
    settings: RunSettings | None = None,
) -> BenchmarkResult:
    """Evaluate ``model`` on ``suite`` and record it beside the suite's run ``run`` (its latest
    finished one by default; none needed: without one the new run holds only this model).

    The row is ``NAME (external)``; its model label is ``architecture`` (default: the class of
    the model an :class:`InputAdapter` wraps, else the model's), and it has no batch size or
    seed (stored as 0: nothing trained it here). It stays on the suite's board: every later
    ``run`` of the suite carries it into its new run (while the suite's evaluations stay the
    same), until :func:`detach` takes it off. Benchmarking weights the board already shows
    changes nothing."""
    suite = suite if isinstance(suite, Suite) else load_suite(suite)
    settings = settings or RunSettings(quiet=True)  # where data and the corruption cache live
    device = resolve_device(settings.device)
    model = model.to(device).eval()
    check_contract(model, suite.dataset, device)
    label = name + EXTERNAL
    plan = suite.test_statistics
    inner = model.model if isinstance(model, InputAdapter) else model
    identity = {
        "name": name,
        "architecture": architecture or type(inner).__name__,
        "class": f"{type(inner).__module__}.{type(inner).__qualname__}",
        "wrapper": type(model).__name__ if inner is not model else None,
        "weights_sha256": _weights_hash(model),
    }
    spec = {
        "label": label,
        "external": identity,
        **evaluation_spec(suite),
    }
    key = spec_key(spec, code_version(*EVAL_CODE))
    with Store.open(store) as s:
        base = _base_run(s, run, suite.name)
        base_jobs = s.jobs_of_run(base) if base is not None else []
        shown = next((j for j in base_jobs if j["key"] == key and j["status"] == "done"), None)
        if shown is not None:  # already on the board: no new run
            return BenchmarkResult(
                base, shown["id"], label, _tidy(s, base, shown["id"]), shown["warnings"], True
            )
        labels = {
            "model": identity["architecture"],
            "norm": label,
            "batch_size": 0,  # none: an external model has no training batch or seed
            "seed": 0,
            "regularizer": "none",
        }
        facts = {**provenance(), "external_model": identity, "based_on_run": base}
        run_id = s.start_run(suite.name, suite.hash, suite.text, facts)
        for job in base_jobs:
            if job["norm"] != label:  # an earlier model under this name is replaced
                s.link(run_id, job["key"], job["id"])
        if base is not None:
            s.save_fingerprints(run_id, s.fingerprints_of_run(base))
        job_id = s.finished_job(key)
        reused = job_id is not None
        if reused:
            s.link(run_id, key, job_id)
            rows = _tidy(s, run_id, job_id)
            warnings = next(j["warnings"] for j in s.jobs_of_run(run_id) if j["id"] == job_id)
        else:
            job_id = s.add_job(run_id, key, spec, labels, "running")
            started = time.perf_counter()
            test = load_split(
                suite.dataset, "test", data_root=settings.data_root, download=settings.download
            ).subset(suite.test_limit)
            rows, flags, warnings = evaluate_all(
                model, test, suite.evaluations, device, settings, plan
            )
            seconds = time.perf_counter() - started
            outcome = JobOutcome(key, "done", None, None, seconds, {}, [], rows, flags, warnings)
            s.record(job_id, outcome)
        s.finish_run(run_id)
    return BenchmarkResult(run_id, job_id, label, rows, warnings, reused)


def evaluation_spec(suite: Suite) -> dict:
    """What an external model's result depends on besides the model: the suite's evaluations,
    test-time statistics, test images and dataset."""
    plan = suite.test_statistics
    return {
        "evaluations": [e.to_dict() for e in suite.evaluations],
        "test_statistics": None if plan is None else dataclasses.asdict(plan),
        "test_limit": suite.test_limit,
        "dataset": suite.dataset,
    }


def carried_over(store: Store, suite: Suite) -> tuple[list[dict], list[str]]:
    """The external models on the suite's latest finished board that a new run of the suite
    keeps (jobs to link), and the names of those it cannot keep because the suite's
    evaluations changed since they were measured (they must be benchmarked again)."""
    runs = [r for r in store.runs(suite.name) if r["status"] == "finished"]
    if not runs:
        return [], []
    jobs = [j for j in store.jobs_of_run(runs[-1]["id"]) if "external" in j["spec"]]
    current = json.loads(json.dumps(evaluation_spec(suite)))  # as stored: lists, not tuples
    keep = [j for j in jobs if {k: j["spec"].get(k) for k in current} == current]
    stale = [j["norm"] for j in jobs if j not in keep]
    return keep, stale


def detach(name: str, suite: str, *, store: str | Path = DEFAULT_STORE) -> int:
    """Take the external model ``name`` off the board of ``suite`` (a suite name): a new run
    holding the latest finished run's jobs but that model's. Its stored result stays (a later
    :func:`benchmark` of the same weights reuses it). Returns the new run's id."""
    label = name + EXTERNAL
    with Store.open(store, create=False) as s:  # a missing store is a typo, not a new board
        base = _base_run(s, "latest", suite)
        if base is None:
            raise RobustBenchError(f"store {store} has no run of suite {suite!r}")
        jobs = s.jobs_of_run(base)
        if not any(j["norm"] == label for j in jobs):
            shown = sorted(j["norm"] for j in jobs if j["norm"].endswith(EXTERNAL))
            raise RobustBenchError(
                f"{name!r} is not on the latest board of suite {suite!r} (external models "
                f"there: {', '.join(shown) or 'none'})"
            )
        old = s.run(base)
        facts = {**provenance(), "detached_external_model": name, "based_on_run": base}
        run_id = s.start_run(suite, old["suite_hash"], old["suite_toml"], facts)
        for job in jobs:
            if job["norm"] != label:
                s.link(run_id, job["key"], job["id"])
        s.save_fingerprints(run_id, s.fingerprints_of_run(base))
        s.finish_run(run_id)
    return run_id


def _tidy(store: Store, run_id: int, job_id: int) -> list[dict]:
    tidy = ("family", "name", "parameter", "metric", "value", "statistics")
    return [
        {k: r[k] for k in tidy}
        for r in store.results_of_run(run_id, statistics=None)
        if r["job_id"] == job_id
    ]


def check_contract(model: nn.Module, dataset: str, device: torch.device) -> None:
    """Fail with the fix when ``model`` does not take the dataset's [0, 1] images or does not
    return one logit per class."""
    info = dataset_info(dataset)
    probe = torch.rand(2, info.in_channels, 32, 32, device=device)
    try:
        with torch.no_grad():
            out = model(probe)
    except RuntimeError as e:
        raise RobustBenchError(
            f"the model failed on {dataset}'s input, float (N, {info.in_channels}, 32, 32) in "
            f"[0, 1] ({str(e).splitlines()[0]}); wrap it in robustbench_norm.InputAdapter(model, "
            "channels=..., mean=..., std=...) to change channels and normalize inside"
        ) from None
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (2, info.num_classes):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise RobustBenchError(
            f"the model returned {shape} for 2 images; the benchmark needs (2, "
            f"{info.num_classes}) logits, one per class of {dataset}"
        )


def _base_run(store: Store, ref: str | int, suite: str) -> int | None:
    if ref == "latest" and not store.runs(suite):
        return None
    return store.resolve_run(ref, suite)


def _weights_hash(model: nn.Module) -> str:
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()
