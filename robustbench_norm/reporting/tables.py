"""The leaderboard tables of a run, from its tidy results: which tables a run gets and how each
cell's values are derived (mCE against a fixed reference, flip rate, stability measures).
Statistics of the cells, ranks and stars live in ``leaderboard.py``."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from robustbench_norm.evaluation import metrics
from robustbench_norm.perturb.attacks import AttackSpec, format_epsilon
from robustbench_norm.reporting import statistics
from robustbench_norm.reporting.leaderboard import (
    MIN_RUNS_FOR_INTERVAL,
    Cell,
    Table,
    pivot,
    select,
    setting_name,
    varying,
)


def build_tables(
    frame: pd.DataFrame,
    jobs: list[dict],
    order: list[str],
    reference: str | None,
    severity_table: str = "imagenet-c",
    layers: list[str] | None = None,
) -> list[Table]:
    """Every table the run has data for, in the order a reader meets them: clean, noise,
    noise sequences, corruptions (with mCE against ``reference``), attacks, stability and the
    regularization sweep. ``order`` lists the rows (adapted ones included: see adaptation.py),
    ``layers`` the trained layers, which alone have training to show (default: ``order``)."""
    layers = layers or order
    vary = varying(frame)
    multi = len({setting_name(r, vary) for _, r in frame.iterrows()}) > 1

    def with_setting(prefix):
        """A column per (setting, prefix(row)); the setting is left out when there is one."""
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
    tables += _noise_tables(frame, order, with_setting)
    tables += _flip_tables(frame, order, reference)
    tables += _corruption_tables(frame, order, reference, severity_table, with_setting)
    for attack in dict.fromkeys(select(frame, "attack", "robust_accuracy").name):
        sub = select(frame, "attack", "robust_accuracy", attack)
        tables.append(
            pivot(
                sub,
                id=f"attack-{attack}",
                title=f"{attack}: robust accuracy",
                description=_attack_description(jobs, attack),
                column_of=with_setting(lambda r: f"ε={format_epsilon(r.parameter)}"),
                order=order,
            )
        )
    tables += _stability_tables(frame, jobs, layers)
    if frame.regularizer.nunique() > 1:
        running = frame[frame.norm.isin(layers)]
        rest = [k for k in vary if k != "regularizer"]
        tables.append(
            pivot(
                select(running, "clean", "accuracy"),
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


def _noise_tables(frame: pd.DataFrame, order: list[str], with_setting) -> list[Table]:
    noise = select(frame, "noise", "mean_accuracy", "gaussian_noise")
    if noise.empty:
        return []
    return [
        pivot(
            noise,
            id="noise",
            title="Gaussian noise: mean accuracy",
            description="accuracy averaged over the noise levels σ > 0",
            order=order,
        ),
        pivot(
            select(frame, "noise", "accuracy", "gaussian_noise"),
            id="noise-sigma",
            title="Gaussian noise: accuracy per σ",
            description="additive N(0, σ²) in [0, 1] pixel space, clipped",
            column_of=with_setting(lambda r: f"σ={r.parameter:g}"),
            order=order,
        ),
    ]


def _flip_tables(frame: pd.DataFrame, order: list[str], reference: str | None) -> list[Table]:
    """CIFAR-10-P's flip probability, its rate against the reference, and the accuracy on the
    noisy frames, which keeps a model that always predicts one class from looking stable."""
    flip = select(frame, "noise_sequence", "flip_probability")
    if flip.empty:
        return []
    sigma = f"{flip.parameter.iloc[0]:g}" if pd.notna(flip.parameter.iloc[0]) else "?"
    tables = [
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
    ]
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
    return tables


def _corruption_tables(
    frame: pd.DataFrame, order: list[str], reference: str | None, severity_table: str,
    with_setting,
) -> list[Table]:  # fmt: skip
    corr = select(frame, "corruption", "mean_corruption_accuracy")
    if corr.empty:
        return []
    severities = {
        "imagenet-c": "ImageNet-C's severities (imagecorruptions), harsh at 32×32",
        "cifar-10-c": "CIFAR-10-C's severities",
    }.get(severity_table, severity_table)
    per_name = select(frame, "corruption", "mean_accuracy")
    tables = [
        pivot(
            corr,
            id="corruption",
            title="Common corruptions: mean accuracy",
            description=f"accuracy averaged over corruptions and severities; {severities}",
            order=order,
        ),
        pivot(
            per_name[per_name.name != "all"],
            id="corruption-names",
            title="Common corruptions: accuracy per corruption",
            description="averaged over severities",
            column_of=with_setting(lambda r: r["name"]),
            order=order,
        ),
    ]
    if reference is not None:
        tables += _mce_tables(frame, reference, order)
    return tables


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
        # a job's adapted rows (test-time statistics) share its id: a row is (job, norm label)
        for (job_id, norm), job in sub.groupby(["job_id", "norm"]):
            errors = {(r["name"], int(r.parameter)): 1 - r.value for _, r in job.iterrows()}
            own = clean[(clean.job_id == job_id) & (clean.norm == norm)]
            clean_err = 1 - float(own.value.iloc[0])
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
        "(1.0 = as robust as the reference on average); the other rows' intervals carry the "
        "reference mean's own uncertainty (delta method)"
    )
    tables = [
        pivot(
            mce[mce.metric == "mce"],
            id="mce",
            title="mCE",
            description=desc,
            higher_is_better=False,
            order=order,
            bounds=(0.0, math.inf),
        ),
        _undefined_left_out(
            pivot(
                mce[mce.metric == "relative_mce"],
                id="relative-mce",
                title="Relative mCE",
                description=desc + "; error increase over clean, over the corruptions on which "
                "the reference loses at least 1 point of accuracy per severity (on the others "
                "the ratio is not defined). Caution: a model with a high clean error has "
                "little room to degrade, so a poor model can look robust here",
                higher_is_better=False,
                order=order,
                bounds=None,
            )
        ),
    ]
    for table in tables:
        carry_reference_uncertainty(table, reference)
    return tables


def _undefined_left_out(table: Table) -> Table:
    """Cells without a defined value (metrics.corruption_errors: no corruption degrades the
    reference enough for a ratio) say so and are left out of ranks and ★."""
    for cells in table.rows.values():
        for column, cell in cells.items():
            if not all(math.isfinite(v) for v in cell.values):
                cells[column] = Cell(
                    cell.values, None, display="not defined (the reference barely degrades)",
                    ranked=False,
                )  # fmt: skip
    table.settle()
    return table


def carry_reference_uncertainty(table: Table, reference: str) -> None:
    """Widen every non-reference cell's interval by the uncertainty of the denominator they
    share: the reference's runs scatter around its mean, and their relative standard error
    (sd / (√n · mean)) is how well that mean — every CE's denominator — is known."""
    ref_row = table.rows.get(reference, {})
    for column in table.columns:
        ref = ref_row.get(column)
        values = [v for v in (ref.values if ref else []) if math.isfinite(v)]
        if len(values) < 2 or not np.mean(values):
            continue
        rse = float(np.std(values, ddof=1) / math.sqrt(len(values)) / abs(np.mean(values)))
        for norm, cells in table.rows.items():
            cell = cells.get(column)
            if norm == reference or cell is None or cell.n < MIN_RUNS_FOR_INTERVAL:
                continue
            _, cell.low, cell.high = statistics.ratio_interval(
                cell.values, rse, len(values) - 1, cell.bounds
            )


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


