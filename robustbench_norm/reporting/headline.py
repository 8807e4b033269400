"""The few numbers a run is about, as plain text: what ``run`` prints when it finishes, so a
newcomer sees a result without opening a file.

Per setting (model, batch size, regularizer: one block each when the suite varies them) and per
norm: clean accuracy, mean accuracy under Gaussian noise and under the common corruptions, and
robust accuracy under the strongest attack (the lowest robust accuracy) at the largest ε, beside
the clean accuracy on the attacked images (attacks use a subset); each with its 95 % interval
from 3 runs on, or the runs' values below that (as on the leaderboard).
"""

from __future__ import annotations

from robustbench_norm.perturb.attacks import parse_epsilon
from robustbench_norm.reporting.leaderboard import Cell, Table
from robustbench_norm.reporting.report import Report

SUMMARY = {"clean": "clean", "noise": "noise", "corruption": "corruptions"}


def _blocks(report: Report) -> dict[str, dict[str, tuple[Table, str]]]:
    """setting → metric label → (table, column)."""
    blocks: dict[str, dict[str, tuple[Table, str]]] = {}
    for table in report.tables:
        if table.id in SUMMARY:
            for column in table.columns:
                blocks.setdefault(column, {})[SUMMARY[table.id]] = (table, column)
    attacks = [t for t in report.tables if t.id.startswith("attack-") and t.columns]
    if attacks:
        strongest = min(attacks, key=_mean_at_largest_epsilon)
        largest = strongest.columns[-1].rsplit("ε=", 1)[-1]
        label = f"{strongest.id.removeprefix('attack-')} ε={largest}"
        for column in strongest.columns:
            if column.endswith(f"ε={largest}"):
                prefix = column.removesuffix(f"ε={largest}")
                setting = prefix.removesuffix(" · ")
                if not setting and len(blocks) == 1:  # one setting: tables leave it unnamed
                    setting = next(iter(blocks))
                block = blocks.setdefault(setting, {})
                # attacks run on a subset: its clean accuracy (ε = 0) stands beside them, so
                # robust accuracy is never read against clean accuracy on other images
                if f"{prefix}ε=0" in strongest.columns:
                    block[ATTACKED_CLEAN] = (strongest, f"{prefix}ε=0")
                block[label] = (strongest, column)
    return blocks


#: the headline's label for clean accuracy on the attacked images
ATTACKED_CLEAN = "clean, attacked images"


def headline(report: Report) -> str:
    """The headline as aligned text blocks ('' when the run has none of these numbers)."""
    out = []
    blocks = _blocks(report)
    for setting, metrics in blocks.items():
        if not metrics:
            continue
        first_table = next(iter(metrics.values()))[0]
        cells = {
            n: [t.rows.get(n, {}).get(c) for t, c in metrics.values()] for n in first_table.ranked()
        }
        norms = [n for n, row in cells.items() if any(c is not None for c in row)]
        rows = [[_text(c) for c in cells[n]] for n in norms]
        labels = list(metrics)
        widths = [max(len(lab), *(len(r[i]) for r in rows)) for i, lab in enumerate(labels)]
        name_width = max(len("norm"), *(len(n) for n in norms))
        if setting:
            out.append(setting)
        out.append(_line("norm", labels, name_width, widths))
        out += [_line(n, r, name_width, widths) for n, r in zip(norms, rows, strict=True)]
        out.append("")
    if any(ATTACKED_CLEAN in m for m in blocks.values()):
        out.append(f"(the attack runs on a subset of the test images; '{ATTACKED_CLEAN}' is the "
                   "clean accuracy on that subset)")  # fmt: skip
    return "\n".join(out).rstrip()


def _mean_at_largest_epsilon(table: Table) -> tuple[float, float]:
    """Sort key: the attack with the larger budget first, then the lower robust accuracy (the
    stronger attack is the headline)."""
    column = table.columns[-1]
    eps = parse_epsilon(column.rsplit("ε=", 1)[-1])
    cells = [row[column] for row in table.rows.values() if column in row]
    means = [c.mean for c in cells if c.mean == c.mean]
    return (-eps, sum(means) / len(means) if means else 1.0)


def _text(cell: Cell | None) -> str:
    return "—" if cell is None else cell.text()


def _line(name: str, values: list[str], name_width: int, widths: list[int]) -> str:
    cells = (f"{v:>{w}}" for v, w in zip(values, widths, strict=True))
    return "  ".join([f"{name:<{name_width}}", *cells])
