"""Leaderboard tables from a run's tidy results: mean ± 95 % CI over seeds, ranked.

A *setting* is everything but the norm and the seed (model, batch size, regularizer). Each
table has one row per norm and one column per setting (or per ε, σ, severity where that is
the axis), a cell is the mean over seeds with the half-width of its Student-t 95 % interval,
rows are ranked by their mean over columns and the best cell of each column is marked.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from robustbench_norm import metrics

SETTING = ["model", "batch_size", "regularizer"]


@dataclass
class Cell:
    mean: float
    ci95: float
    n: int
    best: bool = False

    def text(self, digits: int = 3) -> str:
        if math.isnan(self.mean):
            return "—"
        ci = "" if math.isnan(self.ci95) else f" ± {self.ci95:.{digits}f}"
        return f"{self.mean:.{digits}f}{ci}"


@dataclass
class Table:
    id: str
    title: str
    description: str
    higher_is_better: bool
    columns: list[str]
    #: norm label → column → Cell
    rows: dict[str, dict[str, Cell]] = field(default_factory=dict)

    def ranked(self) -> list[str]:
        def score(norm: str) -> float:
            values = [c.mean for c in self.rows[norm].values() if not math.isnan(c.mean)]
            if not values:
                return math.inf
            m = float(np.mean(values))
            return -m if self.higher_is_better else m

        return sorted(self.rows, key=score)

    def mark_best(self) -> None:
        for col in self.columns:
            cells = [self.rows[n][col] for n in self.rows if col in self.rows[n]]
            cells = [c for c in cells if not math.isnan(c.mean)]
            if len(cells) < 2:
                continue
            pick = max if self.higher_is_better else min
            best = pick(c.mean for c in cells)
            for c in cells:
                c.best = c.mean == best

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "title": self.title,
            "description": self.description,
            "higher_is_better": self.higher_is_better,
            "columns": self.columns,
            "rows": [
                {
                    "norm": norm,
                    "rank": rank + 1,
                    "cells": {
                        col: {"mean": _num(c.mean), "ci95": _num(c.ci95), "n": c.n, "best": c.best}
                        for col, c in self.rows[norm].items()
                    },
                }
                for rank, norm in enumerate(self.ranked())
            ],
        }


def _num(x: float) -> float | None:
    """JSON has no NaN or infinity (a diverged run can produce both): they become null."""
    return round(float(x), 6) if math.isfinite(x) else None


def setting_name(row: pd.Series | dict, vary: list[str]) -> str:
    """A compact column title for a setting, naming only what varies in the suite."""
    parts = []
    for key in vary:
        value = row[key]
        parts.append(
            {"model": f"{value}", "batch_size": f"bs {value}", "regularizer": f"{value}"}[key]
        )
    return " · ".join(parts) or "all"


def varying(frame: pd.DataFrame) -> list[str]:
    """The setting keys that vary; model and batch size when none does (to name the column)."""
    vary = [k for k in SETTING if frame[k].nunique() > 1]
    return vary or ["model", "batch_size"]


def pivot(
    frame: pd.DataFrame,
    *,
    id: str,
    title: str,
    description: str,
    higher_is_better: bool = True,
    column_of=None,
    order: list[str] | None = None,
) -> Table:
    """Cells = mean ± CI over the rows (seeds) of each (norm, column); ``column_of(row)`` names
    a row's column (default: its setting)."""
    vary = varying(frame) if len(frame) else []
    column_of = column_of or (lambda row: setting_name(row, vary))
    frame = frame.assign(_col=[column_of(r) for _, r in frame.iterrows()]) if len(frame) else frame
    columns = list(dict.fromkeys(frame["_col"])) if len(frame) else []
    table = Table(id, title, description, higher_is_better, columns)
    norms = order or list(dict.fromkeys(frame["norm"])) if len(frame) else []
    for norm in norms:
        sub = frame[frame["norm"] == norm]
        if sub.empty:
            continue
        table.rows[norm] = {}
        for col in columns:
            values = sub[sub["_col"] == col]["value"].astype(float).tolist()
            if values:
                mean, half = metrics.mean_ci(values)
                table.rows[norm][col] = Cell(mean, half, len(values))
    table.mark_best()
    return table


def select(frame: pd.DataFrame, family: str, metric: str, name: str | None = None) -> pd.DataFrame:
    out = frame[(frame["family"] == family) & (frame["metric"] == metric)]
    if name is not None:
        out = out[out["name"] == name]
    return out
