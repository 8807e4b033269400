"""Learning curves from a ``curves`` run (``suites/curves.py``): a table, a plot and the
plateau budget.

The **plateau budget** is the smallest budget B of the ladder at which every (model, norm,
batch size) reaches a mean clean accuracy within ``tolerance`` (0.01) of its mean at 2B: from
there, doubling the training changes no layer's accuracy by more than a point, so a verdict
at B is about trained networks, not about learning speed. When no rung qualifies, the page says
so, with the largest doubling measured and how much each layer still gained across it. Means
are over seeds, each a separate draw; the seeds' values are printed beside them, since with two
seeds a mean moves by about half a seed spread.

**Borrowed runs.** A rung can also come from another run that trained exactly a ladder arm's
settings at some budget — a publication on fresh seeds (``curves --with STORE:RUN``). Only
fields that do not change the experiment may differ (:data:`NEUTRAL`: the seed, the budget,
what is logged or measured along the way, the memory layout); each borrowed row names its
source on the page.

**How far to the plateau.** Where the ladder ends below its plateau, the page estimates what is
left above its largest budget from the last two doublings: gains that shrink by a ratio r per
doubling sum to g·r/(1 − r) beyond the last gain g. It is an extrapolation (geometric decay is
what the measured rungs show, not a law), printed as such beside the measured gains.

**How far each budget is below the largest.** A verdict is made at one budget; what matters to
its reader is how much accuracy that budget leaves unlearned, not only the last doubling's gain.
The page prints, per layer, the mean at the largest whole rung minus the mean at each smaller
one (:func:`shortfall`): measured, not extrapolated. Each difference carries its standard error,
√(s_T²/n_T + s_B²/n_B) with every seed a separate draw (Welch's), since a criterion such as
"within 0.02" is met or missed by less than that when the two means are 0.0205 apart.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import pandas as pd

from robustbench_norm.data import dataset_info
from robustbench_norm.errors import RobustBenchError
from robustbench_norm.reporting import plots
from robustbench_norm.suites.store import Store

#: a layer is at its plateau when doubling the budget moves its mean accuracy by at most this
TOLERANCE = 0.01
ARM = ["model", "norm", "batch_size"]
#: training fields that do not change what a run measures: the draw, the budget, what is
#: logged or measured on the way (training/stability.py: the measures do not touch training)
#: and the memory layout (the same float32 arithmetic in another summation order)
NEUTRAL = (
    "seed", "images", "steps", "epochs", "stability", "log_every", "channels_last", "compile",
)  # fmt: skip
LADDER = "ladder"


@dataclass
class Plateau:
    """The ladder's verdict: the plateau budget, or the largest doubling measured."""

    budget: int | None
    tolerance: float
    #: the doubling the gains are measured over: (B, 2B) at the plateau, else the largest
    pair: tuple[int, int] | None
    #: (model, norm, batch size) → mean accuracy at 2B − at B
    gains: dict[tuple, float] = field(default_factory=dict)
    #: (model, norm, batch size) → (largest budget measured, the gain still expected above it
    #: by geometric extrapolation of its last two doublings; None without two positive gains)
    remaining: dict[tuple, tuple[int, float | None]] = field(default_factory=dict)

    def sentence(self, train_size: int) -> str:
        if self.pair is None:
            return (
                "No plateau can be decided yet: no budget has been measured at twice its size "
                "for every layer."
            )
        low, high = (_budget_label(b, train_size) for b in self.pair)
        gains = ", ".join(f"{_arm_label(a)} {g:+.3f}" for a, g in self.gains.items())
        if self.budget is not None:
            return (
                f"**Plateau budget: {low}.** Every layer's mean clean accuracy at {high} is "
                f"within {self.tolerance} of its accuracy at {low} (gain from doubling: {gains})."
            )
        estimated = [r for _, r in self.remaining.values() if r is not None]
        beyond = (
            f" Extrapolated from the last two doublings, each layer is still "
            f"{min(estimated):.3f}–{max(estimated):.3f} below its plateau at the largest "
            "budget measured (table below)."
            if estimated else ""
        )  # fmt: skip
        return (
            f"**No plateau within the ladder.** The largest doubling measured, {low} → {high}, "
            f"still moves some layer by more than {self.tolerance} (gain: {gains}); the "
            "plateau lies beyond it." + beyond
        )


COLUMNS = [*ARM, "seed", "images", "status", "value", "wall_seconds", "source"]