def _stability_tables(frame: pd.DataFrame, jobs: list[dict], layers: list[str]) -> list[Table]:
    """One stability table per setting (model × batch size × regularizer): a row pools only
    the runs of one setting, as in every other table — pooled, BN's regularized runs would
    inflate its seed spread, and the landscape measures of batch 8 and 64 differ in scale.
    Models benchmarked from outside (suites/external.py) have no training to show."""
    jobs = [j for j in jobs if "external" not in (j.get("spec") or {})]  # nothing trained it
    layers = [n for n in layers if any(j["norm"] == n for j in jobs)]
    keys = ["model", "batch_size", "regularizer"]
    settings = list(dict.fromkeys(tuple(j[k] for k in keys) for j in jobs))
    if len(settings) == 1:
        return [_stability_table(frame, jobs, layers)]
    tables = []
    for setting in settings:
        mine = [j for j in jobs if tuple(j[k] for k in keys) == setting]
        sub = frame[(frame[keys] == pd.Series(setting, index=keys)).all(axis=1)]
        model, bs, reg = setting
        name = f"{model} · bs {bs}" + ("" if reg == "none" else f" · {reg}")
        slug = f"{model}-bs{bs}" + ("" if reg == "none" else f"-{reg}")
        table = _stability_table(sub, mine, layers)
        table.id = f"stability-{''.join(c if c.isalnum() or c == '-' else '-' for c in slug)}"
        table.title += f" · {name}"
        tables.append(table)
    return tables


