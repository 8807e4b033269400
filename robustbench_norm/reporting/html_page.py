"""The leaderboard as one self-contained HTML page: sortable tables, plots inlined as data URIs,
no external requests (it must open offline and from a file:// URL)."""

from __future__ import annotations

import base64
import html
from pathlib import Path

from robustbench_norm.reporting.claims import Claim
from robustbench_norm.reporting.earlier import changed_cell, earlier_cell
from robustbench_norm.reporting.leaderboard import Table, display_parts

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2rem auto; max-width: 72rem; color: #222; }
h1 { margin-bottom: .2rem; } h2 { margin-top: 2.2rem; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: .6rem 0 1rem; }
th, td { border: 1px solid #ddd; padding: .3rem .6rem; text-align: left; vertical-align: top; }
td.num { text-align: right; white-space: nowrap; }
details summary { color: #555; cursor: pointer; font-size: 90%; }
th { background: #f4f4f4; cursor: pointer; user-select: none; white-space: nowrap; }
th[aria-sort=ascending]::after { content: " ▲"; } th[aria-sort=descending]::after { content: " ▼"; }
td.best { font-weight: 600; background: #eef7ee; }
.verdict-supported { color: #1a7f37; font-weight: 600; }
.verdict-not-supported { color: #cf222e; font-weight: 600; }
.verdict-inconclusive { color: #9a6700; font-weight: 600; }
.verdict-no-effect { color: #0969da; font-weight: 600; }
.note { color: #555; } img { max-width: 100%; border: 1px solid #eee; margin: .4rem 0; }
#provenance th { cursor: default; text-align: right; } #provenance td { word-break: break-word; }
.links a { margin: 0 .2rem; }
"""

# Click a header to sort by that column; numbers sort numerically (the mean before "±").
SCRIPT = """
document.querySelectorAll("table.sortable").forEach(function (table) {
  table.querySelectorAll("th").forEach(function (th, col) {
    th.addEventListener("click", function () {
      var asc = th.getAttribute("aria-sort") !== "ascending";
      table.querySelectorAll("th").forEach(function (h) { h.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", asc ? "ascending" : "descending");
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      function key(row) {
        var text = row.cells[col].getAttribute("data-sort") || row.cells[col].textContent;
        var num = parseFloat(text);
        return isNaN(num) ? text.toLowerCase() : num;
      }
      rows.sort(function (a, b) {
        var x = key(a), y = key(b);
        if (x === y) { return 0; }
        var less = (typeof x === typeof y) ? x < y : typeof x === "number";
        return (less ? -1 : 1) * (asc ? 1 : -1);
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
});
"""


def _table(table: Table) -> str:
    return "".join(_table_part(part) for part in display_parts(table))


def _table_part(table: Table) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in ["rank", "norm", *table.columns])
    body = []
    for norm in table.ranked():
        rank = table.ranks.get(norm, 1)
        label = html.escape(table.rank_label(norm))
        cells = [f'<td data-sort="{rank}">{label}</td>', f"<td>{html.escape(norm)}</td>"]
        for col in table.columns:
            cell = table.rows[norm].get(col)
            if cell is None:
                cells.append('<td class="num" data-sort="">—</td>')
                continue
            cls = ' class="num best"' if cell.best else ' class="num"'
            star = " ★" if cell.best else ""
            cells.append(
                f'<td{cls} data-sort="{cell.mean:.6f}">{html.escape(cell.text())}{star}</td>'
            )
        body.append("<tr>" + "".join(cells) + "</tr>")
    direction = "higher is better" if table.higher_is_better else "lower is better"
    return (
        f'<h3 id="{table.id}">{html.escape(table.title)}</h3>'
        f'<p class="note">{html.escape(table.description)} ({direction}; 3+ runs: mean '
        f"[95 % interval over runs]; fewer: each run's value; ★ better than every other cell "
        f"of the column by a Holm-corrected Welch test)</p>"
        f'<table class="sortable" id="table-{table.id}"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>"
    )


def _claims(claims: list[Claim]) -> str:
    """One line per claim — the verdict and the comparison that decides it, with its adjusted
    p — and every comparison and the test behind a details element."""
    rows = []
    for c in claims:
        verdict_class = "verdict-" + (
            "no-effect" if c.verdict.startswith("no effect") else c.verdict.replace(" ", "-")
        )
        p = "—" if c.p_value is None else f"{c.p_value:.3g}"
        details = (
            f"<details><summary>every comparison and the test</summary>"
            f"<p>{html.escape(c.evidence)}</p><p class='note'>{html.escape(c.test)}</p></details>"
        )
        rows.append(
            f"<tr><td>{html.escape(c.claim)}</td>"
            f'<td class="{verdict_class}">{html.escape(c.verdict)}</td>'
            f"<td>{html.escape(c.lead)}{details}</td>"
            f"<td class='num' data-sort='{p}'>{p}</td></tr>"
        )
    return (
        '<table class="sortable" id="table-claims"><thead><tr><th>claim</th><th>verdict</th>'
        "<th>deciding comparison</th><th>p</th></tr></thead><tbody>" + "".join(rows)
        + "</tbody></table>"
    )  # fmt: skip


def _image(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">'


#: the paper whose claims the page tests
PAPER = ("Understanding and Improving Group Normalization (arXiv 2207.01972)",
         "https://arxiv.org/abs/2207.01972")  # fmt: skip


def _links(links: list[tuple[str, str]]) -> str:
    items = [f'<a href="{html.escape(PAPER[1])}">{html.escape(PAPER[0])}</a>']
    items += [f'<a href="{html.escape(href)}">{html.escape(text)}</a>' for text, href in links]
    return '<p class="links" id="links">' + " · ".join(items) + "</p>"


def _code_spans(text: str) -> str:
    """Markdown's `code` spans as <code>, everything else escaped."""
    parts = html.escape(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def _plain_table(table_id: str, headers: tuple[str, ...], rows) -> str:
    """A small unsorted table of escaped text cells."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in row) + "</tr>" for row in rows
    )
    return f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _fingerprints(rows: list[tuple[str, str, str, str]]) -> list[str]:
    if not rows:
        return []
    return [
        "<h2>Layer fingerprints</h2>",
        "<p class='note'>the exact identity of each layer measured here (outputs, gradients and "
        "running statistics on fixed float64 inputs, and a 3-step float64 training canary); "
        "<code>check</code> compares them before any statistics</p>",
        _plain_table("fingerprints", ("label", "layer", "options", "canary losses"), rows),
    ]


def _budget(budgets) -> str:
    """The suite's [earlier] comparisons (reporting/earlier.py): verdicts against budget."""
    if not budgets:
        return ""
    rows = []
    for i, row in enumerate(budgets[0].rows):
        before = [earlier_cell(b, i, mark="") for b in budgets]
        now = f"{row.now.verdict}: {row.now.lead}"
        rows.append((row.claim, *before, now, changed_cell(budgets, i, mark="")))
    headers = ("claim", *(b.label for b in budgets), "this run", "changed")
    sentence = " ".join(b.sentence() for b in budgets)
    return f"<h3>Verdicts against budget</h3><p>{html.escape(sentence)}</p>" + _plain_table(
        "table-budget", headers, rows
    )


def _externals(rows: list[tuple[str, str, str, str]]) -> list[str]:
    if not rows:
        return []
    return [
        "<h2>External models</h2>",
        "<p class='note'>benchmarked from outside: one model each, not a draw of training runs</p>",
        _plain_table("externals", ("row", "architecture", "class", "weights sha256"), rows),
    ]


def _history(history, plots: list[Path]) -> list[str]:
    """A nightly's history (reporting/history.py): the drift sentence, a table per metric and
    the plot."""
    if history is None:
        return []
    drift = _code_spans(history.drift_sentence().replace("**", ""))
    parts = ["<h2 id='history'>History</h2>", f"<p>{drift}</p>"]
    for metric in history.metrics:
        headers, rows = history.table(metric)
        if len(headers) > 5:
            table_id = f"history-{metric.replace('/', '-')}"
            parts += [f"<h3>{html.escape(metric)}</h3>", _plain_table(table_id, headers, rows)]
    parts += [_image(p) for p in plots if p.name == "history.png"]
    return parts


def _provenance(rows: list[tuple[str, str]]) -> str:
    body = "".join(
        f"<tr><th scope='row'>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows
    )
    return f'<table id="provenance"><tbody>{body}</tbody></table>'


def render(
    title: str,
    intro: str,
    tables: list[Table],
    claims: list[Claim],
    plots: list[Path],
    provenance: list[tuple[str, str]],
    links: list[tuple[str, str]] = (),
    fingerprints: list[tuple[str, str, str, str]] = (),
    reproduce: str = "",
    externals: list[tuple[str, str, str, str]] = (),
    budgets=(),
    history=None,
) -> str:
    """The page; ``links`` are (text, relative href) of the files beside it, ``fingerprints``
    (label, layer, options, canary losses) rows, ``reproduce`` how to rerun the run (Markdown
    code spans become code)."""
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1><p>{html.escape(intro)}</p>",
        _links(list(links)),
        *_history(history, plots),
        "<h2>Claims of the GN+ paper</h2>",
        _claims(claims),
        _budget(budgets),
        "<h2>Leaderboards</h2>",
        *[_table(t) for t in tables],
        "<h2>Plots</h2>",
        *[_image(p) for p in plots if history is None or p.name != "history.png"],
        *_fingerprints(list(fingerprints)),
        *_externals(list(externals)),
        "<h2>Provenance</h2>",
        _provenance(provenance),
        f'<p id="reproduce">{_code_spans(reproduce)}</p>' if reproduce else "",
        f"<script>{SCRIPT}</script></body></html>",
    ]
    return "\n".join(parts)
