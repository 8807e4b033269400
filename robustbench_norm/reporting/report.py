"""Leaderboards from the store: README.md, results.csv, results.json, index.html and PNG plots.

``write_report(store, run_id, out_dir)`` reads one run, builds every table (mean ± 95 % CI over
seeds, ranked, best marked), checks the paper's claims, draws the plots and writes them all to
``out_dir`` (by default ``leaderboards/<suite>/``). ``results.json`` has a stable, documented
schema (see README.md, "results.json"). ``publish`` adds the exported store and swaps the whole
folder in at once, so a failure leaves the previous leaderboard as it was.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from robustbench_norm.data import dataset_info
from robustbench_norm.errors import RobustBenchError, StorageError
from robustbench_norm.norms.fingerprint import signature
from robustbench_norm.reporting import adaptation, html_page, plots
from robustbench_norm.reporting.claims import Claim, evaluate_claims
from robustbench_norm.reporting.earlier import (
    BudgetComparison,
    budget_intro,
    changed_cell,
    compare_with_earlier,
    earlier_cell,
)
from robustbench_norm.reporting.history import History
from robustbench_norm.reporting.leaderboard import (
    MIN_RUNS_FOR_INTERVAL,
    Table,
    display_parts,
)
from robustbench_norm.reporting.leaderboard_folder import check_replaceable, swap_in, write_manifest
from robustbench_norm.reporting.tables import build_tables, chance_corruptions
from robustbench_norm.specs import RUNNING
from robustbench_norm.suites.store import Store

JSON_SCHEMA = "robustbench-norm/leaderboard@3"


@dataclass
class Report:
    suite: str
    description: str
    run: dict
    frame: pd.DataFrame
    jobs: list[dict]
    tables: list[Table]
    claims: list[Claim]
    reference: str | None
    #: the suite's own Markdown notes (design, how to read it), shown under the intro
    notes: str = ""
    #: the rows the tables, claims and plots use: ``frame`` less the adaptation sweep's
    board: pd.DataFrame | None = None
    #: the claims beside each earlier publication's the suite's ``[earlier]`` names, oldest first
    budgets: list[BudgetComparison] = field(default_factory=list)


def load_frame(store: Store, run_id: int) -> tuple[pd.DataFrame, list[dict]]:
    """Every result row of the run, adapted ones (test-time statistics) as rows of their own
    (``norm`` ``bn · test-batch 500``, ``layer`` ``bn``), and its jobs."""
    rows = store.results_of_run(run_id, statistics=None)
    jobs = store.jobs_of_run(run_id)
    if not jobs:
        raise RobustBenchError(f"run {run_id} in {store.path} has no jobs")
    frame = pd.DataFrame(rows)
    if frame.empty:
        raise RobustBenchError(f"run {run_id} in {store.path} has no results: {_why_empty(jobs)}")
    return adaptation.label_rows(frame), jobs


def _why_empty(jobs: list[dict]) -> str:
    failed = [j for j in jobs if j["status"] == "failed"]
    if not failed:
        return "none of its jobs has finished yet; rerun the same `run` command to complete it"
    error = (failed[0]["error"] or "").strip().splitlines() or ["no error recorded"]
    return (
        f"{len(failed)} of its {len(jobs)} job(s) failed (the first: {error[-1]}); fix that "
        "and rerun the suite"
    )


def build_report(store: Store, run_id: int, alpha: float = 0.05, earlier: bool = True) -> Report:
    """Every table and claim of a run; with ``earlier``, also the suite's ``[earlier]``
    publication's verdicts beside this run's (earlier.py)."""
    run = store.run(run_id)
    frame, jobs = load_frame(store, run_id)
    _refuse_mixed_budgets(run, jobs)
    layers = list(dict.fromkeys(j["norm"] for j in jobs))
    toml = tomllib.loads(run["suite_toml"])
    reference = toml.get("reference", "bn" if "bn" in layers else None)
    plan = adaptation.plan_of(toml)
    board = adaptation.board_rows(frame, plan)
    done = board[board.status == "done"]
    table = toml.get("evaluate", {}).get("corruptions", {}).get("table", "imagenet-c")
    tables = build_tables(done, jobs, adaptation.row_order(layers, done), reference, table, layers)
    sweep = adaptation.sweep_table(frame[frame.status == "done"])
    if sweep is not None:
        tables.insert(next(i for i, t in enumerate(tables) if t.id == "noise-sigma") + 1, sweep)
    adapted = None if plan is None else plan.settings()[0][0].label
    claims = evaluate_claims(board, jobs, alpha, adapted)
    _explain_rank_ties(tables, claims)
    budgets = compare_with_earlier(toml, claims) if earlier else []
    return Report(
        run["suite"], toml.get("description", ""), run, frame, jobs, tables, claims, reference,
        toml.get("notes", "").strip(), board, budgets,
    )  # fmt: skip


#: a claim that compares two rows of one table: claim → (table id, claimed better, worse)
CLAIMS_ON_TABLES = {"GN+ beats GN at every batch size": ("clean", "gnplus", "gn")}


def _explain_rank_ties(tables: list[Table], claims: list[Claim]) -> None:
    """Where a supported claim's two layers share a rank in the table of its metric, say why
    both stand: the table's Holm family spans every pair of rows, the claim's only its own
    comparisons."""
    by_id = {t.id: t for t in tables}
    for claim in claims:
        table_id, better, worse = CLAIMS_ON_TABLES.get(claim.claim, (None, None, None))
        table = by_id.get(table_id)
        if (
            claim.verdict != "supported"
            or table is None
            or not {better, worse} <= table.ranks.keys()
        ):
            continue
        if table.ranks[better] < table.ranks[worse]:
            continue
        claim.evidence += (
            f". The {table.title.lower()} table ranks {better} and {worse} alike: its ranks "
            f"correct over {table.rank_tests()} tests (every pair of rows, every shared column), "
            f"this claim over its {len(claim.comparisons)} comparisons — a stricter family, "
            "not a contradiction"
        )


def _refuse_mixed_budgets(run: dict, jobs: list[dict]) -> None:
    """A leaderboard row pools the runs of one setting; runs of several training budgets (a
    ``curves`` ladder) are not draws of one experiment."""
    budgets: dict[tuple, set] = {}
    for j in jobs:
        train = j["spec"].get("train") or {}
        key = (j["model"], j["norm"], j["batch_size"], j["regularizer"])
        budgets.setdefault(key, set()).add((train.get("images"), train.get("steps")))
    if any(len(b) > 1 for b in budgets.values()):
        raise RobustBenchError(
            f"run {run['id']} ({run['suite']}) trains each setting at several budgets (a "
            "learning-curve ladder), which a leaderboard would pool as one experiment; its "
            "page is `robustbench-norm curves SUITE --no-run`"
        )


# -- writing -----------------------------------------------------------------------------------


def _markdown_table(table: Table) -> str:
    return "\n\n".join(_markdown_part(part) for part in display_parts(table))


def _markdown_part(table: Table) -> str:
    head = ["rank", "norm", *table.columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * 2 + "---:|" * len(table.columns)]
    for norm in table.ranked():
        cells = []
        for col in table.columns:
            c = table.rows[norm].get(col)
            text = "—" if c is None else c.text()
            cells.append(f"**{text}** ★" if c is not None and c.best else text)
        lines.append(f"| {table.rank_label(norm)} | {norm} | " + " | ".join(cells) + " |")
    direction = "higher is better" if table.higher_is_better else "lower is better"
    return f"### {table.title}\n\n{table.description} ({direction}).\n\n" + "\n".join(lines)


def provenance_rows(run: dict) -> list[tuple[str, str]]:
    """Where and with what the run was made, as (what, value) rows: a table on the page, a
    list in the README."""
    p = run["provenance"]
    sha = (p.get("git_sha") or "unknown")[:12] + (" (dirty)" if p.get("git_dirty") else "")
    rows = [
        ("run", f"{run['id']} of suite {run['suite']}, status {run['status']}"),
        ("started, finished", f"{run['started']}, {run['finished']}"),
        ("code", f"robustbench-norm {p.get('robustbench_norm')}, git {sha}"),
        (
            "machine",
            f"{p.get('device')}, {p.get('cpu_count')} cores, host {p.get('host')}, "
            f"{p.get('platform')}",
        ),
    ]
    if "cpu_model" in p:
        rows.append(
            (
                "numeric environment",
                f"CPU {p['cpu_model']}, ATen dispatch {p.get('cpu_capability')}, BLAS "
                f"{p.get('blas')} {p.get('mkl') or ''}, oneDNN {p.get('onednn')}, "
                f"{p.get('torch_threads')} torch thread(s) per job",
            )
        )
    rows.append(
        (
            "torch",
            f"{p.get('torch')} (CUDA {p.get('cuda')}, cuDNN {p.get('cudnn')}), Python "
            f"{p.get('python')}",
        )
    )
    rows.append(("packages", ", ".join(f"{k} {v}" for k, v in p.get("packages", {}).items())))
    if p.get("plugins"):
        rows.append(("plugin modules", ", ".join(p["plugins"])))
    for name, layer in (p.get("plugin_layers") or {}).items():
        rows.append(
            (f"plugin layer {name}", f"from {layer['origin']}, code {layer['code_sha256']} "
             "(sha256 of its source without comments, docstrings and layout)")
        )  # fmt: skip
    return rows


def _provenance_lines(run: dict) -> list[str]:
    return [f"- {what}: {value}" for what, value in provenance_rows(run)]


def _computing_runs(store: Store, run: dict, jobs: list[dict]) -> list[str]:
    """The earlier runs whose jobs this run reused: where the numbers were computed."""
    lines = []
    for run_id in sorted({j["run_id"] for j in jobs} - {run["id"]}):
        other = store.run(run_id)
        p = other["provenance"]
        n = sum(j["run_id"] == run_id for j in jobs)
        sha = (p.get("git_sha") or "unknown")[:12] + (" (dirty)" if p.get("git_dirty") else "")
        lines.append(
            f"- {n} of the jobs were computed by run {run_id} (started {other['started']}, git "
            f"{sha}, CPU {p.get('cpu_model', '?')}, {p.get('torch_threads', '?')} torch "
            "thread(s) per job) and reused here"
        )
    return lines


def _cost_line(jobs: list[dict]) -> str:
    """What the run cost: job time summed, over the runs that computed the jobs."""
    seconds = sum(j["job_seconds"] for j in jobs)
    return (
        f"- cost: {len(jobs)} jobs, {seconds / 60:.1f} min of job time in all (train + evaluate, "
        "summed over jobs; with --jobs N the wall time is about that ÷ N)"
    )


def write_report(
    store: Store,
    run_id: int,
    out_dir: str | Path,
    folder: str | Path | None = None,
    history: History | None = None,
) -> list[Path]:
    """The leaderboard folder of one run: README.md, results.csv/json, suite.toml, the layer
    fingerprints, plots and index.html, each a function of the store alone. ``folder``: the
    name its commands use for the folder (default ``out_dir``; publishing writes a staging
    folder first). ``history``: a nightly's nights (reporting/history.py), shown first."""
    folder = Path(folder or out_dir).as_posix()
    report = build_report(store, run_id)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    images = _write_plots(report, out)
    if history is not None:
        drawn = plots.history_plot(history, out / "history.png")
        images = [*([drawn] if drawn else []), *images]
    prints = store.fingerprints_of_run(run_id)
    if prints:
        (out / "fingerprints.json").write_text(json.dumps(prints, indent=1) + "\n")
    title = f"robustbench-norm leaderboard: {report.suite}"
    intro = _intro(report)
    if history is not None:
        intro = f"{history.banner(run_id)} {intro}"
    (out / "README.md").write_text(
        _markdown(report, store, title, intro, images, prints, folder, history)
    )
    report.frame.to_csv(out / "results.csv", index=False)
    document = _results_document(report)
    if history is not None:
        document["history"] = history.to_dict()
    (out / "results.json").write_text(json.dumps(document, indent=1, allow_nan=False) + "\n")
    (out / "suite.toml").write_text(report.run["suite_toml"])
    files = [
        out / "README.md",
        out / "results.csv",
        out / "results.json",
        out / "suite.toml",
        *([out / "fingerprints.json"] if prints else []),
    ]
    page = html_page.render(
        title,
        intro,
        report.tables,
        report.claims,
        images,
        provenance_rows(report.run),
        links=[(f.name, f.name) for f in files] + [("store.sqlite", "store.sqlite")],
        fingerprints=fingerprint_rows(prints),
        externals=external_rows(report.jobs),
        budgets=report.budgets,
        reproduce=reproduce_line(folder, nightly=history is not None),
        history=history,
    )
    (out / "index.html").write_text(page)
    return [*files, out / "index.html", *images]


