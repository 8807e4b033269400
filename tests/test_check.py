"""The regression gate end to end through the CLI, on real SQLite stores written with the store's
own API: completeness, fingerprints, statistics, usage errors, `latest`, JSON and migration."""

from __future__ import annotations

import json
import math
import sqlite3

import numpy as np
import pytest

from robustbench_norm.cli import main
from robustbench_norm.norms.fingerprint import fingerprint
from robustbench_norm.suites.store import JobOutcome, Store
from robustbench_norm.suites.store_schema import SCHEMA_VERSION

NORMS = {"bn": 0.73, "gnplus": 0.68}
SPREAD = 0.01


def _results(rng, mean: float) -> list[dict]:
    def row(family, name, parameter, metric, value):
        return dict(family=family, name=name, parameter=parameter, metric=metric, value=value)

    acc = mean + SPREAD * rng.standard_normal()
    return [
        row("clean", "clean", None, "accuracy", acc),
        row("noise", "gaussian_noise", None, "mean_accuracy", acc - 0.2),
        row("corruption", "all", None, "mean_corruption_accuracy", acc - 0.3),
        row("attack", "fgsm", 0.0157, "robust_accuracy", acc - 0.1),
        row("noise_sequence", "noise_sequence", None, "flip_probability", 0.2 + 0.01 * acc),
    ]


def make_run(
    path,
    seeds=(0, 1, 2),
    *,
    status: dict | None = None,
    shift: dict | None = None,
    skip: tuple = (),
    prints: dict | None = None,
    provenance: dict | None = None,
    finish: str | None = "finished",
    rng_seed: int = 0,
    spec: dict | None = None,
    unmeasured: tuple = (),
) -> int:
    """One run of norms × seeds; ``status[(norm, seed)]`` overrides "done"."""
    rng = np.random.default_rng(rng_seed)
    status, shift = status or {}, shift or {}
    with Store.open(path) as store:
        run = store.start_run("gate", "h", "toml", provenance or {})
        for norm, mean in NORMS.items():
            if norm in skip:
                continue
            for seed in seeds:
                key = f"{norm}-{seed}-{run}"
                labels = dict(model="resnet20", norm=norm, batch_size=64, seed=seed)
                labels |= {"regularizer": "none"}
                job = store.add_job(run, key, spec or {}, labels, "running")
                state = status.get((norm, seed), "done")
                if state in ("pending", "running"):
                    store.set_status(job, state)
                    continue
                rows = _results(rng, mean - shift.get(norm, 0.0)) if state == "done" else []
                rows = [r for r in rows if r["family"] not in unmeasured]
                error = "RuntimeError: boom" if state == "failed" else None
                store.record(job, JobOutcome(key, state, error, None, 1.0, {}, [], rows, []))
        if prints is not None:
            store.save_fingerprints(run, prints)
        if finish:
            store.finish_run(run, finish)
    return run


@pytest.fixture(scope="module")
def prints():
    return {"bn": fingerprint("bn"), "gnplus": fingerprint("gnplus", {"groups": 4})}


@pytest.fixture
def base(tmp_path, prints):
    path = tmp_path / "base.sqlite"
    make_run(path, prints=prints, provenance={"cpu_model": "Intel Xeon", "torch_threads": 2})
    return path


def check(base, cand, *extra) -> int:
    return main(["check", "--baseline", f"{base}:latest", "--candidate", f"{cand}:latest", *extra])


def test_unchanged_code_on_other_seeds_and_machine_passes(base, tmp_path, prints, capsys):
    cand = tmp_path / "cand.sqlite"
    environment = {"cpu_model": "AMD EPYC", "torch_threads": 1}
    make_run(cand, seeds=(7, 8, 9), prints=prints, provenance=environment, rng_seed=1)
    assert check(base, cand) == 0
    out = capsys.readouterr().out
    assert "PASS" in out and "unchanged" in out
    assert "cpu_model: Intel Xeon → AMD EPYC" in out and "torch_threads: 2 → 1" in out


