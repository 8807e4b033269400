"""Leaderboards from the store: README.md, results.csv, results.json, index.html and PNG plots.

``write_report(store, run_id, out_dir)`` reads one run, builds every table (mean ± 95 % CI over
seeds, ranked, best marked), checks the paper's claims, draws the plots and writes them all to
``out_dir`` (by default ``leaderboards/<suite>/``). ``results.json`` has a stable, documented
schema (see README.md, "results.json").
"""

from __future__ import annotations

import json
import math
import tomllib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from robustbench_norm import metrics
from robustbench_norm.errors import RobustBenchError
from robustbench_norm.norms.fingerprint import signature
from robustbench_norm.reporting import html_page, plots
from robustbench_norm.reporting.claims import Claim, evaluate_claims
from robustbench_norm.reporting.leaderboard import Cell, Table, pivot, select, setting_name, varying
from robustbench_norm.store import Store

JSON_SCHEMA = "robustbench-norm/leaderboard@1"


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


def load_frame(store: Store, run_id: int) -> tuple[pd.DataFrame, list[dict]]:
    rows = store.results_of_run(run_id)
    jobs = store.jobs_of_run(run_id)
    if not jobs:
        raise RobustBenchError(f"run {run_id} in {store.path} has no jobs")
    frame = pd.DataFrame(rows)
    if frame.empty:
        raise RobustBenchError(f"run {run_id} in {store.path} has no results yet")
    return frame, jobs


def build_report(store: Store, run_id: int, alpha: float = 0.05) -> Report:
    run = store.run(run_id)
    frame, jobs = load_frame(store, run_id)
    order = list(dict.fromkeys(j["norm"] for j in jobs))
    toml = tomllib.loads(run["suite_toml"])
    reference = toml.get("reference", "bn" if "bn" in order else None)
    done = frame[frame.status == "done"]
    tables = _tables(done, jobs, order, reference)

    def flags(family: str, name: str):
        def get(job_id: int) -> np.ndarray:
            return store.flags_of_job(job_id)[(family, name, None)]

        return get

    claims = evaluate_claims(frame, jobs, flags, alpha)
    return Report(
        run["suite"], toml.get("description", ""), run, frame, jobs, tables, claims, reference
    )


def _tables(frame: pd.DataFrame, jobs: list[dict], order: list[str], reference) -> list[Table]:
    vary = varying(frame)
    multi = len({setting_name(r, vary) for _, r in frame.iterrows()}) > 1

    def with_setting(prefix):
        return lambda r: f"{setting_name(r, vary)} · {prefix(r)}" if multi else prefix(r)

    tables = [
        pivot(
            select(frame, "clean", "accuracy"),
            id="clean",
            title="Clean accuracy",
            description="top-1 accuracy on the clean test images",
            order=order,
        ),
    ]
    noise = select(frame, "noise", "mean_accuracy", "gaussian_noise")
    if not noise.empty:
        tables.append(
            pivot(
                noise,
                id="noise",
                title="Gaussian noise: mean accuracy",
                description="accuracy averaged over the noise levels σ > 0",
                order=order,
            )
        )
        per_sigma = select(frame, "noise", "accuracy", "gaussian_noise")
        tables.append(
            pivot(
                per_sigma,
                id="noise-sigma",
                title="Gaussian noise: accuracy per σ",
                description="additive N(0, σ²) in [0, 1] pixel space, clipped",
                column_of=with_setting(lambda r: f"σ={r.parameter:g}"),
                order=order,
            )
        )
    flip = select(frame, "noise_sequence", "flip_probability")
    if not flip.empty:
        tables.append(
            pivot(
                flip,
                id="flip",
                title="Noise sequences: flip probability",
                description="share of noisy frames whose prediction differs from "
                "the clean frame's (ImageNet-P style)",
                higher_is_better=False,
                order=order,
            )
        )
    corr = select(frame, "corruption", "mean_corruption_accuracy")
    if not corr.empty:
        tables.append(
            pivot(
                corr,
                id="corruption",
                title="Common corruptions: mean accuracy",
                description="accuracy averaged over corruptions and severities",
                order=order,
            )
        )
        per_name = select(frame, "corruption", "mean_accuracy")
        per_name = per_name[per_name.name != "all"]
        tables.append(
            pivot(
                per_name,
                id="corruption-names",
                title="Common corruptions: accuracy per corruption",
                description="averaged over severities",
                column_of=with_setting(lambda r: r["name"]),
                order=order,
            )
        )
        if reference is not None:
            tables += _mce_tables(frame, reference, order)
    for attack in dict.fromkeys(select(frame, "attack", "robust_accuracy").name):
        sub = select(frame, "attack", "robust_accuracy", attack)
        tables.append(
            pivot(
                sub,
                id=f"attack-{attack}",
                title=f"{attack}: robust accuracy",
                description="correct and not fooled within ε (eval mode)",
                column_of=with_setting(lambda r: f"ε={_eps(r.parameter)}"),
                order=order,
            )
        )
    tables.append(_stability_table(frame, jobs, order))
    if frame.regularizer.nunique() > 1:
        clean = select(frame, "clean", "accuracy")
        rest = [k for k in vary if k != "regularizer"]
        tables.append(
            pivot(
                clean,
                id="regularization",
                title="Clean accuracy per regularizer",
                description="one factor at a time around the unregularized run",
                column_of=lambda r: " · ".join(
                    [setting_name(r, rest)] * bool(rest) + [r.regularizer]
                ),
                order=order,
            )
        )
    return tables