def _write_plots(report: Report, out: Path) -> list[Path]:
    """Every plot the run has data for (old ones removed first: a plot without data is gone)."""
    for old in out.glob("*.png"):
        old.unlink()
    dataset = tomllib.loads(report.run["suite_toml"]).get("dataset", "fashion-mnist-mini")
    chance = 1.0 / dataset_info(dataset).num_classes
    frame = report.board
    images = [
        plots.claims_forest(report.claims, out / "claims.png"),
        plots.accuracy_vs_parameter(
            frame, "corruption", "accuracy", "severity", "accuracy vs corruption severity",
            out / "corruptions.png", chance=chance,
        ),
        plots.accuracy_vs_parameter(
            frame, "attack", "robust_accuracy", "ε (L∞: pixel units, L2: image norm)",
            "robust accuracy vs ε", out / "attacks.png", chance=chance, epsilon_axis=True,
        ),
        plots.accuracy_vs_parameter(
            frame, "noise", "accuracy", "σ (pixel units; 0 = clean)",
            "accuracy vs Gaussian noise σ", out / "noise.png", chance=chance, clean_at_zero=True,
        ),
        plots.adaptation_sweep(adaptation.sweep_frame(report.frame), out / "adaptation.png"),
        plots.accuracy_vs_batch_size(  # trained rows: an external model has no batch size
            frame[(frame.statistics == RUNNING) & (frame.batch_size > 0)], out / "batch_size.png"
        ),
        plots.training_curves(report.jobs, out / "training.png"),
        plots.stability_curves(report.jobs, out / "stability.png"),
        plots.lambda_curves(report.jobs, out / "lambda.png"),
    ]  # fmt: skip
    return [p for p in images if p is not None]


