"""PNG plots of a run: curves with mean ± 95 % interval over runs (the runs as dots below 3),
one line per norm, a legend and axis labels on every panel, chance level where accuracy is
plotted, ε in k/255 as the tables print it."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, never a window

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from robustbench_norm.evaluation import metrics
from robustbench_norm.perturb.attacks import format_epsilon
from robustbench_norm.reporting.leaderboard import MIN_RUNS_FOR_INTERVAL


def _curve(ax, frame: pd.DataFrame, x: str, label: str, bounds=(-np.inf, np.inf)) -> None:
    """Mean over runs with its 95 % interval as a band clipped to the metric's range; with
    fewer than 3 runs the runs themselves as dots instead (a 2-run band fills the axis)."""
    grouped = frame.groupby(x)["value"].apply(list)
    xs = list(grouped.index)
    stats = [metrics.mean_ci(v) for v in grouped]
    means = np.array([m for m, _ in stats])
    (line,) = ax.plot(xs, means, marker="o", label=label)
    if min(len(v) for v in grouped) < MIN_RUNS_FOR_INTERVAL:
        for xv, values in zip(xs, grouped, strict=True):
            ax.scatter([xv] * len(values), values, s=12, color=line.get_color(), alpha=0.6)
    else:
        half = np.nan_to_num(np.array([h for _, h in stats]))
        low = np.clip(means - half, *bounds)
        if ax.get_yscale() == "log":  # a band through zero cannot be drawn on a log axis
            low = np.maximum(low, means / 10)
        ax.fill_between(xs, low, np.clip(means + half, *bounds), alpha=0.2)
    if np.isfinite(bounds).all():
        ax.set_ylim(*bounds)


def _grid(n: int, title: str):
    cols = min(n, 4)
    rows = -(-n // cols)
    width = 3.6 * cols if n > 1 else 6.5
    fig, axes = plt.subplots(rows, cols, figsize=(width, 3.2 * rows), squeeze=False)
    fig.suptitle(title)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n])


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def accuracy_vs_parameter(
    frame: pd.DataFrame,
    family: str,
    metric: str,
    xlabel: str,
    title: str,
    path: Path,
    chance: float | None = None,
    clean_at_zero: bool = False,
    epsilon_axis: bool = False,
) -> Path | None:
    """One panel per condition name (corruption, attack, noise), accuracy against its
    parameter. ``clean_at_zero`` adds each run's clean accuracy as the point at parameter 0
    (σ = 0 is the clean image); ``epsilon_axis`` labels the ticks k/255."""
    sub = frame[(frame.family == family) & (frame.metric == metric) & frame.parameter.notna()]
    if sub.empty:
        return None
    names = list(dict.fromkeys(sub.name))
    if clean_at_zero:
        clean = frame[(frame.family == "clean") & (frame.metric == "accuracy")]
        zero = [clean.assign(name=name, parameter=0.0) for name in names]
        sub = pd.concat([*zero, sub[sub.parameter > 0]], ignore_index=True)
    fig, axes = _grid(len(names), title)
    for ax, name in zip(axes, names, strict=True):
        panel = sub[sub.name == name]
        for norm, group in panel.groupby("norm", sort=False):
            _curve(ax, group, "parameter", norm, bounds=(0.0, 1.0))
        if chance is not None:
            ax.axhline(chance, color="grey", linestyle=":", linewidth=1, label="chance")
        ticks = sorted(panel.parameter.unique())
        if epsilon_axis:
            ax.set_xticks(ticks, [format_epsilon(t) for t in ticks], fontsize=8, rotation=45)
        elif family == "corruption":  # severities are integers: no tick at 1.5
            ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.set_title(name)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("accuracy (top-1)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, framealpha=0.6)
    return _save(fig, path)


def accuracy_vs_batch_size(frame: pd.DataFrame, path: Path) -> Path | None:
    sub = frame[(frame.family == "clean") & (frame.metric == "accuracy")]
    if sub.batch_size.nunique() < 2:
        return None
    models = list(dict.fromkeys(sub.model))
    fig, axes = _grid(len(models), "clean accuracy vs batch size")
    for ax, model in zip(axes, models, strict=True):
        for norm, group in sub[sub.model == model].groupby("norm", sort=False):
            _curve(ax, group, "batch_size", norm, bounds=(0.0, 1.0))
        ax.set_xscale("log", base=2)
        ax.set_title(model)
        ax.set_xlabel("batch size")
        ax.set_ylabel("clean accuracy (top-1)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _save(fig, path)


def adaptation_sweep(sweep: pd.DataFrame, path: Path) -> Path | None:
    """Accuracy against the adaptation batch (log scale), one panel per adapted layer and
    training setting, one colour per σ (σ = 0: clean): solid lines for test-batch statistics,
    dashed for each prior, dotted horizontals for the running averages."""
    adapted = sweep[sweep.adaptation_batch.notna()] if len(sweep) else sweep
    if adapted.empty or adapted.adaptation_batch.nunique() < 2:
        return None
    panels = list(dict.fromkeys(zip(sweep.layer, sweep.model, sweep.batch_size, strict=True)))
    fig, axes = _grid(len(panels), "accuracy vs adaptation batch (test-time statistics)")
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    sigmas = sorted(sweep.sigma.unique())
    for ax, (layer, model, bs) in zip(axes, panels, strict=True):
        panel = sweep[(sweep.layer == layer) & (sweep.model == model) & (sweep.batch_size == bs)]
        for k, sigma in enumerate(sigmas):
            colour = colours[k % len(colours)]
            at = panel[panel.sigma == sigma]
            for mode, group in at[at.adaptation_batch.notna()].groupby("mode", sort=False):
                style = "-" if mode == "test-batch" else "--"
                means = group.groupby("adaptation_batch").value.mean()
                label = f"σ={sigma:g} {mode}"
                ax.plot(means.index, means.values, style, marker="o", color=colour, label=label)
            running = at[at.adaptation_batch.isna()].value
            if len(running):
                ax.axhline(float(running.mean()), color=colour, linestyle=":", linewidth=1.2)
        ax.set_xscale("log", base=2)
        sizes = sorted(panel.adaptation_batch.dropna().unique())
        ax.set_xticks(sizes, [f"{int(b)}" for b in sizes])
        ax.set_ylim(0.0, 1.0)
        ax.set_title(f"{layer} · {model} · bs {bs} (dotted: running)", fontsize=9)
        ax.set_xlabel("images per test batch")
        ax.set_ylabel("accuracy (top-1)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, ncol=2)
    return _save(fig, path)


def claims_forest(claims: list, path: Path) -> Path | None:
    """The claims as a forest plot: per claim, each mean comparison's effect with its 95 %
    interval, in seed standard deviations (Δ ÷ pooled sd: comparisons of accuracy and of
    landscape measures share one axis), signed so that right of zero is the claimed direction;
    the verdict in the panel title. Spread and divergence tests have no such interval and are
    left out (the claims table has them)."""
    panels = []
    for claim in claims:
        rows = [
            (c.label, c.delta / c.sd, c.interval[0] / c.sd, c.interval[1] / c.sd)
            for c in claim.comparisons
            if c.interval is not None and c.sd and np.isfinite(c.sd)
        ]
        if rows:
            panels.append((claim, rows))
    if not panels:
        return None
    heights = [0.6 + 0.28 * len(rows) for _, rows in panels]
    fig, axes = plt.subplots(len(panels), 1, figsize=(10.5, sum(heights) + 0.6), squeeze=False,
                             gridspec_kw={"height_ratios": heights})  # fmt: skip
    fig.suptitle("claims: effect in the claimed direction, in seed standard deviations")
    for ax, (claim, rows) in zip(axes[:, 0], panels, strict=True):
        ys = np.arange(len(rows))[::-1]
        for y, (_, mid, low, high) in zip(ys, rows, strict=True):
            colour = "#1a7f37" if low > 0 else "#cf222e" if high < 0 else "#777777"
            ax.plot([low, high], [y, y], color=colour, linewidth=2)
            ax.plot([mid], [y], "o", color=colour)
        ax.axvline(0.0, color="black", linewidth=0.8)
        ax.set_yticks(ys, [label for label, *_ in rows], fontsize=7)
        ax.set_ylim(-0.7, len(rows) - 0.3)
        ax.set_title(f"{claim.claim}: {claim.verdict}", fontsize=9, loc="left")
        ax.grid(alpha=0.3, axis="x")
    axes[-1, 0].set_xlabel(
        "Δ ÷ pooled seed sd, 95 % Welch interval (unadjusted; verdicts use Holm); > 0: as claimed"
    )
    return _save(fig, path)


def learning_curves(frame: pd.DataFrame, path: Path) -> Path:
    """Clean accuracy against training images per run (log scale), one panel per (model,
    batch size): a ``curves`` ladder. ``frame`` has model, norm, batch_size, images, value."""
    panels = list(dict.fromkeys(zip(frame.model, frame.batch_size, strict=True)))
    fig, axes = _grid(len(panels), "learning curves: clean accuracy vs training budget")
    for ax, (model, bs) in zip(axes, panels, strict=True):
        sub = frame[(frame.model == model) & (frame.batch_size == bs)]
        for norm, group in sub.groupby("norm", sort=False):
            _curve(ax, group, "images", norm, bounds=(0.0, 1.0))
        ax.set_ylim(max(0.0, float(sub.value.min()) - 0.05), 1.0)  # the curves, not the 0 line
        ax.set_xscale("log", base=2)
        ax.set_title(f"{model} · bs {bs}")
        ax.set_xlabel("training images per run")
        ax.set_ylabel("clean accuracy (top-1)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _save(fig, path)


def training_curves(jobs: list[dict], path: Path) -> Path | None:
    """Training loss against step, mean over seeds, per norm (unregularized runs)."""
    rows = [
        {"norm": j["norm"], "step": s, "value": loss}
        for j in jobs
        if j["regularizer"] == "none" and j["train_log"].get("loss")
        for s, loss in zip(j["train_log"]["step"], j["train_log"]["loss"], strict=True)
    ]
    if not rows:
        return None
    frame = pd.DataFrame(rows)
    fig, (ax,) = _grid(1, "training loss")
    ax.set_yscale("log")
    for norm, group in frame.groupby("norm", sort=False):
        _curve(ax, group, "step", norm)
    ax.set_xlabel("step")
    ax.set_ylabel("batch loss")
    plain = matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}")  # 2.8, not 2.8×10⁰
    ax.yaxis.set_major_formatter(plain)
    ax.yaxis.set_minor_formatter(plain)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, framealpha=0.6)
    return _save(fig, path)


def lambda_curves(jobs: list[dict], path: Path) -> Path | None:
    """GN+'s λ over training: the mean over layers (line) and the layer range (band)."""
    runs = [j for j in jobs if j["train_log"].get("lambdas") and j["train_log"]["lambdas"][0]]
    if not runs:
        return None
    fig, (ax,) = _grid(1, "GN+ λ over training: mean over layers, band = layer range")
    for j in runs:
        lam = np.array(j["train_log"]["lambdas"])
        steps = j["train_log"]["step"]
        label = f"{j['norm']} seed {j['seed']}"
        ax.plot(steps, lam.mean(1), label=label)
        ax.fill_between(steps, lam.min(1), lam.max(1), alpha=0.1)
    ax.set_xlabel("step")
    ax.set_ylabel("λ")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, path)