def _eps(value: float) -> str:
    for k in (1, 2, 4, 8, 16):
        if math.isclose(value, k / 255, rel_tol=1e-6):
            return f"{k}/255"
    return f"{value:g}"


def _mce_tables(frame: pd.DataFrame, reference: str, order: list[str]) -> list[Table]:
    corr = select(frame, "corruption", "accuracy")
    clean = select(frame, "clean", "accuracy")
    keys = ["model", "batch_size", "regularizer", "seed"]
    rows = []
    for job_id, job in corr.groupby("job_id"):
        first = job.iloc[0]
        match = (corr.norm == reference) & np.logical_and.reduce(
            [corr[k] == first[k] for k in keys]
        )
        ref = corr[match]
        if ref.empty:
            continue
        errors = {(r["name"], int(r.parameter)): 1 - r.value for _, r in job.iterrows()}
        ref_errors = {(r["name"], int(r.parameter)): 1 - r.value for _, r in ref.iterrows()}
        clean_err = 1 - float(clean[clean.job_id == job_id].value.iloc[0])
        ref_clean = 1 - float(clean[clean.job_id == ref.job_id.iloc[0]].value.iloc[0])
        out = metrics.corruption_errors(errors, ref_errors, clean_err, ref_clean)
        for metric in ("mce", "relative_mce"):
            rows.append(
                {
                    **{k: first[k] for k in keys},
                    "norm": first.norm,
                    "metric": metric,
                    "value": out[metric]["all"],
                }
            )
    if not rows:
        return []
    mce = pd.DataFrame(rows)
    desc = f"against the {reference!r} model of the same setting and seed (1.0 = as robust)"
    return [
        pivot(
            mce[mce.metric == "mce"],
            id="mce",
            title="mCE",
            description=desc,
            higher_is_better=False,
            order=order,
        ),
        pivot(
            mce[mce.metric == "relative_mce"],
            id="relative-mce",
            title="Relative mCE",
            description=desc + "; error increase over clean",
            higher_is_better=False,
            order=order,
        ),
    ]


