"""Learning curves: a suite's layers trained at a ladder of budgets, to find where they plateau.

A verdict about normalization layers is about trained networks only if every layer has learned
what it can at the suite's budget; otherwise it measures how fast each layer *starts* to learn.
The ladder trains each (model, norm, batch size) of a suite's unregularized jobs at every budget
(training images per run) for a few fresh seeds, each run a full schedule of its own (the
cosine schedule anneals to zero at every budget: a checkpoint in the middle of a longer run
would still have a high learning rate), and measures clean accuracy on the whole test set.
Santurkar measures and perturbations are left out: they do not change training
(training/stability.py) and cost time.

The ladder is an ordinary run of a derived suite (``<suite>-curves``), so it resumes, claims
jobs and records provenance like any run. Jobs are ordered by budget, so an interrupted ladder
has whole rungs. ``reporting/curves.py`` reads it back and decides the plateau.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace

from robustbench_norm.errors import RobustBenchError
from robustbench_norm.specs import canonical_json, check_seed
from robustbench_norm.suites.suite import JobSpec, Suite
from robustbench_norm.training import TrainSpec
from robustbench_norm.training.stability import StabilitySpec

#: the derived suite's name: ``<suite>-curves``
SUFFIX = "-curves"


@dataclass(frozen=True)
class Ladder:
    """Which budgets (training images per run), seeds, norm labels and batch sizes to train;
    None: all of the suite's."""

    budgets: tuple[int, ...]
    seeds: tuple[int, ...]
    norms: tuple[str, ...] | None = None
    batch_sizes: tuple[int, ...] | None = None

    def validate(self, suite: Suite) -> None:
        for name, values in (("--budgets", self.budgets), ("--seeds", self.seeds)):
            if not values or len(set(values)) < len(values):
                raise RobustBenchError(f"curves: {name} {list(values)} must be distinct values")
        for seed in self.seeds:
            check_seed(seed, "curves: --seeds")
        sizes = {j.train.batch_size for j in suite.jobs}
        smallest = min(self.batch_sizes or sizes)
        if min(self.budgets) < smallest:
            raise RobustBenchError(
                f"curves: --budgets {min(self.budgets)} is less than one batch of "
                f"{smallest}; budgets are training images per run"
            )
        for flag, chosen, known in (
            ("--norms", self.norms, suite.norms),
            ("--batch-sizes", self.batch_sizes, sorted(sizes)),
        ):
            unknown = [c for c in chosen or () if c not in known]
            if unknown:
                raise RobustBenchError(
                    f"curves: {flag} {unknown} not in suite {suite.name!r}: {list(known)}"
                )


def curve_suite(suite: Suite, ladder: Ladder) -> Suite:
    """The ladder as a suite: one job per (budget, batch size, seed, model, norm), budgets in
    increasing order; clean accuracy on the full test set is its only evaluation."""
    ladder.validate(suite)
    bases: dict[tuple, JobSpec] = {}
    for job in suite.jobs:
        t = job.train
        keep = (ladder.norms is None or job.label in ladder.norms) and (
            ladder.batch_sizes is None or t.batch_size in ladder.batch_sizes
        )
        if keep and job.regularizer == "none":
            bases.setdefault((t.batch_size, t.model, job.label), job)
    jobs = []
    for budget in sorted(ladder.budgets):
        for batch_size in sorted({bs for bs, _, _ in bases}):
            for seed in ladder.seeds:
                for (bs, _, _), base in bases.items():
                    if bs != batch_size:
                        continue
                    jobs.append(JobSpec(base.label, _rung(base.train, budget, seed), (), None))
    return replace(
        suite,
        name=suite.name + SUFFIX,
        text=_ladder_text(suite.name, ladder, [b.train for b in bases.values()]),
        jobs=tuple(jobs),
        evaluations=(),
        test_limit=None,
        test_statistics=None,
    )


def _ladder_text(source: str, ladder: Ladder, bases: list[TrainSpec]) -> str:
    """The ladder's identity, as the run's suite text (``ladder.toml`` on its page): the
    training settings it varies around and the ladder itself, not the source suite's file, so
    that editing that suite's notes or evaluations does not orphan a ladder in progress."""
    settings = [
        {
            k: v
            for k, v in _rung(b, b.batch_size, 0).to_dict().items()
            if k not in ("seed", "images")
        }
        for b in bases
    ]
    lines = [
        f"# learning-curve ladder of suite {source!r}: `robustbench-norm curves`",
        f"name = {json.dumps(source + SUFFIX)}",
        f"budgets = {json.dumps(sorted(ladder.budgets))}",
        f"seeds = {json.dumps(list(ladder.seeds))}",
        f"norms = {json.dumps(list(ladder.norms or []))}  # [] = all of the suite's",
        f"batch_sizes = {json.dumps(list(ladder.batch_sizes or []))}",
        f"training = '''{canonical_json(settings)}'''",
    ]
    return "\n".join(lines) + "\n"


def _rung(train: TrainSpec, images: int, seed: int) -> TrainSpec:
    """A suite's training settings at one budget and seed, without the stability measures
    (they do not change training, and cost time)."""
    return replace(
        train, images=images, steps=None, epochs=1, seed=seed, stability=StabilitySpec(every=0)
    )