def _stability_table(frame: pd.DataFrame, jobs: list[dict], order: list[str]) -> Table:
    measured = not select(frame, "stability", "mean").empty
    landscape = ["landscape range / step", "β-smoothness", "landscape range", "gradient change"]
    columns = ["accuracy seed sd", "diverged runs", *(landscape if measured else [])]
    runs = max((sum(j["norm"] == n for j in jobs) for n in order), default=0)
    description = (
        "seed standard deviation of final clean accuracy over the setting's runs and diverged "
        "runs (shown, not ranked: the claims test them)"
        + (
            f"; a sd over {runs} runs is itself uncertain (its own interval spans a factor of "
            "several)"
            if runs < 5
            else ""
        )
    )
    if measured:
        description += (
            ", and Santurkar et al.'s measures averaged over the measured steps (ranked) — the "
            "landscape range per unit step length (η_max·‖g‖) and β-smoothness are comparable "
            "across layers; the raw range and gradient change grow with the gradient's size; "
            "per-third values are in results.csv (metric phase_mean)"
        )
    else:
        description += (
            "; no loss-landscape measures: the suite has no [stability] section (add one to "
            "measure Santurkar et al.'s range and β-smoothness during training)"
        )
    table = Table("stability", "Training stability", description, False, columns)
    clean = select(frame, "clean", "accuracy")
    for norm in order:
        cells: dict[str, Cell] = {}
        accs = clean[clean.norm == norm].groupby(["model", "batch_size", "regularizer"]).value
        stds = [s for s in accs.std().tolist() if not math.isnan(s)]
        if stds:
            cells["accuracy seed sd"] = Cell(stds, (0.0, math.inf), ranked=False)
        mine = [j for j in jobs if j["norm"] == norm]
        if not mine:
            continue
        diverged = [float(j["status"] == "diverged") for j in mine]
        cells["diverged runs"] = Cell(
            diverged, display=f"{int(sum(diverged))} / {len(mine)}", ranked=False
        )
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


def _attack_description(jobs: list[dict], name: str) -> str:
    """The threat model and effort behind a robust-accuracy table: norm, steps, restarts and
    how many test images were attacked (fewer than the clean accuracy's, usually)."""
    for job in jobs:
        spec = job["spec"]
        for e in spec.get("evaluations", []):
            if e.get("type") == "AttackSpec" and e.get("name") == name:
                fields = {k: v for k, v in e.items() if k not in ("type", "limit")}
                limits = [x for x in (e.get("limit"), spec.get("test_limit")) if x is not None]
                images = f"{min(limits)} test images" if limits else "all test images"
                return (
                    f"{AttackSpec(**fields).describe()}, {images}: correct and not fooled "
                    "within ε (eval mode)"
                )
    return "correct and not fooled within ε (eval mode)"
