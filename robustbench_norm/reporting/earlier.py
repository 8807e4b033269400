"""Verdicts against budget: this run's claims beside an earlier publication's.

A suite may name an earlier publication of the same question (``[earlier]`` in its TOML: a
store and run, and a label such as "16k images (0.27 epoch)"), or several (``[[earlier]]``,
oldest first: one question at a ladder of budgets). The leaderboard then shows, per claim, each
earlier verdict and deciding comparison next to this run's, and says which verdicts changed:
whether a verdict is about how fast a layer starts to learn or about the trained network. Each
earlier run is read as published (its own claims, re-derived from its store by
this code, so both sides follow the same rules).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from robustbench_norm.reporting.claims import Claim


@dataclass
class BudgetRow:
    claim: str
    earlier: Claim | None
    now: Claim

    @property
    def changed(self) -> bool | None:
        return None if self.earlier is None else self.earlier.verdict != self.now.verdict

    def to_dict(self) -> dict:
        return {
            "claim": self.claim,
            "earlier_verdict": None if self.earlier is None else self.earlier.verdict,
            "earlier_lead": None if self.earlier is None else self.earlier.lead,
            "verdict": self.now.verdict,
            "lead": self.now.lead,
            "changed": self.changed,
        }


@dataclass
class BudgetComparison:
    label: str
    source: str
    rows: list[BudgetRow]

    def sentence(self) -> str:
        """Counts only the claims both runs decided: a claim the earlier run did not make (a
        setting it did not evaluate) can neither keep nor change its verdict."""
        compared = [r for r in self.rows if r.earlier is not None]
        changed = [r.claim for r in compared if r.changed]
        if not changed:
            text = f"Every verdict is the same as at {self.label}."
        else:
            text = f"{len(changed)} of {len(compared)} verdicts changed from {self.label}: " + (
                "; ".join(changed) + "."
            )
        new = [r.claim for r in self.rows if r.earlier is None]
        if new:
            text += f" New here, not decided at {self.label}: " + "; ".join(new) + "."
        return text

    def to_dict(self) -> dict:
        return {"label": self.label, "source": self.source, "sentence": self.sentence(),
                "rows": [r.to_dict() for r in self.rows]}  # fmt: skip


def compare_with_earlier(suite: dict, claims: list[Claim]) -> list[BudgetComparison]:
    """One comparison per publication the suite's ``[earlier]`` names, in its order (none
    without one). The earlier stores are found relative to the current folder, as the suite
    names them."""
    tables = suite.get("earlier") or []
    return [_compare(t, claims) for t in ([tables] if isinstance(tables, dict) else tables)]


def _compare(table: dict, claims: list[Claim]) -> BudgetComparison:
    from robustbench_norm.errors import RobustBenchError
    from robustbench_norm.reporting.check import parse_run_ref
    from robustbench_norm.reporting.report import build_report
    from robustbench_norm.suites.store import Store

    path, ref = parse_run_ref(table["store"])
    if not Path(path).exists():
        raise RobustBenchError(
            f"[earlier] store {path} does not exist (run from the repository root, or fix "
            "the path in the suite)"
        )
    with Store.open(path, read_only=True) as store:
        before = build_report(store, store.resolve_run(ref), earlier=False).claims
    by_claim = {c.claim: c for c in before}
    rows = [BudgetRow(c.claim, by_claim.get(c.claim), c) for c in claims]
    return BudgetComparison(table["label"], table["store"], rows)


def budget_intro(budgets: list[BudgetComparison]) -> str:
    """Where each earlier verdict comes from, and what changed since each."""
    where = ", ".join(f"at {b.label} (`{b.source}`)" for b in budgets)
    return f"Each claim {where} and in this run. " + " ".join(b.sentence() for b in budgets)


def earlier_cell(budget: BudgetComparison, i: int, mark: str = "**") -> str:
    """Row ``i``'s verdict and deciding comparison at ``budget`` (— where it made no such claim)."""
    row = budget.rows[i].earlier
    return "—" if row is None else f"{mark}{row.verdict}{mark}: {row.lead}"


def changed_cell(budgets: list[BudgetComparison], i: int, mark: str = "**") -> str:
    """Row ``i``'s "changed" cell: against one earlier run, whether its verdict changed; against
    several, from which (a verdict can flip at one budget and hold at the next)."""
    flags = [b.rows[i].changed for b in budgets]
    if all(f is None for f in flags):
        return "—"
    moved = [b.label for b, f in zip(budgets, flags, strict=True) if f]
    if not moved:
        return "same"
    return f"{mark}changed{mark}" + ("" if len(budgets) == 1 else " from " + ", ".join(moved))