def test_diverged_and_failed_candidates_are_regressions(base, tmp_path, prints, capsys):
    cand = tmp_path / "cand.sqlite"
    status = {("gnplus", s): "diverged" for s in (0, 1, 2)} | {("bn", s): "failed" for s in (0, 1)}
    make_run(cand, status=status, prints=prints)
    assert check(base, cand) == 1
    out = capsys.readouterr().out
    reasons = out.split("REGRESSION (")[1]
    for seed in (0, 1, 2):
        assert f"incomplete: gnplus · resnet20 · bs 64: seed {seed} diverged where" in reasons
    assert "seed 0 failed: RuntimeError: boom" in out and "REGRESSION" in out


def test_divergence_rates_with_other_seeds(base, tmp_path, prints, capsys):
    cand = tmp_path / "cand.sqlite"
    make_run(cand, seeds=(5, 6, 7), status={("gnplus", 5): "diverged"}, prints=prints)
    assert check(base, cand) == 1  # 2 finished runs against the baseline's 3
    out = capsys.readouterr().out
    assert "divergence 1/3 vs the baseline's 0/3" in out and "2 finished run(s)" in out


def test_missing_settings_and_seeds_are_regressions(base, tmp_path, prints, capsys):
    cand = tmp_path / "cand.sqlite"
    make_run(cand, seeds=(0, 1), skip=("gnplus",), prints=prints)
    assert check(base, cand) == 1
    out = capsys.readouterr().out
    assert "missing: no candidate job" in out and "missing seed(s) [2]" in out


def test_unfinished_candidate_jobs_are_regressions(base, tmp_path, prints, capsys):
    cand = tmp_path / "cand.sqlite"
    make_run(cand, status={("bn", 1): "running"}, prints=prints, finish="failed")
    assert check(base, cand) == 1
    assert "seed 1 is running (unfinished)" in capsys.readouterr().out


def test_a_changed_layer_blocks_unless_accepted(base, tmp_path, prints, capsys):
    cand = tmp_path / "cand.sqlite"
    changed = {**prints, "gnplus": fingerprint("gnplus", {"groups": 2})}
    make_run(cand, prints=changed, rng_seed=1)
    assert check(base, cand) == 1
    out = capsys.readouterr().out
    assert "layer changed: gnplus" in out and "bn              unchanged" in out
    assert "rerun with --accept-changes" in out  # the block names its way out
    assert check(base, cand, "--accept-changes") == 0
    out = capsys.readouterr().out
    # the summary never says "unchanged" about a layer that changed
    assert "PASS: complete, layers changed: gnplus (accepted)" in out


def test_conditions_print_as_the_tables_do():
    from robustbench_norm.reporting.check import _condition_label

    assert _condition_label(("pgd_linf", 1 / 255)) == "pgd_linf ε=1/255"
    assert _condition_label(("gaussian_noise", 0.1)) == "σ=0.1"
    assert _condition_label(("fog", 3.0)) == "fog s3"
    assert _condition_label(("clean", None)) == "—"


def test_a_statistical_drop_is_worse_after_holm(tmp_path, prints, capsys):
    base, cand = tmp_path / "base.sqlite", tmp_path / "cand.sqlite"
    make_run(base, seeds=range(6), prints=prints)
    make_run(cand, seeds=range(6), shift={"gnplus": 0.1}, prints=prints, rng_seed=1)
    assert check(base, cand, "--detect", "0.05") == 1
    out = capsys.readouterr().out
    assert "worse: gnplus · resnet20 · bs 64 · clean/accuracy" in out and "Holm p" in out
    assert "worse: bn" not in out


def test_underpowered_tests_say_how_many_runs(tmp_path, prints, capsys):
    base, cand = tmp_path / "base.sqlite", tmp_path / "cand.sqlite"
    make_run(base, seeds=(0, 1), prints=prints)
    make_run(cand, seeds=(0, 1), shift={"bn": -0.05, "gnplus": -0.05}, prints=prints, rng_seed=1)
    assert check(base, cand, "--detect", "0.001") == 0  # better everywhere: a pass, said weak
    out = capsys.readouterr().out
    assert "underpowered" in out and "runs per side would" in out and "PASS" in out