def _stability_table(frame: pd.DataFrame, jobs: list[dict], order: list[str]) -> Table:
    columns = [
        "accuracy seed std",
        "diverged runs",
        "landscape range",
        "gradient change",
        "β-smoothness",
    ]
    table = Table(
        "stability",
        "Training stability",
        "seed std of final clean accuracy, diverged runs, and Santurkar et al.'s "
        "measures averaged over the measured steps",
        False,
        columns,
    )
    clean = select(frame, "clean", "accuracy")
    for norm in order:
        cells: dict[str, Cell] = {}
        accs = clean[clean.norm == norm].groupby(["model", "batch_size", "regularizer"]).value
        stds = [s for s in accs.std().tolist() if not math.isnan(s)]
        if stds:
            cells["accuracy seed std"] = Cell(float(np.mean(stds)), float("nan"), len(stds))
        mine = [j for j in jobs if j["norm"] == norm]
        cells["diverged runs"] = Cell(
            sum(j["status"] == "diverged" for j in mine), float("nan"), len(mine)
        )
        for col, name in (
            ("landscape range", "landscape_range"),
            ("gradient change", "grad_change_max"),
            ("β-smoothness", "beta_smoothness"),
        ):
            values = select(frame, "stability", "mean", name)
            values = values[values.norm == norm].value.tolist()
            if values:
                cells[col] = Cell(*metrics.mean_ci(values), len(values))
        table.rows[norm] = cells
    table.mark_best()
    return table


# -- writing -----------------------------------------------------------------------------------


def _markdown_table(table: Table) -> str:
    head = ["rank", "norm", *table.columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * 2 + "---:|" * len(table.columns)]
    for rank, norm in enumerate(table.ranked(), start=1):
        cells = []
        for col in table.columns:
            c = table.rows[norm].get(col)
            text = "—" if c is None else c.text()
            if col == "diverged runs" and c is not None:
                text = f"{int(c.mean)} / {c.n}"
            cells.append(f"**{text}** ★" if c is not None and c.best else text)
        lines.append(f"| {rank} | {norm} | " + " | ".join(cells) + " |")
    direction = "higher is better" if table.higher_is_better else "lower is better"
    return f"### {table.title}\n\n{table.description} ({direction}).\n\n" + "\n".join(lines)


def _provenance_lines(run: dict) -> list[str]:
    p = run["provenance"]
    sha = (p.get("git_sha") or "unknown")[:12] + (" (dirty)" if p.get("git_dirty") else "")
    return [
        f"- run {run['id']} of suite `{run['suite']}`, started {run['started']}, finished "
        f"{run['finished']}, status {run['status']}",
        f"- code: robustbench-norm {p.get('robustbench_norm')}, git {sha}",
        f"- machine: {p.get('device')}, {p.get('cpu_count')} cores, host {p.get('host')}, "
        f"{p.get('platform')}",
        *(
            [
                f"- numeric environment: CPU {p['cpu_model']}, ATen dispatch "
                f"{p.get('cpu_capability')}, BLAS {p.get('blas')} {p.get('mkl') or ''}, "
                f"oneDNN {p.get('onednn')}, {p.get('torch_threads')} torch thread(s)"
            ]
            if "cpu_model" in p
            else []
        ),
        f"- torch {p.get('torch')} (CUDA {p.get('cuda')}, cuDNN {p.get('cudnn')}), Python "
        f"{p.get('python')}",
        "- packages: " + ", ".join(f"{k} {v}" for k, v in p.get("packages", {}).items()),
    ]


