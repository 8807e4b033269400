"""Learning curves from a ``curves`` run (``suites/curves.py``): a table, a plot and the
plateau budget.

The **plateau budget** is the smallest budget B of the ladder at which every (model, norm,
batch size) reaches a mean clean accuracy within ``tolerance`` (0.01) of its mean at 2B: from
there, doubling the training changes no layer's accuracy by more than a point, so a verdict
at B is about trained networks, not about learning speed. When no rung qualifies, the page says
so, with the largest doubling measured and how much each layer still gained across it. Means
are over seeds, each a separate draw; the seeds' values are printed beside them, since with two
seeds a mean moves by about half a seed spread.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from robustbench_norm.data import dataset_info
from robustbench_norm.errors import RobustBenchError
from robustbench_norm.reporting import plots
from robustbench_norm.suites.store import Store

#: a layer is at its plateau when doubling the budget moves its mean accuracy by at most this
TOLERANCE = 0.01
ARM = ["model", "norm", "batch_size"]


@dataclass
class Plateau:
    """The ladder's verdict: the plateau budget, or the largest doubling measured."""

    budget: int | None
    tolerance: float
    #: the doubling the gains are measured over: (B, 2B) at the plateau, else the largest
    pair: tuple[int, int] | None
    #: (model, norm, batch size) → mean accuracy at 2B − at B
    gains: dict[tuple, float] = field(default_factory=dict)

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
        return (
            f"**No plateau within the ladder.** The largest doubling measured, {low} → {high}, "
            f"still moves some layer by more than {self.tolerance} (gain: {gains}); the "
            "plateau lies beyond it."
        )


def curve_frame(store: Store, run_id: int) -> pd.DataFrame:
    """One row per finished ladder job: model, norm, batch_size, seed, images, status, value
    (clean accuracy; None for a diverged run), wall_seconds."""
    accuracy = {
        r["job_id"]: r["value"]
        for r in store.results_of_run(run_id)
        if r["family"] == "clean" and r["metric"] == "accuracy"
    }
    rows = []
    for j in store.jobs_of_run(run_id):
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
                "wall_seconds": j["wall_seconds"],
            }
        )
    columns = [*ARM, "seed", "images", "status", "value", "wall_seconds"]
    return pd.DataFrame(rows, columns=columns)


def decide_plateau(frame: pd.DataFrame, tolerance: float = TOLERANCE) -> Plateau:
    """The smallest budget B whose doubling 2B moves no layer's mean accuracy by more than
    ``tolerance`` (see the module docstring). Only whole doublings count: every layer finished
    with every seed at both budgets (a rung cut off half-way would compare one seed's value)."""
    done = frame[frame.status == "done"]
    means = done.groupby([*ARM, "images"]).value.mean()
    runs = frame.groupby([*ARM, "images"]).size()
    seeds = frame.seed.nunique()
    arms = list(dict.fromkeys(map(tuple, frame[ARM].itertuples(index=False))))
    budgets = sorted(set(frame.images))

    def whole(arm: tuple, budget: int) -> bool:
        key = (*arm, budget)
        return runs.get(key, 0) == seeds and key in means.index

    last = None
    for low in budgets:
        high = 2 * low
        if high not in budgets or not all(whole(a, b) for a in arms for b in (low, high)):
            continue
        gains = {a: float(means[(*a, high)] - means[(*a, low)]) for a in arms}
        last = Plateau(None, tolerance, (low, high), gains)
        if all(abs(g) <= tolerance for g in gains.values()):
            last.budget = low
            return last
    return last or Plateau(None, tolerance, None)


def write_curves(store: Store, run_id: int, out_dir: str | Path) -> list[Path]:
    """The learning-curve folder of a ``curves`` run: README.md, curves.csv, curves.png and
    ladder.toml, each a function of the store alone."""
    run = store.run(run_id)
    frame = curve_frame(store, run_id)
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
