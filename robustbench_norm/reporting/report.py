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

import pandas as pd

from robustbench_norm import metrics
from robustbench_norm.errors import RobustBenchError
from robustbench_norm.norms.fingerprint import signature
from robustbench_norm.reporting import html_page, plots
from robustbench_norm.reporting.claims import Claim, evaluate_claims
from robustbench_norm.reporting.leaderboard import (
    MIN_RUNS_FOR_INTERVAL,
    Cell,
    Table,
    pivot,
    select,
    setting_name,
    varying,
)
from robustbench_norm.store import Store

JSON_SCHEMA = "robustbench-norm/leaderboard@2"


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

    claims = evaluate_claims(frame, jobs, alpha)
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
        sigma = f"{flip.parameter.iloc[0]:g}"
        tables.append(
            pivot(
                flip,
                id="flip",
                title="Noise sequences: flip probability",
                description=f"CIFAR-10-P: share of frames with fresh Gaussian noise (σ = {sigma}) "
                "whose prediction differs from the clean frame's; read it next to the accuracy "
                "on those frames below — a model that always predicts one class never flips",
                higher_is_better=False,
                order=order,
            )
        )
        if reference is not None and reference in set(flip.norm):
            tables.append(
                pivot(
                    _relative_to_reference(flip, reference),
                    id="flip-rate",
                    title="Noise sequences: flip rate (FR)",
                    description=f"flip probability ÷ the {reference!r} runs' mean flip probability "
                    "in the same setting (1.0 = as stable as the reference)",
                    higher_is_better=False,
                    order=order,
                    bounds=(0.0, math.inf),
                )
            )
        noisy = select(frame, "noise_sequence", "mean_accuracy")
        if not noisy.empty:
            tables.append(
                pivot(
                    noisy,
                    id="flip-accuracy",
                    title="Noise sequences: accuracy on the noisy frames",
                    description=f"mean accuracy over the frames with noise σ = {sigma}",
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
    """CE and relative CE of every run against one fixed reference per setting: the reference
    norm's *seed-mean* error per corruption and severity (Hendrycks & Dietterich's AlexNet
    role). The reference's own runs then scatter around 1 instead of sitting at 1.000 by
    construction, and its seed noise no longer enters every other row run by run."""
    corr = select(frame, "corruption", "accuracy")
    clean = select(frame, "clean", "accuracy")
    rows = []
    for key, sub in corr.groupby(["model", "batch_size", "regularizer"]):
        ref = sub[sub.norm == reference]
        ref_clean = clean[(clean.norm == reference) & clean.job_id.isin(ref.job_id)]
        if ref.empty or ref_clean.empty:
            continue
        ref_errors = {
            (name, int(param)): 1 - float(g.value.mean())
            for (name, param), g in ref.groupby(["name", "parameter"])
        }
        ref_clean_error = 1 - float(ref_clean.value.mean())
        for job_id, job in sub.groupby("job_id"):
            errors = {(r["name"], int(r.parameter)): 1 - r.value for _, r in job.iterrows()}
            clean_err = 1 - float(clean[clean.job_id == job_id].value.iloc[0])
            out = metrics.corruption_errors(errors, ref_errors, clean_err, ref_clean_error)
            first = job.iloc[0]
            for metric in ("mce", "relative_mce"):
                rows.append(
                    {
                        "model": key[0],
                        "batch_size": key[1],
                        "regularizer": key[2],
                        "seed": first.seed,
                        "norm": first.norm,
                        "metric": metric,
                        "value": out[metric]["all"],
                    }
                )
    if not rows:
        return []
    mce = pd.DataFrame(rows)
    desc = (
        f"CE per run against the {reference!r} runs' mean error per corruption and severity "
        "(1.0 = as robust as the reference on average)"
    )
    return [
        pivot(
            mce[mce.metric == "mce"],
            id="mce",
            title="mCE",
            description=desc,
            higher_is_better=False,
            order=order,
            bounds=(0.0, math.inf),
        ),
        pivot(
            mce[mce.metric == "relative_mce"],
            id="relative-mce",
            title="Relative mCE",
            description=desc + "; error increase over clean. Caution: a model with a high "
            "clean error has little room to degrade, so a poor model can look robust here",
            higher_is_better=False,
            order=order,
            bounds=None,
        ),
    ]


def _relative_to_reference(values: pd.DataFrame, reference: str) -> pd.DataFrame:
    """Each run's value ÷ the reference norm's mean value in the same setting."""
    keys = ["model", "batch_size", "regularizer"]
    ref = values[values.norm == reference].groupby(keys).value.mean().rename("ref")
    merged = values.join(ref, on=keys)
    merged = merged[merged.ref > 0]
    return merged.assign(value=merged.value / merged.ref)


def chance_corruptions(frame: pd.DataFrame, classes: int = 10, margin: float = 0.05) -> list[str]:
    """Corruptions at which every norm is at chance (accuracy ≤ 1/classes + margin) at every
    severity: their columns measure nothing but the corruption's strength on this data."""
    corr = select(frame, "corruption", "accuracy")
    out = []
    for name, sub in corr.groupby("name", sort=True):
        means = sub.groupby(["norm", "parameter"]).value.mean()
        if len(means) and (means <= 1 / classes + margin).all():
            out.append(str(name))
    return out


def _stability_table(frame: pd.DataFrame, jobs: list[dict], order: list[str]) -> Table:
    columns = [
        "accuracy seed sd",
        "diverged runs",
        "landscape range / step",
        "β-smoothness",
        "landscape range",
        "gradient change",
    ]
    table = Table(
        "stability",
        "Training stability",
        "seed standard deviation of final clean accuracy (per setting), diverged runs, and "
        "Santurkar et al.'s measures averaged over the measured steps — the landscape range "
        "per unit step length (η_max·‖g‖) and β-smoothness are comparable across layers; the "
        "raw range and gradient change grow with the gradient's size; per-third values are in "
        "results.csv (metric phase_mean)",
        False,
        columns,
    )
    clean = select(frame, "clean", "accuracy")
    for norm in order:
        cells: dict[str, Cell] = {}
        accs = clean[clean.norm == norm].groupby(["model", "batch_size", "regularizer"]).value
        stds = [s for s in accs.std().tolist() if not math.isnan(s)]
        if stds:
            cells["accuracy seed sd"] = Cell(stds, None)
        mine = [j for j in jobs if j["norm"] == norm]
        diverged = [float(j["status"] == "diverged") for j in mine]
        cells["diverged runs"] = Cell(diverged, display=f"{int(sum(diverged))} / {len(mine)}")
        for col, name in (
            ("landscape range / step", "landscape_range_per_length"),
            ("β-smoothness", "beta_smoothness"),
            ("landscape range", "landscape_range"),
            ("gradient change", "grad_change_max"),
        ):
            values = select(frame, "stability", "mean", name)
            values = values[values.norm == norm].value.tolist()
            if values:
                cells[col] = Cell(values, (0.0, math.inf))
        table.rows[norm] = cells
    table.settle()
    return table


# -- writing -----------------------------------------------------------------------------------


def _markdown_table(table: Table) -> str:
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
        f"{report.description}. {len(report.jobs)} jobs; a training run (one seed) is the unit "
        f"of replication. With {MIN_RUNS_FOR_INTERVAL} or more runs a cell is the mean with its "
        "95 % Student-t interval over runs, clipped to the metric's range; with fewer it lists "
        "each run's value, since an interval over 2 runs says nothing. Rows share a rank (1=) "
        "unless a Holm-corrected one-sided Welch test over runs separates them in every "
        "column; ★ marks a cell better than every other in its column by that test."
    )
    at_chance = chance_corruptions(report.frame)
    if at_chance:
        warnings.insert(
            0,
            f"every norm is at chance on {', '.join(at_chance)} at every severity: those "
            "columns measure the corruption's strength on this data, not the layers "
            "(imagecorruptions' severities are ImageNet-C's, harsh at 28–32 pixels)",
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
    md += [
        "",
        "Each claim is a family of comparisons between groups of runs (Welch's t; an F-test "
        "for a spread, Fisher for divergence), Holm-corrected. **supported**: significant in "
        "the claimed direction (in every comparison, or in at least one measure for the "
        "stability claims); **not supported**: significant the other way; **no effect larger "
        "than δ**: every comparison equivalent within the margin (TOST); **inconclusive**: "
        "none of these, with what it would take. p is the deciding Holm-adjusted p.",
    ]
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