def write_report(store: Store, run_id: int, out_dir: str | Path) -> list[Path]:
    report = build_report(store, run_id)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.png"):
        old.unlink()
    images = [
        plots.accuracy_vs_parameter(
            report.frame,
            "corruption",
            "accuracy",
            "severity",
            "accuracy vs corruption severity",
            out / "corruptions.png",
        ),
        plots.accuracy_vs_parameter(
            report.frame,
            "attack",
            "robust_accuracy",
            "ε",
            "robust accuracy vs ε",
            out / "attacks.png",
        ),
        plots.accuracy_vs_parameter(
            report.frame,
            "noise",
            "accuracy",
            "σ",
            "accuracy vs Gaussian noise σ",
            out / "noise.png",
        ),
        plots.accuracy_vs_batch_size(report.frame, out / "batch_size.png"),
        plots.training_curves(report.jobs, out / "training.png"),
        plots.stability_curves(report.jobs, out / "stability.png"),
        plots.lambda_curves(report.jobs, out / "lambda.png"),
    ]
    images = [p for p in images if p is not None]

    run = report.run
    warnings = [f"{j['norm']} seed {j['seed']}: {w}" for j in report.jobs for w in j["warnings"]]
    failed = [
        f"{j['norm']} seed {j['seed']}: {(j['error'] or '').strip().splitlines()[-1:]}"
        for j in report.jobs
        if j["status"] == "failed"
    ]
    title = f"robustbench-norm leaderboard: {report.suite}"
    intro = (
        f"{report.description}. {len(report.jobs)} jobs. Every cell is the mean over seeds "
        "± the half-width of its 95 % Student-t interval; tables are ranked by their row "
        "mean and ★ marks the best cell of each column."
    )

    md = [
        f"# {title}",
        "",
        intro,
        "",
        "## Claims of the GN+ paper",
        "",
        "| claim | our numbers | test | p | verdict |",
        "|---|---|---|---:|---|",
    ]
    for c in report.claims:
        p = "—" if c.p_value is None else f"{c.p_value:.3g}"
        md.append(f"| {c.claim} | {c.evidence} | {c.test} | {p} | **{c.verdict}** |")
    md += ["", "## Leaderboards", ""]
    for t in report.tables:
        md += [_markdown_table(t), ""]
    if warnings or failed:
        md += ["## Warnings", ""] + [f"- {w}" for w in warnings + failed] + [""]
    md += ["## Plots", ""] + [f"![{p.stem}]({p.name})" for p in images]
    prints = store.fingerprints_of_run(run_id)
    if prints:
        md += [
            "",
            "## Layer fingerprints",
            "",
            "The exact identity of each layer measured here (`fingerprints.json`: outputs, "
            "gradients and running statistics on fixed float64 inputs, and a 3-step float64 "
            "training canary). `robustbench-norm check` compares them before any statistics; "
            f"`robustbench-norm fingerprint suites/{report.suite}.toml --compare "
            f"leaderboards/{report.suite}/store.sqlite:latest` does it in seconds.",
            "",
            "| label | layer | options | canary losses |",
            "|---|---|---|---|",
        ]
        md += [
            f"| {label} | {fp['norm']} | `{json.dumps(fp['options'])}` | {signature(fp)} |"
            for label, fp in prints.items()
        ]
        (out / "fingerprints.json").write_text(json.dumps(prints, indent=1) + "\n")
    md += [
        "",
        "## Provenance",
        "",
        *_provenance_lines(run),
        "",
        f"Reproduce: `robustbench-norm run suites/{report.suite}.toml && robustbench-norm "
        f"report --suite {report.suite}`; check a new run against this one with "
        f"`robustbench-norm check --baseline leaderboards/{report.suite}/store.sqlite:latest "
        "--candidate latest`. Training runs are random draws across machines and thread "
        "counts, so a rerun matches these numbers within their seed spread, not bit for bit. "
        f"Machine-readable: `results.json` (schema `{JSON_SCHEMA}`), `results.csv`; "
        "interactive: `index.html`.",
        "",
    ]
    (out / "README.md").write_text("\n".join(md))

    report.frame.to_csv(out / "results.csv", index=False)
    document = {
        "schema": JSON_SCHEMA,
        "suite": {
            "name": report.suite,
            "description": report.description,
            "toml": run["suite_toml"],
            "reference": report.reference,
        },
        "run": {k: run[k] for k in ("id", "status", "started", "finished", "provenance")},
        "jobs": [
            {
                k: j[k]
                for k in (
                    "id",
                    "key",
                    "model",
                    "norm",
                    "batch_size",
                    "seed",
                    "regularizer",
                    "status",
                    "error",
                    "warnings",
                    "wall_seconds",
                )
            }
            for j in report.jobs
        ],
        "leaderboards": [t.to_dict() for t in report.tables],
        "claims": [c.to_dict() for c in report.claims],
        "results": json.loads(report.frame.to_json(orient="records")),
    }
    (out / "results.json").write_text(json.dumps(document, indent=1, allow_nan=False) + "\n")
    page = html_page.render(
        title, intro, report.tables, report.claims, images, "\n".join(_provenance_lines(run))
    )
    (out / "index.html").write_text(page)
    return [
        out / "README.md",
        out / "results.csv",
        out / "results.json",
        out / "index.html",
        *([out / "fingerprints.json"] if prints else []),
        *images,
    ]