def curve_frame(store: Store, run_id: int, borrowed: list[tuple[Store, int]] = ()) -> pd.DataFrame:
    """One row per finished ladder job: model, norm, batch_size, seed, images, status, value
    (clean accuracy; None for a diverged run), wall_seconds, source (``ladder``, or
    ``STORE:RUN`` for a borrowed run, see the module docstring)."""
    ladder_jobs = store.jobs_of_run(run_id)
    rows = _rows(store, run_id, ladder_jobs, LADDER)
    arms = {_setting(j["spec"]["train"]) for j in ladder_jobs}
    for other, other_run in borrowed:
        jobs = [j for j in other.jobs_of_run(other_run)
                if j["regularizer"] == "none" and _setting(j["spec"]["train"]) in arms]  # fmt: skip
        if not jobs:
            raise RobustBenchError(
                f"--with {other.path}:{other_run}: no unregularized job of that run trains a "
                "ladder arm's settings (only the seed, budget, logging, measures and memory "
                f"layout may differ: {', '.join(NEUTRAL)})"
            )
        rows += _rows(other, other_run, jobs, f"{other.path}:{other_run}")
    return pd.DataFrame(rows, columns=COLUMNS)


def _setting(train: dict) -> str:
    return json.dumps({k: v for k, v in train.items() if k not in NEUTRAL}, sort_keys=True)


def _rows(store: Store, run_id: int, jobs: list[dict], source: str) -> list[dict]:
    accuracy = {
        r["job_id"]: r["value"]
        for r in store.results_of_run(run_id)
        if r["family"] == "clean" and r["metric"] == "accuracy"
    }
    rows = []
    for j in jobs:
        images = (j["spec"].get("train") or {}).get("images")
        if j["status"] not in ("done", "diverged") or images is None:
            continue
        rows.append(
            {
                "model": j["model"],
                "norm": j["norm"],
                "batch_size": j["batch_size"],
                "seed": j["seed"],
                "images": images,
                "status": j["status"],
                "value": accuracy.get(j["id"]),
                "wall_seconds": j["job_seconds"],
                "source": source,
            }
        )
    return rows


def decide_plateau(frame: pd.DataFrame, tolerance: float = TOLERANCE) -> Plateau:
    """The smallest budget B whose doubling 2B moves no layer's mean accuracy by more than
    ``tolerance`` (see the module docstring). Only whole doublings count: every layer finished
    with every seed at both budgets (a rung cut off half-way would compare one seed's value)."""
    means, arms, whole = _rungs(frame)
    budgets = sorted(set(frame.images))
    last = None
    for low in whole:
        high = 2 * low
        if high not in whole:
            continue
        gains = {a: float(means[(*a, high)] - means[(*a, low)]) for a in arms}
        last = Plateau(None, tolerance, (low, high), gains)
        if all(abs(g) <= tolerance for g in gains.values()):
            last.budget = low
            return last
    if last is None:
        return Plateau(None, tolerance, None)
    last.remaining = {a: _remaining(means, a, budgets) for a in arms}
    return last


def _rungs(frame: pd.DataFrame) -> tuple[pd.Series, list[tuple], list[int]]:
    """(mean accuracy per arm and budget, the arms, the budgets whose rung is whole: every arm
    finished with every ladder seed, since a rung cut off half-way would compare one seed's
    value with another's mean)."""
    done = frame[frame.status == "done"]
    means = done.groupby([*ARM, "images"]).value.mean()
    runs = frame.groupby([*ARM, "images"]).size()
    # a whole rung has as many runs as the ladder has seeds (borrowed runs may add more)
    seeds = frame[frame.source == LADDER].seed.nunique() if "source" in frame else 0
    seeds = seeds or frame.seed.nunique()
    arms = list(dict.fromkeys(map(tuple, frame[ARM].itertuples(index=False))))
    whole = [
        b
        for b in sorted(set(frame.images))
        if all(runs.get((*a, b), 0) >= seeds and (*a, b) in means.index for a in arms)
    ]
    return means, arms, whole


class Gap(NamedTuple):
    """Mean at T − mean at B, and its standard error (see the module docstring); the error is
    None when either budget has a single run, whose spread is unknown."""

    value: float
    se: float | None