def _intro(report: Report) -> str:
    return (
        f"{report.description}. {len(report.jobs)} jobs; a training run (one seed) is the unit "
        f"of replication. With {MIN_RUNS_FOR_INTERVAL} or more runs a cell is the mean with its "
        "95 % Student-t interval over runs, clipped to the metric's range; with fewer it lists "
        "each run's value, since an interval over 2 runs says nothing. An interval covers the "
        "spread between training runs on one fixed set of test images; it leaves out the "
        "test-sampling error of those images (binomial standard error √(p(1−p)/n): 0.003 at "
        "accuracy 0.9 on 10,000 images, 0.013 on 500). Rows share a rank (1=) "
        "unless a Holm-corrected one-sided Welch test over runs separates them in every "
        "column all rows share; ★ marks a cell better than every other in its column by that test."
    )


def _warnings(report: Report) -> list[str]:
    """Corruptions at chance first, then each job's evaluation warnings and failures."""
    out = []
    at_chance = chance_corruptions(report.board)
    if at_chance:
        out.append(
            f"every norm is at chance on {', '.join(at_chance)} at every severity: those "
            "columns measure the corruption's strength on this data, not the layers "
            "(imagecorruptions' severities are ImageNet-C's, harsh at 28–32 pixels; "
            '`table = "cifar-10-c"` in [evaluate.corruptions] uses CIFAR-10-C\'s)'
        )
    out += _below_chance(report)
    out += [f"{j['norm']} seed {j['seed']}: {w}" for j in report.jobs for w in j["warnings"]]
    out += [
        f"{j['norm']} seed {j['seed']}: {(j['error'] or '').strip().splitlines()[-1:]}"
        for j in report.jobs
        if j["status"] == "failed"
    ]
    return out