def test_an_untestable_estimate_worse_than_detect_is_undecided_not_a_pass(tmp_path, prints, capsys):
    """One run per side, clean accuracy 0.73 → 0.43: no spread to test, so no regression can
    be shown, but a PASS would hide a collapse."""
    base, cand = tmp_path / "base.sqlite", tmp_path / "cand.sqlite"
    make_run(base, seeds=(0,), prints=prints)
    make_run(cand, seeds=(0,), shift={"bn": 0.3}, prints=prints, rng_seed=1)
    assert check(base, cand) == 4
    out = capsys.readouterr().out
    assert "PASS" not in out and "UNDECIDED (exit 4, not a pass)" in out
    assert "  - bn · resnet20 · bs 64 · clean/accuracy: Δ -0.2" in out  # -0.3 + seed noise
    assert "single run on a side" in out and "more than 200" not in out
    assert check(base, cand, "--json", "-") == 4
    report = json.loads(capsys.readouterr().out)
    assert report["verdict"] == "undecided" and len(report["undecided"]) == 3  # bn's 3 primaries
    untested = {c["norm"]: c["verdict"] for c in report["comparisons"] if c["tier"] == "primary"}
    assert untested == {"bn": "undecided", "gnplus": "untestable"}  # gnplus did not drop


def test_runs_of_different_settings_are_not_compared(tmp_path, prints, capsys):
    base, cand = tmp_path / "base.sqlite", tmp_path / "cand.sqlite"
    spec = {"label": "x", "compute": "cpu-2threads", "train": {"steps": 40, "seed": 0}}
    make_run(base, prints=prints, spec=spec)
    other = {"label": "x", "compute": "cpu-1threads", "train": {"steps": 3, "seed": 5}}
    make_run(cand, prints=prints, spec=other, rng_seed=1)
    assert check(base, cand) == 2
    out = capsys.readouterr().out
    assert "NOT COMPARABLE: train.steps: 40 vs 3 (bn · resnet20 · bs 64, gnplus · " in out
    assert "compute" not in out.split("0. comparability")[1].split("1. completeness")[0]
    assert check(base, cand, "--json", "-") == 2
    report = json.loads(capsys.readouterr().out)
    assert report["verdict"] == "not comparable"
    assert report["setting_differences"] == [
        {
            "field": "train.steps",
            "baseline": 40,
            "candidate": 3,
            "settings": ["bn · resnet20 · bs 64", "gnplus · resnet20 · bs 64"],
        }
    ]
    same = tmp_path / "same.sqlite"  # another seed and thread count: a fresh draw, comparable
    make_run(same, prints=prints, spec=other | {"train": {"steps": 40, "seed": 7}}, rng_seed=2)
    assert check(base, same) == 0


