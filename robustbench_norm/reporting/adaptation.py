"""Test-time statistics on the leaderboard: adapted rows beside the layers they adapt.

A job of a model with running statistics stores its evaluations once with those (``running``)
and again under each test-time statistics setting of the suite's ``[evaluate.test_statistics]``
(evaluate.BatchStatisticsPlan). Here an adapted result becomes a row of its own, labelled
``bn · test-batch 500``: the same trained runs, another way of evaluating them. The settings at
the plan's main batch are leaderboard rows; the sweep's other batch sizes only feed the
accuracy-against-adaptation-batch table and plot, where batch statistics are seen to fail.
"""

from __future__ import annotations

import pandas as pd

from robustbench_norm.evaluation import BatchStatisticsPlan
from robustbench_norm.reporting.leaderboard import Table, pivot, select, setting_name, varying
from robustbench_norm.specs import RUNNING

SEPARATOR = " · "


def plan_of(suite: dict) -> BatchStatisticsPlan | None:
    """The plan a run's suite TOML asked for (None: running statistics only)."""
    table = suite.get("evaluate", {}).get("test_statistics")
    if table is None:
        return None
    return BatchStatisticsPlan(
        batch=table.get("batch", BatchStatisticsPlan.batch),
        priors=tuple(table.get("priors", ())),
        sweep=tuple(table.get("sweep", ())),
    )


def label_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Adapted rows renamed ``NORM · SETTING``; ``layer`` keeps the trained layer's label."""
    if "statistics" not in frame:
        frame = frame.assign(statistics=RUNNING)
    adapted = frame.statistics != RUNNING
    return frame.assign(
        layer=frame.norm,
        norm=frame.norm.where(~adapted, frame.norm + SEPARATOR + frame.statistics),
    )


def board_rows(frame: pd.DataFrame, plan: BatchStatisticsPlan | None) -> pd.DataFrame:
    """The rows the leaderboard tables rank: running ones and the main batch's settings."""
    if plan is None:
        return frame[frame.statistics == RUNNING]
    main = {RUNNING} | {s.label for s, full in plan.settings() if full}
    return frame[frame.statistics.isin(main)]


def row_order(order: list[str], frame: pd.DataFrame) -> list[str]:
    """Each layer's label followed by its adapted rows, in the order they were measured."""
    out = []
    for layer in order:
        out.append(layer)
        mine = frame[(frame.layer == layer) & (frame.statistics != RUNNING)]
        out += list(dict.fromkeys(mine.norm))
    return out


def sweep_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Clean and Gaussian-noise accuracy of every adapted layer under every setting, with the
    running ones, as rows of (layer, mode, adaptation batch, σ): what the sweep plot draws.
    ``mode`` is ``test-batch`` or ``prior N``; the running rows have batch None."""
    layers = set(frame[frame.statistics != RUNNING].layer)
    sub = frame[frame.layer.isin(layers)]
    clean = select(sub, "clean", "accuracy").assign(parameter=0.0)
    noise = select(sub, "noise", "accuracy", "gaussian_noise")
    both = pd.concat([clean, noise], ignore_index=True)
    if both.empty:
        return both
    parsed = [_parse(s) for s in both.statistics]
    return both.assign(
        mode=[m for m, _ in parsed], adaptation_batch=[b for _, b in parsed], sigma=both.parameter
    )


def _parse(statistics: str) -> tuple[str, int | None]:
    """``test-batch 500`` → (test-batch, 500); ``prior 16 · batch 64`` → (prior 16, 64)."""
    if statistics == RUNNING:
        return RUNNING, None
    head, _, size = statistics.rpartition(" ")
    mode = head.removesuffix(SEPARATOR + "batch").strip()
    return mode, int(size)


def sweep_table(frame: pd.DataFrame) -> Table | None:
    """Mean Gaussian-noise accuracy (σ > 0) per adaptation batch: one row per layer and mode
    (test-batch, each prior), with the layer's running-statistics value in the first column."""
    sweep = sweep_frame(frame)
    noisy = sweep[(sweep.family == "noise") & (sweep.sigma > 0)] if len(sweep) else sweep
    if noisy.empty or noisy.adaptation_batch.nunique() < 2:
        return None
    keys = ["layer", "mode", "adaptation_batch", "model", "batch_size", "regularizer", "seed"]
    runs = noisy.groupby(keys, dropna=False, sort=False).value.mean().reset_index()
    running = runs[runs.adaptation_batch.isna()]
    rows = []
    for (layer, mode), own in runs[runs.adaptation_batch.notna()].groupby(
        ["layer", "mode"], sort=False
    ):
        reference = running[running.layer == layer].assign(mode=mode)
        rows.append(pd.concat([reference, own.sort_values("adaptation_batch", kind="stable")]))
    rows = pd.concat(rows, ignore_index=True)
    rows = rows.assign(norm=rows.layer + SEPARATOR + rows["mode"])
    vary = varying(rows)
    multi = len({setting_name(r, vary) for _, r in rows.iterrows()}) > 1

    def column(r) -> str:
        batch = RUNNING if pd.isna(r.adaptation_batch) else f"batch {int(r.adaptation_batch)}"
        return f"{setting_name(r, vary)} · {batch}" if multi else batch

    return pivot(
        rows,
        id="adaptation-batch",
        title="Gaussian noise under test-time statistics: mean accuracy per adaptation batch",
        description="accuracy averaged over σ > 0 when BN-style layers normalize with the "
        "statistics of each test batch of that many images (all under one σ), or mix them with "
        "the running averages at prior strength N (`prior N`); `running`: the layer with its "
        "running averages, for comparison",
        column_of=column,
        order=list(dict.fromkeys(rows.norm)),
    )
