"""Leaderboard tables from a run's tidy results: one value per training run, summarized honestly.

A *setting* is everything but the norm and the seed (model, batch size, regularizer). Each
table has one row per norm and one column per setting (or per ε, σ, severity where that is the
axis). A cell holds the runs' values:

* fewer than :data:`MIN_RUNS_FOR_INTERVAL` runs: the values themselves ("0.742 / 0.750"), no
  interval — a 95 % t-interval over 2 runs is ±12.7 standard errors and says nothing;
* otherwise the mean and its 95 % Student-t interval, clipped to the metric's range (an
  accuracy's interval stays inside [0, 1]).

Ranks and ★ follow tests, not means alone. Row A *beats* row B when, in every column all rows
have (every column both have, where all share none), A is better by a one-sided Welch test over
runs, Holm-corrected over every (A, B, column) test of the table; a row's rank is 1 + the number
of rows that beat it, so rows nobody separates share a rank (shown "1=" for a tie). A cell gets
★ only when it beats every other cell of its column after Holm over that column's comparisons.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from robustbench_norm.reporting import statistics

SETTING = ["model", "batch_size", "regularizer"]
MIN_RUNS_FOR_INTERVAL = 3
ALPHA = 0.05
#: an accuracy, a rate or a share lives in [0, 1]
UNIT = (0.0, 1.0)


@dataclass
class Cell:
    values: list[float]
    bounds: tuple[float, float] | None = UNIT
    best: bool = False
    #: shown instead of the summary (e.g. "1 / 6" for a count of diverged runs)
    display: str | None = None
    #: whether ranks and ★ test this cell (a count or a spread of spreads is shown, not tested)
    ranked: bool = True
    #: mean, interval low, interval high (NaN below MIN_RUNS_FOR_INTERVAL runs)
    mean: float = field(init=False)
    low: float = field(init=False)
    high: float = field(init=False)

    def __post_init__(self) -> None:
        finite = [v for v in self.values if math.isfinite(v)]
        self.mean, self.low, self.high = statistics.mean_interval(finite, self.bounds)
        if len(finite) < MIN_RUNS_FOR_INTERVAL:
            self.low = self.high = math.nan

    @property
    def n(self) -> int:
        return len(self.values)

    def text(self, digits: int = 3) -> str:
        if self.display is not None:
            return self.display
        if math.isnan(self.mean):
            return "—"
        if self.n < MIN_RUNS_FOR_INTERVAL:
            return " / ".join(
                "—" if not math.isfinite(v) else f"{v:.{digits}f}" for v in self.values
            )
        return f"{self.mean:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"


@dataclass
class Table:
    id: str
    title: str
    description: str
    higher_is_better: bool
    columns: list[str]
    #: norm label → column → Cell
    rows: dict[str, dict[str, Cell]] = field(default_factory=dict)
    #: norm → rank (1 + rows that beat it after Holm); filled by :meth:`settle`
    ranks: dict[str, int] = field(default_factory=dict)
    #: column → what it holds, as fields (model, batch_size, regularizer, and the condition's
    #: name and parameter where the column is one): column titles differ between suites
    column_info: dict[str, dict] = field(default_factory=dict)

    def ranked(self) -> list[str]:
        """Rows by tested rank, then by the mean of their tested cells within a rank (a count
        or a spread shown beside them does not order rows); rows without data last."""

        def score(norm: str) -> tuple[int, float]:
            cells = self.rows[norm].values()
            if all(math.isnan(c.mean) for c in cells):
                return (len(self.rows) + 1, math.inf)
            values = [c.mean for c in cells if c.ranked and not math.isnan(c.mean)]
            m = float(np.mean(values)) if values else 0.0
            return (self.ranks.get(norm, 1), -m if self.higher_is_better else m)

        return sorted(self.rows, key=score)

    @property
    def has_ranks(self) -> bool:
        """Whether any cell is tested: a table of counts and spreads has no ranks to show."""
        return any(
            c.ranked and not math.isnan(c.mean) for r in self.rows.values() for c in r.values()
        )

    def rank_label(self, norm: str) -> str:
        if not self.has_ranks:
            return "—"
        rank = self.ranks.get(norm, 1)
        tied = sum(r == rank for r in self.ranks.values()) > 1
        return f"{rank}=" if tied else str(rank)

    def settle(self, alpha: float = ALPHA) -> None:
        """Tested ranks and ★ (see the module docstring)."""
        norms = self._rows_with_data()
        tests = []  # (winner, loser, column, p)
        for a, b in ((a, b) for a in norms for b in norms if a != b):
            for col in self._rank_columns(norms):
                ca, cb = self.rows[a].get(col), self.rows[b].get(col)
                if ca is None or cb is None or not (ca.ranked and cb.ranked):
                    continue
                d = statistics.welch(ca.values, cb.values)
                p = math.nan if d is None else (d.p_greater if self.higher_is_better else d.p_less)
                tests.append((a, b, col, p))
        finite = [t for t in tests if math.isfinite(t[3])]
        adjusted = dict(
            zip([t[:3] for t in finite], statistics.holm([t[3] for t in finite]), strict=True)
        )
        beats = {
            (a, b)
            for a in norms
            for b in norms
            if a != b
            and (shared := [t for t in tests if t[0] == a and t[1] == b])
            and all(adjusted.get(t[:3], 1.0) < alpha for t in shared)
        }
        self.ranks = {b: 1 + sum((a, b) in beats for a in norms) for b in norms}
        for col in self.columns:
            cells = {n: self.rows[n][col] for n in norms if col in self.rows[n]}
            cells = {n: c for n, c in cells.items() if c.ranked}
            for cell in cells.values():
                cell.best = False
            if len(cells) < 2:
                continue
            column_tests = [t for t in tests if t[2] == col and math.isfinite(t[3])]
            holm = dict(
                zip([t[:2] for t in column_tests], statistics.holm([t[3] for t in column_tests]),
                    strict=True)
            )  # fmt: skip
            for a in cells:
                others = [b for b in cells if b != a]
                if all(holm.get((a, b), 1.0) < alpha for b in others):
                    cells[a].best = True

    def _rows_with_data(self) -> list[str]:
        return [n for n in self.rows if any(not math.isnan(c.mean) for c in self.rows[n].values())]

    def _rank_columns(self, norms: list[str]) -> list[str]:
        """The columns ranks compare rows on: those every row has a tested cell in, so that no
        row has to win more columns than another (BN and GN in a regularization sweep's extra
        columns); where the rows share no column, every column."""
        common = [c for c in self.columns
                  if all(c in self.rows[n] and self.rows[n][c].ranked for n in norms)]  # fmt: skip
        return common or self.columns

    def rank_tests(self) -> int:
        """How many pairwise tests the ranks' Holm correction spans."""
        norms = self._rows_with_data()
        return len(norms) * (len(norms) - 1) * len(self._rank_columns(norms))

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "title": self.title,
            "description": self.description,
            "higher_is_better": self.higher_is_better,
            "columns": self.columns,
            "column_info": [{"column": c, **self.column_info.get(c, {})} for c in self.columns],
            "rows": [
                {
                    "norm": norm,
                    "rank": self.ranks.get(norm, 1),
                    "tied": self.rank_label(norm).endswith("="),
                    "cells": {
                        col: {
                            "mean": _num(c.mean),
                            "low": _num(c.low),
                            "high": _num(c.high),
                            "values": [_num(v) for v in c.values],
                            "n": c.n,
                            "best": c.best,
                        }
                        for col, c in self.rows[norm].items()
                    },
                }
                for norm in self.ranked()
            ],
        }