def test_default_metrics_a_suite_does_not_measure_are_left_out_named_ones_are_errors(
    tmp_path, prints, capsys
):
    base, cand = tmp_path / "base.sqlite", tmp_path / "cand.sqlite"
    make_run(base, prints=prints, unmeasured=("noise_sequence",))
    make_run(cand, prints=prints, unmeasured=("noise_sequence",), rng_seed=1)
    assert check(base, cand) == 0  # the defaults include noise_sequence/flip_probability
    out = capsys.readouterr().out
    assert "not watched" in out and "noise_sequence/flip_probability" in out and "PASS" in out
    named = ["--secondary", "noise_sequence/flip_probability"]
    assert check(base, cand, *named) == 2
    assert "is not in the baseline run" in capsys.readouterr().err
    suite = tmp_path / "s.toml"
    suite.write_text(
        f'name = "gate"\n[[norms]]\nname = "bn"\n[check]\nbaseline = "{base}:latest"\n'
        'secondary = ["noise_sequence/flip_probability"]\n'
    )
    assert main(["check", "--suite", str(suite), "--candidate", f"{cand}:latest"]) == 2
    assert "is not in the baseline run" in capsys.readouterr().err
    only = tmp_path / "only.sqlite"  # no default primary metric measured at all
    make_run(only, prints=prints, unmeasured=("noise", "corruption", "clean"))
    assert check(only, only) == 2
    assert "none of the default primary metrics" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--metrics", "clean/acuracy"], "'clean/acuracy' is not in the baseline run"),
        (["--metrics", "clean"], "must be FAMILY/METRIC"),
        (["--alpha", "0"], "alpha=0.0 must lie in (0, 1)"),
        (["--alpha", "-1"], "must lie in (0, 1)"),
        (["--alpha", "nan"], "must lie in (0, 1)"),
        (["--tolerance", "nan"], "tolerance=nan must be a finite number"),
        (["--tolerance", "-0.1"], "must be a finite number ≥ 0"),
        (["--detect", "0"], "detect=0.0 must be finite and larger than the tolerance"),
    ],
)
def test_usage_errors_exit_2(base, args, message, capsys):
    assert check(base, base, *args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_latest_is_the_newest_run_and_must_be_finished(base, tmp_path, prints, capsys):
    cand = tmp_path / "cand.sqlite"
    make_run(cand, prints=prints)
    make_run(cand, status={("bn", 0): "failed"}, prints=prints, finish="failed")
    assert check(base, cand) == 1  # the newest run (with a failed job), not the finished one
    assert "seed 0 failed" in capsys.readouterr().out
    make_run(cand, prints=prints, finish=None)  # still running
    assert check(base, cand) == 2
    assert "run 3 (gate)" in capsys.readouterr().err
    assert main(["check", "--baseline", f"{base}:1", "--candidate", f"{cand}:1"]) == 0


def test_json_report_for_ci_tools(base, tmp_path, prints, capsys):
    cand = tmp_path / "cand.sqlite"
    make_run(cand, prints=prints, rng_seed=3)
    assert check(base, cand, "--json", "-") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["schema"] == "robustbench-norm/check@2" and report["verdict"] == "pass"
    assert {c["tier"] for c in report["comparisons"]} == {"primary", "secondary"}
    assert all(f["status"] == "unchanged" for f in report["fingerprints"])
    primary = [c for c in report["comparisons"] if c["tier"] == "primary"]
    assert len(primary) == 3 * len(NORMS)
    flip = next(c for c in report["comparisons"] if c["metric"].endswith("flip_probability"))
    assert flip["p_adjusted"] is not None and not math.isnan(flip["p_value"])


def test_fingerprint_command_compares_with_a_store(base, tmp_path, capsys):
    suite = tmp_path / "s.toml"
    suite.write_text(
        'name = "gate"\nmodels = ["resnet20"]\nbatch_sizes = [64]\nseeds = [0]\n'
        '[[norms]]\nname = "bn"\n[[norms]]\nname = "gnplus"\noptions = { groups = 4 }\n'
    )
    assert main(["fingerprint", str(suite)]) == 0
    assert "canary" in capsys.readouterr().out
    assert main(["fingerprint", str(suite), "--compare", f"{base}:latest"]) == 0
    assert capsys.readouterr().out.count("unchanged") == 2
    suite.write_text(suite.read_text().replace("groups = 4", "groups = 2"))
    assert main(["fingerprint", str(suite), "--compare", f"{base}:latest"]) == 1
    assert "CHANGED" in capsys.readouterr().out


def test_a_schema_1_store_is_read_as_is_and_upgraded_when_written(base, tmp_path, capsys):
    old = tmp_path / "old.sqlite"
    make_run(old)
    conn = sqlite3.connect(old)
    conn.execute("DROP TABLE fingerprints")
    conn.execute("DROP TABLE claims")
    for table in ("results", "flags"):  # added in version 4
        conn.execute(f"ALTER TABLE {table} DROP COLUMN statistics")
    conn.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    assert check(old, base) == 0
    assert "no fingerprints" in capsys.readouterr().out
    with Store.open(old) as store:  # writable: migrated
        assert store.schema_version == SCHEMA_VERSION and store.fingerprints_of_run(1) == {}
        assert store.conn.execute("SELECT count(*) FROM claims").fetchone()[0] == 0