def stability_curves(jobs: list[dict], path: Path) -> Path | None:
    """Santurkar et al.'s measures over training, mean over seeds, per norm."""
    rows = [
        {"norm": j["norm"], "step": s["step"], "measure": m, "value": s[m]}
        for j in jobs
        if j["stability"] and j["regularizer"] == "none"
        for s in j["stability"]
        for m in ("landscape_range", "grad_change_max", "beta_smoothness")
    ]
    if not rows:
        return None
    frame = pd.DataFrame(rows)
    measures = {
        "landscape_range": "loss range",
        "grad_change_max": "gradient change (L2)",
        "beta_smoothness": "β (Δgradient ÷ step)",
    }
    fig, axes = _grid(
        3, "optimization stability over training (Santurkar et al. 2018; lower is smoother)"
    )
    for ax, (measure, ylabel) in zip(axes, measures.items(), strict=True):
        if (frame[frame.measure == measure].value > 0).all():
            ax.set_yscale("log")  # (one step size gives a landscape range of exactly 0)
        for norm, group in frame[frame.measure == measure].groupby("norm", sort=False):
            _curve(ax, group, "step", norm)
        ax.set_title(measure.replace("_", " "))
        ax.set_xlabel("step")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _save(fig, path)


def history_plot(history, path: Path) -> Path | None:
    """A nightly history (reporting/history.py): one panel per metric, each series' night
    means with 95 % intervals (the runs as dots below 3), a dashed line at a night whose layer
    fingerprints changed and a red cross on a night whose check did not pass."""
    metrics = [m for m in history.metrics if any(s.endswith(f" · {m}") for s in history.series)]
    if not history.rows or not metrics:
        return None
    fig, axes = _grid(len(metrics), f"nightly history: {history.suite}")
    nights = [r.night.night for r in history.rows]
    for ax, metric in zip(axes, metrics, strict=True):
        for name, per_night in history.series.items():
            if not name.endswith(f" · {metric}"):
                continue
            rows = pd.DataFrame(
                [(n, v) for n, values in zip(nights, per_night, strict=True) for v in values],
                columns=["night", "value"],
            )
            if not rows.empty:
                _curve(ax, rows, "night", name.removesuffix(f" · {metric}"), bounds=(0.0, 1.0))
            failed = [
                (n, float(np.mean(values)))
                for n, values, row in zip(nights, per_night, history.rows, strict=True)
                if values and not row.night.trusted
            ]
            if failed:
                ax.scatter(*zip(*failed, strict=True), marker="x", s=80, color="red", zorder=5)
        for row in history.rows:
            if row.changed_layers:
                ax.axvline(row.night.night - 0.5, linestyle="--", color="gray")
                ax.annotate("layer changed: " + ", ".join(row.changed_layers),
                            (row.night.night - 0.45, 0.02), fontsize=7, rotation=90,
                            xycoords=("data", "axes fraction"), va="bottom")  # fmt: skip
        values = [v for n, vs in history.series.items() if n.endswith(f" · {metric}")
                  for night in vs for v in night]  # fmt: skip
        ax.set_ylim(max(0.0, min(values) - 0.05), min(1.0, max(values) + 0.05))
        ax.set_title(metric)
        ax.set_xlabel("night (red ×: check did not pass)")
        ax.set_ylabel(metric.split("/")[1].replace("_", " "))
        ax.set_xticks(nights)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return _save(fig, path)