def shortfall(frame: pd.DataFrame) -> tuple[int | None, dict[tuple, dict[int, Gap]]]:
    """(the largest whole budget T, arm → budget B → :class:`Gap` of mean at T − mean at B):
    what a verdict at a smaller budget leaves unlearned against the best accuracy measured for
    every layer. Once the ladder holds the plateau budget, T is at or above it, so this is each
    budget's distance from the measured plateau. (None, {}) with fewer than two whole rungs."""
    means, arms, whole = _rungs(frame)
    if len(whole) < 2:
        return None, {}
    top = whole[-1]
    by_rung = frame[frame.status == "done"].groupby([*ARM, "images"]).value
    share = by_rung.var(ddof=1) / by_rung.count()  # s²/n of each mean; NaN for one run

    def gap(arm: tuple, budget: int) -> Gap:
        spread = share[(*arm, top)] + share[(*arm, budget)]
        se = None if math.isnan(spread) else math.sqrt(spread)
        return Gap(float(means[(*arm, top)] - means[(*arm, budget)]), se)

    return top, {a: {b: gap(a, b) for b in whole[:-1]} for a in arms}


def _remaining(means: pd.Series, arm: tuple, budgets: list[int]) -> tuple[int, float | None]:
    """(largest budget with a mean, the gain still expected above it): the last two doubling
    gains g₁, g₂ shrink by r = g₂/g₁ per doubling, so g₂·r/(1 − r) is left (see the module
    docstring). None unless both gains are positive and shrink by at least a tenth (near
    r = 1 the sum has no useful bound)."""
    have = [b for b in budgets if (*arm, b) in means.index]
    top = have[-1]
    if len(have) < 3 or have[-2] * 2 != top or have[-3] * 2 != have[-2]:
        return top, None
    g1 = means[(*arm, have[-2])] - means[(*arm, have[-3])]
    g2 = means[(*arm, top)] - means[(*arm, have[-2])]
    if g1 <= 0 or g2 <= 0 or g2 / g1 > 0.9:
        return top, None
    r = g2 / g1
    return top, float(g2 * r / (1 - r))


def write_curves(
    store: Store, run_id: int, out_dir: str | Path, borrowed: list[tuple[Store, int]] = ()
) -> list[Path]:
    """The learning-curve folder of a ``curves`` run: README.md, curves.csv, curves.png and
    ladder.toml, each a function of the store (and the borrowed runs' stores) alone."""
    run = store.run(run_id)
    frame = curve_frame(store, run_id, borrowed)
    if frame.empty:
        raise RobustBenchError(
            f"run {run_id} ({run['suite']}) in {store.path} has no finished ladder job yet; "
            "rerun the same `curves` command to continue it"
        )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    train_size = dataset_info(store.jobs_of_run(run_id)[0]["spec"]["train"]["dataset"]).train_size
    plateau = decide_plateau(frame)
    png = plots.learning_curves(frame[frame.status == "done"], out / "curves.png")
    frame.to_csv(out / "curves.csv", index=False)
    (out / "ladder.toml").write_text(run["suite_toml"])
    (out / "README.md").write_text(_markdown(run, frame, plateau, train_size, png.name))
    return [out / "README.md", out / "curves.csv", png, out / "ladder.toml"]


# -- the page ------------------------------------------------------------------------------------