#: the most value columns a table shows side by side: wider ones run off a 1400-pixel page
MAX_COLUMNS = 6


def display_parts(table: Table) -> list[Table]:
    """A wide table as narrower ones for reading: one per setting (the part of a column name
    before its last " · "), and runs of at most :data:`MAX_COLUMNS` columns. Every part keeps
    the whole table's rows, ranks and ★ (they were decided on the whole); results.json keeps
    the whole table."""
    if len(table.columns) <= MAX_COLUMNS:
        return [table]
    groups: dict[str, list[str]] = {}
    for column in table.columns:
        setting, sep, _ = column.rpartition(" · ")
        groups.setdefault(setting if sep else "", []).append(column)
    chunks = [
        (setting, columns[i : i + MAX_COLUMNS])
        for setting, columns in groups.items()
        for i in range(0, len(columns), MAX_COLUMNS)
    ]
    parts = []
    for k, (setting, columns) in enumerate(chunks, 1):
        name = f"{setting}, " if setting else ""
        short = {c: c.removeprefix(f"{setting} · ") for c in columns}  # the title names it
        part = Table(
            f"{table.id}-{k}", f"{table.title} ({name}part {k} of {len(chunks)})",
            table.description, table.higher_is_better, list(short.values()),
            {n: {short[c]: cells[c] for c in columns if c in cells}
             for n, cells in table.rows.items() if any(c in cells for c in columns)},
            table.ranks,
        )  # fmt: skip
        parts.append(part)
    parts[0].id = table.id  # links to the table keep working
    return parts


def _num(x: float) -> float | None:
    """JSON has no NaN or infinity (a diverged run can produce both): they become null."""
    return round(float(x), 6) if math.isfinite(x) else None


def setting_name(row: pd.Series | dict, vary: list[str]) -> str:
    """A compact column title for a setting, naming only what varies in the suite."""
    parts = []
    for key in vary:
        value = row[key]
        if key == "batch_size" and value == 0:  # an external model: nothing trained it here
            parts.append("external")
            continue
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
    bounds: tuple[float, float] | None = UNIT,
) -> Table:
    """One cell per (norm, column) holding its runs' values; ``column_of(row)`` names a row's
    column (default: its setting); ``bounds`` is the metric's range (None: unbounded)."""
    vary = varying(frame) if len(frame) else []
    column_of = column_of or (lambda row: setting_name(row, vary))
    frame = frame.assign(_col=[column_of(r) for _, r in frame.iterrows()]) if len(frame) else frame
    columns = list(dict.fromkeys(frame["_col"])) if len(frame) else []
    table = Table(id, title, description, higher_is_better, columns)
    for column in columns:
        table.column_info[column] = _column_fields(frame[frame["_col"] == column])
    norms = order or list(dict.fromkeys(frame["norm"])) if len(frame) else []
    for norm in norms:
        sub = frame[frame["norm"] == norm]
        if sub.empty:
            continue
        table.rows[norm] = {}
        for col in columns:
            values = sub[sub["_col"] == col]["value"].astype(float).tolist()
            if values:
                table.rows[norm][col] = Cell(values, bounds)
    table.settle()
    return table


def _column_fields(rows: pd.DataFrame) -> dict:
    """The fields every row of a column agrees on: its setting, and its condition's name and
    parameter when it is one condition (a σ, an ε, a corruption)."""
    out = {}
    for key in (*SETTING, "name", "parameter"):
        if key not in rows:
            continue
        values = rows[key].dropna().unique()
        if len(values) == 1 and rows[key].notna().all():
            value = values[0]
            out[key] = value.item() if hasattr(value, "item") else value
    return out


def select(frame: pd.DataFrame, family: str, metric: str, name: str | None = None) -> pd.DataFrame:
    out = frame[(frame["family"] == family) & (frame["metric"] == metric)]
    if name is not None:
        out = out[out["name"] == name]
    return out