def _budget_markdown(budgets: list[BudgetComparison]) -> list[str]:
    labels = " | ".join(b.label for b in budgets)
    lines = [
        "### Verdicts against budget",
        "",
        budget_intro(budgets),
        "",
        f"| claim | {labels} | this run | changed |",
        "|---|" + "---|" * len(budgets) + "---|---|",
    ]
    for i, row in enumerate(budgets[0].rows):
        before = " | ".join(earlier_cell(b, i) for b in budgets)
        lines.append(
            f"| {row.claim} | {before} | **{row.now.verdict}**: {row.now.lead} | "
            f"{changed_cell(budgets, i)} |"
        )
    return lines


def _below_chance(report: Report) -> list[str]:
    """Rows whose mean clean accuracy is at or below chance: such a model has learned nothing,
    and its robustness numbers mean nothing either."""
    dataset = tomllib.loads(report.run["suite_toml"]).get("dataset", "fashion-mnist-mini")
    chance = 1.0 / dataset_info(dataset).num_classes
    clean = next((t for t in report.tables if t.id == "clean"), None)
    out = []
    for norm, cells in clean.rows.items() if clean else []:
        for column, cell in cells.items():
            if cell.mean <= chance:
                out.append(
                    f"{norm} ({column}): clean accuracy {cell.mean:.3f} is at or below chance "
                    f"({chance:.2f}): this model has not learned; read its other numbers as such"
                )
    return out