def _markdown(run: dict, frame: pd.DataFrame, plateau: Plateau, train_size: int, png: str) -> str:
    budgets = sorted(set(frame.images))
    seeds = sorted(set(frame.seed))
    total = len(frame)
    hours = frame.wall_seconds.sum() / 3600
    status = "complete" if run["status"] == "finished" else f"{run['status']}: partial"
    md = [
        f"# Learning curves: {run['suite']}",
        "",
        f"Clean accuracy on the whole test set against the training budget (images per run; "
        f"{train_size:,} images make one epoch). Each run trains its own full schedule at its "
        "budget (the cosine schedule anneals at every budget), for seeds "
        f"{', '.join(map(str, seeds))}. Run {run['id']} ({status}): {total} finished runs, "
        f"{hours:.1f} h of job time.",
        "",
        plateau.sentence(train_size),
        "",
        f"![learning curves]({png})",
        "",
        "## Mean clean accuracy (each seed's value in brackets)",
        "",
    ]
    head = ["model · norm · bs", *(_budget_label(b, train_size) for b in budgets)]
    md += ["| " + " | ".join(head) + " |", "|---|" + "---:|" * len(budgets)]
    for arm, group in frame.groupby(ARM, sort=False):
        cells = []
        for b in budgets:
            rung = group[group.images == b].sort_values("seed")
            cells.append(_cell(rung))
        md.append(f"| {_arm_label(arm)} | " + " | ".join(cells) + " |")
    md += ["", "## Gain from doubling the budget (mean at 2B − mean at B)", ""]
    pairs = [b for b in budgets if 2 * b in budgets]
    if pairs:
        labels = [f"{_budget_label(b, train_size)} → ×2" for b in pairs]
        md += ["| model · norm · bs | " + " | ".join(labels) + " |", "|---|" + "---:|" * len(pairs)]
        for arm, group in frame[frame.status == "done"].groupby(ARM, sort=False):
            means = group.groupby("images").value.mean()
            gains = [
                f"{means[2 * b] - means[b]:+.3f}" if b in means and 2 * b in means else "—"
                for b in pairs
            ]
            md.append(f"| {_arm_label(arm)} | " + " | ".join(gains) + " |")
    md += _remaining_markdown(plateau, train_size)
    md += _shortfall_markdown(frame, train_size)
    borrowed = sorted(set(frame.source) - {LADDER})
    if borrowed:
        md += ["", "## Borrowed runs", ""]
        for source in borrowed:
            rows = frame[frame.source == source]
            budgets = ", ".join(_budget_label(b, train_size) for b in sorted(set(rows.images)))
            seeds = ", ".join(map(str, sorted(set(rows.seed))))
            md.append(
                f"- `{source}`: {len(rows)} runs at {budgets}, seeds {seeds} — the same "
                f"training as the ladder's arms but for {', '.join(NEUTRAL)}"
            )
    p = run["provenance"]
    md += [
        "",
        "## Provenance",
        "",
        f"Run {run['id']}, started {run['started']}, git {(p.get('git_sha') or '?')[:12]}; "
        f"CPU {p.get('cpu_model')}, {p.get('torch_threads')} torch thread(s) per job, torch "
        f"{p.get('packages', {}).get('torch')}. `curves.csv` holds every run; `ladder.toml` the "
        "ladder and the training settings it ran; `store.sqlite` the run itself.",
        "",
    ]
    return "\n".join(md)


def _remaining_markdown(plateau: Plateau, train_size: int) -> list[str]:
    if not plateau.remaining or plateau.budget is not None:
        return []
    md = [
        "",
        "## How far each layer still is from its plateau (extrapolated)",
        "",
        "At the largest budget measured for it, the gain still expected from the last two "
        "doublings if each keeps shrinking by their ratio (see reporting/curves.py): an "
        "estimate, not a measurement.",
        "",
        "| model · norm · bs | largest budget | still to gain (estimate) |",
        "|---|---:|---:|",
    ]
    for arm, (budget, left) in plateau.remaining.items():
        shown = "—" if left is None else f"{left:.3f}"
        md.append(f"| {_arm_label(arm)} | {_budget_label(budget, train_size)} | {shown} |")
    return md


def _shortfall_markdown(frame: pd.DataFrame, train_size: int) -> list[str]:
    top, below = shortfall(frame)
    if top is None:
        return []
    budgets = sorted(next(iter(below.values())))
    top_label = _budget_label(top, train_size)
    md = [
        "",
        f"## How far each budget is below the largest one measured (mean at {top_label} − "
        "mean at B)",
        "",
        "What a verdict at a smaller budget leaves unlearned, against the largest budget every "
        "layer finished with every seed; ± one standard error of the difference (Welch's, each "
        "seed a separate draw).",
        "",
        "| model · norm · bs | " + " | ".join(_budget_label(b, train_size) for b in budgets) + " |",
        "|---|" + "---:|" * len(budgets),
    ]
    for arm, by_budget in below.items():
        md.append(
            f"| {_arm_label(arm)} | " + " | ".join(_gap_cell(by_budget[b]) for b in budgets) + " |"
        )
    return md


def _gap_cell(gap: Gap) -> str:
    return f"{gap.value:+.3f}" + ("" if gap.se is None else f" ± {gap.se:.3f}")


def _cell(rung: pd.DataFrame) -> str:
    if rung.empty:
        return "—"
    values = [v for v in rung.value if v is not None and not math.isnan(v)]
    diverged = int((rung.status == "diverged").sum())
    seeds = " / ".join(f"{v:.3f}" for v in values)
    text = f"{sum(values) / len(values):.3f} ({seeds})" if values else ""
    return text + (f" {diverged} diverged" if diverged else "")


def _arm_label(arm: tuple) -> str:
    model, norm, bs = arm
    return f"{model} · {norm} · bs {bs}"


def _budget_label(images: int, train_size: int) -> str:
    return f"{images:,} ({images / train_size:.2g} ep)"
