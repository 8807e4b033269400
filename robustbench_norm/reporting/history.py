"""The history section of a nightly leaderboard: every night's primary metrics per norm, with
where a layer changed and where the check failed, and the slow-drift test over them.

Read from the history store alone (``suites/nights.py``): a night's row is its runs' mean with
the 95 % Student-t interval over runs (each run's value below 3 runs, as the leaderboard
tables do), so the table and the plot regenerate from the published ``store.sqlite``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from robustbench_norm.norms.fingerprint import compare_fingerprints
from robustbench_norm.reporting.drift import WINDOW, DriftFinding, detect_drift, night_series
from robustbench_norm.reporting.leaderboard import MIN_RUNS_FOR_INTERVAL, Cell
from robustbench_norm.reporting.pool import baseline_pool
from robustbench_norm.suites.nights import Night, nights_of
from robustbench_norm.suites.store import Store


@dataclass(frozen=True)
class NightRow:
    night: Night
    #: labels whose layer fingerprint differs from the night before
    changed_layers: tuple[str, ...]
    #: the check's reasons when it did not pass
    reasons: tuple[str, ...]


@dataclass
class History:
    suite: str
    metrics: tuple[str, ...]
    rows: list[NightRow]
    #: series name ("gnplus · resnet20 · bs 64 · clean/accuracy") → per night (rows' order)
    #: the values of its runs (empty where the night has none)
    series: dict[str, list[list[float]]]
    #: the drift test over the newest era's trusted nights
    drift: list[DriftFinding] = field(default_factory=list)
    #: how many trusted nights of the newest era the drift test saw
    era_nights: int = 0

    @property
    def drifting(self) -> list[DriftFinding]:
        return [d for d in self.drift if d.drift]

    def drift_sentence(self) -> str:
        if self.era_nights < 2 * WINDOW:
            return (
                f"Slow drift: not tested yet ({self.era_nights} trusted night(s) of this era; "
                f"the test compares the last {WINDOW} nights with at least {WINDOW} before them)."
            )
        if not self.drifting:
            return (
                f"Slow drift: none found over {self.era_nights} trusted nights of this era (last "
                f"{WINDOW} nights against the earlier ones, {len(self.drift)} series, Holm, "
                "per-look level α/21; see reporting/drift.py)."
            )
        return "**Slow drift found**: " + "; ".join(d.describe() for d in self.drifting) + "."

    def banner(self, run_id: int) -> str:
        """The night's verdict, for the top of its page: a failing night says so first."""
        row = next((r for r in self.rows if r.night.run_id == run_id), None)
        if row is None:
            return ""
        n = row.night
        pooled = f"{len(n.baseline)} earlier night(s) pooled" if n.baseline else "no baseline"
        if n.verdict == "first":
            return f"Night {n.night}: the first of its kind ({pooled}); it is the baseline now."
        if n.verdict == "pass":
            return f"Night {n.night}: check passed against {pooled}."
        reasons = "; ".join(row.reasons) or "see the check output"
        if n.verdict == "undecided":
            return (
                f"Night {n.night}: check undecided against {pooled} (no regression shown, too "
                f"few runs to rule one out: {reasons}); pooled from now on, which is what "
                "decides it."
            )
        return (
            f"Night {n.night}: CHECK DID NOT PASS ({n.verdict}) against {pooled}: {reasons}. "
            "This night is kept in the history but never becomes a baseline."
        )

    def cell(self, series: str, i: int) -> str:
        return Cell(self.series[series][i]).text()  # as the leaderboard's tables write it

    def table(self, metric: str) -> tuple[tuple[str, ...], list[tuple[str, ...]]]:
        """(headers, rows) of one metric: a row per night, a column per norm and setting."""
        names = [s for s in self.series if s.endswith(f" · {metric}")]
        headers = ("night", "date", "commit", "check", "layers changed",
                   *(s.removesuffix(f" · {metric}") for s in names))  # fmt: skip
        rows = []
        for i, row in enumerate(self.rows):
            n = row.night
            rows.append((
                str(n.night), n.date[:10], (n.commit or "?")[:10], n.verdict,
                ", ".join(row.changed_layers) or "—",
                *(self.cell(s, i) for s in names),
            ))  # fmt: skip
        return headers, rows

    def markdown(self, image: str | None) -> list[str]:
        md = [
            "## History",
            "",
            f"{len(self.rows)} night(s) of suite {self.suite!r}, each a fresh draw of its seeds "
            "(`robustbench-norm nightly`). A cell is the night's mean with its 95 % interval "
            f"over runs (each run's value below {MIN_RUNS_FOR_INTERVAL} runs). *check*: the "
            "night's regression check against the pooled baseline of earlier trusted nights; "
            "*layers changed*: labels whose fingerprint differs from the night before.",
            "",
            self.drift_sentence(),
            "",
        ]
        for metric in self.metrics:
            headers, rows = self.table(metric)
            if len(headers) == 5:
                continue
            md += [f"### {metric}", "", "| " + " | ".join(headers) + " |",
                   "|" + "---|" * len(headers)]  # fmt: skip
            md += ["| " + " | ".join(r) + " |" for r in rows]
            md.append("")
        if image:
            md += [f"![history]({image})", ""]
        return md

    def to_dict(self) -> dict:
        return {
            "nights": [
                {
                    "night": r.night.night,
                    "run_id": r.night.run_id,
                    "date": r.night.date,
                    "commit": r.night.commit,
                    "verdict": r.night.verdict,
                    "baseline_runs": list(r.night.baseline),
                    "changed_layers": list(r.changed_layers),
                    "reasons": list(r.reasons),
                }
                for r in self.rows
            ],
            "series": self.series,
            "drift": [d.to_dict() for d in self.drift],
        }


def build_history(store: Store, suite: str, metrics: tuple[str, ...], alpha: float) -> History:
    """Every night of ``suite`` in ``store``, and the drift test over the newest era."""
    nights = nights_of(store, suite)
    rows, before = [], None
    for night in nights:
        prints = store.fingerprints_of_run(night.run_id)
        changed = ()
        if before is not None and prints:
            changed = tuple(
                d.label for d in compare_fingerprints(before, prints) if d.status != "unchanged"
            )
        before = prints or before
        rows.append(NightRow(night, changed, tuple(night.summary.get("reasons", []))))
    series = night_series(store, [n.run_id for n in nights], metrics)
    history = History(suite, metrics, rows, series)
    trusted = [n for n in nights if n.trusted]
    if trusted:
        era = baseline_pool(store, suite, store, trusted[-1].run_id).nights
        history.era_nights = len(era)
        history.drift = detect_drift(night_series(store, [n.run_id for n in era], metrics), alpha)
    return history