def _markdown(
    report: Report,
    store: Store,
    title: str,
    intro: str,
    images: list[Path],
    prints: dict,
    folder: str,
    history: History | None = None,
) -> str:
    md = [
        f"# {title}",
        "",
        intro,
        "",
        *(history.markdown(_history_image(images)) if history is not None else []),
        *([report.notes, ""] if report.notes else []),
        "## Claims of the GN+ paper",
        "",
        "| claim | verdict | deciding comparison | p |",
        "|---|---|---|---:|",
    ]
    for c in report.claims:
        p = "—" if c.p_value is None else f"{c.p_value:.3g}"
        md.append(f"| {c.claim} | **{c.verdict}** | {c.lead} | {p} |")
    if report.budgets:
        md += ["", *_budget_markdown(report.budgets)]
    md += ["", "Every comparison of each claim, and its test:", "",
           "| claim | our numbers | test |", "|---|---|---|"]  # fmt: skip
    md += [f"| {c.claim} | {c.evidence} | {c.test} |" for c in report.claims]
    md += [
        "",
        "Each claim is a family of comparisons between groups of runs (Welch's t; an F-test "
        "for a spread, Fisher for divergence), Holm-corrected; the regularization claim's unit "
        "is a seed's mean drop over the regularizers, each regularized run against the "
        "unregularized run of its seed. **supported**: significant in "
        "the claimed direction (in every comparison, or in at least one measure for the "
        "stability claims); **not supported**: significant the other way; **no effect larger "
        "than δ**: every comparison equivalent within the margin (TOST); **inconclusive**: "
        "none of these, with what it would take. p is the deciding Holm-adjusted p.",
        "",
        "## Leaderboards",
        "",
    ]
    for t in report.tables:
        md += [_markdown_table(t), ""]
    warnings = _warnings(report)
    if warnings:
        md += ["## Warnings", ""] + [f"- {w}" for w in warnings] + [""]
    md += ["## Plots", ""] + [f"![{p.stem}]({p.name})" for p in images
                              if history is None or p.name != "history.png"]  # fmt: skip
    if prints:
        md += [
            "",
            "## Layer fingerprints",
            "",
            "The exact identity of each layer measured here (`fingerprints.json`: outputs, "
            "gradients and running statistics on fixed float64 inputs, and a 3-step float64 "
            "training canary). `robustbench-norm check` compares them before any statistics; "
            f"{fingerprint_line(folder)} does it in seconds.",
            "",
            "| label | layer | options | canary losses |",
            "|---|---|---|---|",
        ]
        md += [f"| {label} | {layer} | `{options}` | {canary} |"
               for label, layer, options, canary in fingerprint_rows(prints)]  # fmt: skip
    externals = external_rows(report.jobs)
    if externals:
        md += [
            "",
            "## External models",
            "",
            "Benchmarked from outside (`benchmark()`): one model each, not a draw of training "
            "runs; nothing trained them here, so they have no batch size, seed or stability.",
            "",
            "| row | architecture | class | weights sha256 |",
            "|---|---|---|---|",
            *[f"| {row} | {arch} | `{cls}` | `{sha}` |" for row, arch, cls, sha in externals],
        ]
    md += [
        "",
        "## Provenance",
        "",
        *_provenance_lines(report.run),
        *_computing_runs(store, report.run, report.jobs),
        _cost_line(report.jobs),
        "",
        reproduce_line(folder, nightly=history is not None)
        + " Training runs are random draws across machines and thread counts, so a "
        "rerun matches these numbers within their seed spread, not bit for bit. "
        f"Machine-readable: `results.json` (schema `{JSON_SCHEMA}`), `results.csv`; "
        "interactive: `index.html`.",
        "",
    ]
    return "\n".join(md)


