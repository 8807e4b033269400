"""The console script: commands wire through, user errors exit 2 without a traceback."""

from __future__ import annotations

import argparse
import itertools
import shlex
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from robustbench_norm.cli import build_parser, main
from robustbench_norm.cli.commands import DEFAULT_STORE_PATH
from robustbench_norm.errors import RobustBenchError
from robustbench_norm.suites.suite import load_suite
from robustbench_norm.version import __version__


def test_list_norms(capsys):
    assert main(["list", "norms"]) == 0
    out = capsys.readouterr().out
    assert "gnplus" in out and "Continual Norm" in out


def test_train_prints_real_accuracy_per_norm(tmp_path, capsys):
    args = "train --norm bn gnplus --norm-option groups=2 --width 4 --steps 3 --batch-size 64"
    args = [*args.split(), "--workdir", str(tmp_path), "--quiet"]
    assert main(args) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line.split() for line in out.splitlines()[1:3]}
    assert set(lines) == {"bn", "gnplus"}
    for row in lines.values():
        assert row[1] == "done" and row[2] == "3"
        assert 0.0 <= float(row[4]) <= 1.0
    assert (tmp_path / "checkpoints").is_dir()


def test_user_error_exits_2_with_a_message_and_no_traceback():
    proc = subprocess.run(
        [sys.executable, "-m", "robustbench_norm.cli", "train", "--norm", "batchnorm", "--quiet"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "unknown norm 'batchnorm'" in proc.stderr and "gnplus" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_option_no_selected_norm_accepts_is_an_error(capsys):
    assert main(["train", "--norm", "bn", "--norm-option", "groups=4", "--quiet"]) == 2
    assert "no selected norm (bn) has option 'groups'" in capsys.readouterr().err


def test_public_api_resolves_every_exported_name():
    import robustbench_norm as rbn

    for name in rbn.__all__:
        assert getattr(rbn, name) is not None, name


def _examples() -> list[tuple[str, list[str]]]:
    """Every example printed in a command's --help, as (command, argv)."""
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    out = []
    for name, p in sub.choices.items():
        for line in (p.description or "").splitlines():
            if line.strip().startswith("robustbench-norm "):
                out.append((name, shlex.split(line.strip())[1:]))
    return out


def test_every_help_example_parses_and_the_self_contained_ones_run(capsys):
    """Examples are copied by users: each must parse, name files that exist, and the ones
    that need nothing but the repository (no GPU, no earlier run, no checkpoint) must work."""
    examples = _examples()
    assert len(examples) >= 15
    parser = build_parser()
    ran = 0
    for command, argv in examples:
        parser.parse_args(argv)  # SystemExit (and so a failure) on any unknown flag or value
        paths = [a.split(":")[0] for a in argv if "/" in a and not a.startswith(("/tmp", "1/"))]
        paths = [p for p in paths if not p.endswith(("/255", "/8/255"))]
        placeholders = any(a in ("CKPT", "3", "12") or "KEY" in a for a in argv)
        # a bare run reference (`--candidate latest`) reads the default results store
        bare_ref = any(b in ("--baseline", "--candidate") and ":" not in a
                       for b, a in itertools.pairwise(argv))  # fmt: skip
        needs = (
            "--device" in argv,
            "--executor" in argv,
            # they train (nightly: a whole night) or need a benchmark run (detach)
            command in ("run", "train", "report", "curves", "detach", "nightly"),
            bare_ref and not DEFAULT_STORE_PATH.exists(),
            command == "export" and not argv[1].startswith("/tmp"),  # writes into the repository
        )
        if all(Path(p).exists() for p in paths) and not placeholders and not any(needs):
            code = main(argv)
            capsys.readouterr()
            assert code == 0, argv
            ran += 1
    assert ran >= 4  # plan, list ×2, fingerprint ×2, check against the published store


def test_version_and_defaults_in_help(capsys):
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.strip() == f"robustbench-norm {__version__}"
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    assert "(default: resnet20)" in text and "(default: 128)" in text and "exit" in text


def test_epsilons_are_accepted_as_k_over_255(tmp_path):
    from robustbench_norm.perturb.attacks import format_epsilon, parse_epsilon

    assert parse_epsilon("8/255") == 8 / 255 and parse_epsilon("0.5") == 0.5
    assert format_epsilon(8 / 255) == "8/255" and format_epsilon(0.25) == "0.25"
    with pytest.raises(RobustBenchError, match="fraction like 8/255"):
        parse_epsilon("8 over 255")
    parsed = build_parser().parse_args(
        ["eval", "c.pt", "--attack", "fgsm", "--epsilons", "0", "1/255"]
    )
    assert parsed.epsilons == [0.0, 1 / 255]
    suite = load_suite("suites/smoke.toml")
    attack = next(e.spec for e in suite.evaluations if type(e.spec).__name__ == "AttackSpec")
    assert 4 / 255 in attack.epsilons


def test_progress_in_a_log_is_a_line_with_elapsed_time_and_an_eta(monkeypatch, capsys):
    from robustbench_norm import progress

    monkeypatch.setattr(progress, "LINE_EVERY", 0.0)
    bar = progress.LineProgress(200, "resnet20/gnplus", "step")
    bar.update(50)
    bar.set_postfix(loss="0.912", refresh=False)
    bar.update(50)
    bar.close()
    progress.mark(bar, "epoch 1/2")  # a milestone prints at once, whatever the clock
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("resnet20/gnplus: 50/200 steps (25 %), 0:00 elapsed, ETA 0:00")
    assert lines[1].endswith("loss=0.912") and "100/200 steps (50 %)" in lines[1]
    assert lines[2].startswith("resnet20/gnplus: epoch 1/2, 100/200 steps (50 %)")


def test_a_jobs_lines_carry_its_title_and_only_while_it_runs(monkeypatch, capsys):
    from robustbench_norm import progress

    monkeypatch.setattr(progress.sys.stderr, "isatty", lambda: False)
    with progress.job_lines("resnet20/gn/bs8/seed3/none"):
        progress.mark(progress.LineProgress(10, "resnet20/gn", "step"), "epoch 1/3")
        progress.note("  evaluated noise (4 conditions) in 2 s")
    progress.note("  after the job")
    assert capsys.readouterr().err.splitlines() == [
        "[resnet20/gn/bs8/seed3/none] resnet20/gn: epoch 1/3, 0/10 steps (0 %), 0:00 elapsed",
        "[resnet20/gn/bs8/seed3/none] evaluated noise (4 conditions) in 2 s",
        "  after the job",
    ]


def test_run_ends_with_the_headline_table(tmp_path, capsys):
    suite = tmp_path / "s.toml"
    suite.write_text(
        'name = "h"\nwidth = 4\nbatch_sizes = [64]\nseeds = [0]\ntest_limit = 40\n'
        '[[norms]]\nname = "bn"\n[[norms]]\nname = "gn"\noptions = { groups = 2 }\n'
        "[train]\nsteps = 2\n[evaluate.noise]\nsigmas = [0.1]\n"
    )
    argv = ["run", str(suite), "--store", str(tmp_path / "s.sqlite"), "--workdir",
            str(tmp_path / "w"), "--threads", "1", "--quiet"]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    head = out.split("headline", 1)[1].splitlines()
    header = next(line for line in head if line.startswith("norm"))
    assert "clean" in header and "noise" in header
    rows = {line.split()[0] for line in head if line.startswith(("bn ", "gn "))}
    assert rows == {"bn", "gn"}
    assert "robustbench-norm report --suite h" in out


def test_plan_estimates_the_time_from_recorded_jobs(tmp_path, capsys):
    from robustbench_norm.suites.plan import estimate_seconds

    suite = load_suite("suites/smoke.toml")
    job = suite.jobs[0]
    recorded = [(job.to_dict(), 100.0)]
    seconds, unknown = estimate_seconds(suite, recorded)
    # every smoke job has the same model, width, batch size and steps: each priced at 100 s
    assert unknown == 0 and seconds == pytest.approx(100.0 * len(suite.jobs))
    assert main(["plan", "suites/smoke.toml", "--store", str(tmp_path / "none.sqlite")]) == 0
    assert "no estimate" in capsys.readouterr().out


def test_a_job_is_priced_by_its_twins_on_other_seeds_before_its_steps():
    """The standard suite's unregularized jobs evaluate far more than their regularized twins:
    a twin on another seed prices a job exactly; else the rate per step of its norm and batch
    size, else of its batch size; else nothing."""
    from robustbench_norm.suites.plan import price_jobs

    suite = load_suite("suites/smoke.toml")
    job = suite.jobs[0]
    other_norm = next(j for j in suite.jobs if j.train.norm != job.train.norm)
    steps = job.train.total_steps(5000)

    def variant(j, **train):
        return replace(j, train=replace(j.train, **train))

    twin = variant(job, seed=job.train.seed + 1000)
    recorded = [
        ({**twin.to_dict(), "compute": "cpu-1threads"}, 50.0),
        ({**twin.to_dict(), "compute": "cpu-1threads"}, 70.0),
        (variant(job, seed=7, dropout=0.3).to_dict(), 400.0),  # same norm, 4× the twins' rate
        ({"label": "resnet18-tv (external)", "external": {}}, 9.0),  # trains nothing: ignored
    ]
    doubled = variant(job, steps=2 * steps, seed=3)  # no twin: its norm's median rate
    wider = variant(job, width=job.train.width * 2)  # another model: nothing to go by
    prices = price_jobs([job, doubled, replace(other_norm, train=replace(other_norm.train,
                         steps=steps)), wider], recorded)  # fmt: skip
    rates = sorted([50.0 / steps, 70.0 / steps, 400.0 / steps])
    assert prices[0] == pytest.approx(60.0)  # the twins' median, not the dropout job's
    assert prices[1] == pytest.approx(rates[1] * 2 * steps)
    assert prices[2] == pytest.approx(rates[1] * steps)  # batch size only: the same three
    assert prices[3] is None


def test_the_headline_sets_robust_accuracy_beside_clean_accuracy_on_the_same_images():
    from robustbench_norm.reporting.headline import ATTACKED_CLEAN, headline
    from robustbench_norm.reporting.report import build_report
    from robustbench_norm.suites.store import Store

    with Store.open("leaderboards/smoke/store.sqlite", read_only=True) as store:
        report = build_report(store, store.resolve_run("latest"))
    text = headline(report)
    header = next(line for line in text.splitlines() if line.startswith("norm"))
    assert ATTACKED_CLEAN in header
    assert header.index(ATTACKED_CLEAN) < header.index("ε=")  # right before the attack
    assert "the attack runs on a subset of the test images" in text
    tables = {t.id: t for t in report.tables}
    attacked = [t for i, t in tables.items() if i.startswith("attack-")]
    zero = {c.text() for t in attacked for row in t.rows.values()
            for col, c in row.items() if col.endswith("ε=0")}  # fmt: skip
    bn = next(line for line in text.splitlines() if line.split()[:2][-1] != "·" and
              line.startswith("bn "))  # fmt: skip
    assert any(value in bn for value in zero)


def test_the_threat_model_names_random_start_and_restarts():
    from robustbench_norm.perturb.attacks import AttackSpec

    assert AttackSpec("pgd_linf", steps=10).describe() == "pgd_linf (L∞), 10 steps, random start"
    assert "no random start" in AttackSpec("pgd_l2", random_start=False).describe()
    assert "1 restart" in AttackSpec("apgd_ce").describe()


def test_plan_with_a_store_prices_only_what_run_would_compute(tmp_path, capsys):
    suite = tmp_path / "p.toml"
    suite.write_text(
        'name = "p"\nwidth = 4\nbatch_sizes = [64]\nseeds = [0]\ntest_limit = 20\n'
        '[[norms]]\nname = "bn"\n[[norms]]\nname = "gn"\noptions = { groups = 2 }\n'
        "[train]\nsteps = 3\n"
    )
    store = str(tmp_path / "s.sqlite")
    argv = ["run", str(suite), "--store", store, "--workdir", str(tmp_path / "w"),
            "--threads", "1", "--quiet"]  # fmt: skip
    assert main(argv) == 0
    text = suite.read_text().replace('name = "gn"\noptions = { groups = 2 }', 'name = "gnplus"'
                                     '\noptions = { groups = 2 }')  # fmt: skip
    suite.write_text(text)  # an edit: gn → gnplus; bn's job is unchanged
    capsys.readouterr()
    assert main(["plan", str(suite), "--store", store]) == 0
    out = capsys.readouterr().out
    assert "(in the store: cpu-1threads)" in out.splitlines()[2]  # bn, job 0
    assert "in the store" not in out.splitlines()[3]  # gnplus, job 1
    assert "store: 1 of the 2 jobs are finished" in out
    assert "for the 1 jobs priced" in out
    # images seen, not the dataset's size: 2 jobs × 3 steps × 64
    assert "6 optimizer steps in all, 384 training images seen (5,000 in the training set)" in out
    # the progress bar of `run`: bn priced at its own time, gnplus (no twin) at the median of
    # bn's and gn's at the same batch size and steps
    from robustbench_norm.suites.plan import progress_weights
    from robustbench_norm.suites.store import Store

    jobs = [replace(j, compute="cpu-1threads") for j in load_suite(str(suite)).jobs]
    with Store.open(store, read_only=True) as db:
        seconds = dict(db.conn.execute("SELECT norm, wall_seconds FROM jobs").fetchall())
        weights, unit = progress_weights(db, jobs)
    assert unit == "job-second"
    both = round((seconds["bn"] + seconds["gn"]) / 2)
    assert weights == {jobs[0].key: max(1, round(seconds["bn"])), jobs[1].key: max(1, both)}
    with Store.open(tmp_path / "empty.sqlite") as db:  # nothing to go by: steps
        assert progress_weights(db, jobs) == ({j.key: 3 for j in jobs}, "step")