def _history_image(images: list[Path]) -> str | None:
    return next((p.name for p in images if p.name == "history.png"), None)


def reproduce_line(folder: str, nightly: bool = False) -> str:
    """How to rerun the run and compare with it, naming this leaderboard's own files (its
    ``suite.toml`` is the suite text the run read, whatever the original file was called; a
    night's names that night's seeds)."""
    if nightly:
        return (
            f"Reproduce this night: `robustbench-norm run {folder}/suite.toml` (its seeds are "
            f"the night's), then `robustbench-norm check --baseline {folder}/store.sqlite:pooled "
            "--candidate latest` compares the new run with every trusted night."
        )
    return (
        f"Reproduce: `robustbench-norm run {folder}/suite.toml`, then `robustbench-norm check "
        f"--baseline {folder}/store.sqlite:latest --candidate latest` compares the new run with "
        "this one."
    )


def fingerprint_line(folder: str) -> str:
    return (
        f"`robustbench-norm fingerprint {folder}/suite.toml --compare {folder}/store.sqlite:latest`"
    )


def external_rows(jobs: list[dict]) -> list[tuple[str, str, str, str]]:
    """(row, architecture, class, weights sha256) per benchmarked external model: the exact
    identity of what such a row measured, as fingerprints are for layers."""
    out = []
    for job in jobs:
        ext = (job.get("spec") or {}).get("external")
        if ext:
            cls = ext.get("class", "?") + (f" in {ext['wrapper']}" if ext.get("wrapper") else "")
            out.append((job["norm"], ext.get("architecture", "?"), cls, ext["weights_sha256"]))
    return out


def fingerprint_rows(prints: dict[str, dict]) -> list[tuple[str, str, str, str]]:
    """(label, layer, options as JSON, canary losses) per fingerprinted layer."""
    return [
        (label, fp["norm"], json.dumps(fp["options"]), signature(fp))
        for label, fp in prints.items()
    ]


#: the job fields results.json carries (the rest — spec, logs — is in the exported store)
JOB_FIELDS = (
    "id", "key", "model", "norm", "batch_size", "seed", "regularizer", "status", "error",
    "warnings", "wall_seconds",
)  # fmt: skip


def _results_document(report: Report) -> dict:
    run = report.run
    return {
        "schema": JSON_SCHEMA,
        "suite": {
            "name": report.suite,
            "description": report.description,
            "toml": run["suite_toml"],
            "reference": report.reference,
        },
        "run": {k: run[k] for k in ("id", "status", "started", "finished", "provenance")},
        "jobs": [{k: j[k] for k in JOB_FIELDS} for j in report.jobs],
        "leaderboards": [t.to_dict() for t in report.tables],
        "claims": [c.to_dict() for c in report.claims],
        "budget_comparisons": [b.to_dict() for b in report.budgets],
        "results": json.loads(report.frame.to_json(orient="records")),
    }


def publish(
    store: Store,
    run_id: int,
    out_dir: str | Path,
    writer: Callable[[Store, int, Path], list[Path]] | None = None,
    export: Callable[[Store, int, Path], object] | None = None,
) -> list[Path]:
    """Write the leaderboard of ``run_id`` and its exported store into ``out_dir``, all or
    nothing: everything is written to a hidden sibling folder first, which then replaces
    ``out_dir`` by two renames. Any failure (a damaged store, a full disk) removes the sibling
    and leaves the published folder exactly as it was: a baseline that ``check`` reads is
    never half-rewritten. Only a new or empty folder or a leaderboard ``report`` wrote is
    replaced (``leaderboard_folder.py``): never a folder of the user's. ``writer`` writes the
    folder's content (default :func:`write_report`; the learning curves bring their own);
    ``export`` its ``store.sqlite`` (default: the run alone; a nightly: its whole history).
    A folder whose store holds a nightly history is only replaced by a nightly (``export``
    given): one run published over it would drop every night."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise StorageError(f"--out {out} is a file; pass a folder")
    check_replaceable(out, Path(store.path))
    if export is None:
        _refuse_history(out)
    out = out.resolve()
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.new-", dir=out.parent))
    except OSError as e:
        raise StorageError(
            f"cannot write the leaderboard to {out_dir}: {e.strerror} ({e.filename}); pass "
            "--out a folder in a writable place"
        ) from None
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(staging, 0o777 & ~umask)  # mkdtemp makes it private; a leaderboard is not
    try:
        if writer is None:
            written = write_report(store, run_id, staging, folder=out_dir)
        else:
            written = writer(store, run_id, staging)
        (export or Store.export_run)(store, run_id, staging / "store.sqlite")
        write_manifest(staging)
        swap_in(staging, out)
    except OSError as e:
        shutil.rmtree(staging, ignore_errors=True)
        raise StorageError(
            f"could not write the leaderboard to {out_dir}: {e.strerror or e}; the previous "
            "one is untouched. Free space and rerun"
        ) from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    out_dir = Path(out_dir)
    return [out_dir / p.name for p in written] + [out_dir / "store.sqlite"]


def _refuse_history(out: Path) -> None:
    """A nightly leaderboard's store is its history; one run published there would replace it."""
    from robustbench_norm.suites.nights import nights_of

    held = out / "store.sqlite"
    if not held.is_file():
        return
    try:
        with Store.open(held, read_only=True) as history:
            nights = len(nights_of(history))
    except RobustBenchError:
        return  # not a store we can read: check_replaceable has judged the folder
    if nights:
        raise RobustBenchError(
            f"{out} holds a nightly history of {nights} night(s) in store.sqlite; publishing "
            "one run there would replace them all. Publish into another folder (--out), or "
            "let `robustbench-norm nightly` add the night"
        )
