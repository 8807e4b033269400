"""``robustbench-norm``: wires commands to the library; no logic of its own lives here."""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

from robustbench_norm.errors import RobustBenchError
from robustbench_norm.version import __version__

#: kept here (not imported from store) so that `--help` does not import torch
DEFAULT_STORE_PATH = Path("results") / "robustbench.sqlite"

#: exit codes: 0 success; 1 `check` found a regression; 2 a usage error or a fault of the machine
#: (one-line message, no traceback); 3 `run` finished but some jobs failed (their errors are in
#: the store and the summary); 130 interrupted (Ctrl-C)
EXIT_OK, EXIT_REGRESSION, EXIT_USER_ERROR, EXIT_JOBS_FAILED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
EXIT_CODES = (
    "Exit codes: 0 success; 1 check found a regression (fingerprint changes too); 2 a usage "
    "error or a fault such as a full disk or a damaged store (a one-line message; --debug "
    "shows the traceback); 3 run finished but some jobs failed (listed); 130 interrupted "
    "(rerun the same command to resume)."
)


def _cmd_list(args: argparse.Namespace) -> int:
    if args.what == "runs":
        from robustbench_norm.suites.store import Store

        with Store.open(args.store, read_only=True) as store:
            for r in store.runs():
                print(
                    f"{r['id']:>4}  {r['suite']:<12}{r['status']:<10}{r['started']}  "
                    f"{r['finished'] or ''}"
                )
        return EXIT_OK
    for name, text in _listing(args.what).items():
        print(f"{name:<20}{text}")
    return EXIT_OK


def _listing(what: str) -> dict[str, str]:
    if what == "norms":
        from robustbench_norm.norms import describe

        return describe()
    if what == "models":
        from robustbench_norm.models import MODELS

        return {n: f"{d} (default width {w})" for n, (_, w, d) in sorted(MODELS.items())}
    if what == "datasets":
        from robustbench_norm.data import DATASETS

        return {n: info.description for n, (info, _) in sorted(DATASETS.items())}
    if what == "corruptions":
        from robustbench_norm.perturb.corruptions import COMMON, VALIDATION

        return {**{n: "common" for n in COMMON}, **{n: "validation" for n in VALIDATION}}
    from robustbench_norm.perturb.attacks import ATTACKS, DEFAULT_EPSILONS, format_epsilon

    return {
        n: f"L{'∞' if norm == 'linf' else '2'}, {'fixed budget' if fixed else 'minimal'}"
        f", default ε {' '.join(format_epsilon(e) for e in DEFAULT_EPSILONS[norm])}"
        for n, (norm, fixed) in ATTACKS.items()
    }


def _cmd_plan(args: argparse.Namespace) -> int:
    from robustbench_norm.suites.plan import describe_plan
    from robustbench_norm.suites.suite import load_suite

    print(describe_plan(load_suite(args.suite), args.store))
    return EXIT_OK


def _cmd_run(args: argparse.Namespace) -> int:
    from robustbench_norm.suites.execute import RunSettings, run_suite
    from robustbench_norm.suites.store import Store
    from robustbench_norm.suites.suite import load_suite

    suite = load_suite(args.suite)
    settings = RunSettings(
        plugins=tuple(args.plugin),
        workdir=args.workdir,
        device=args.device,
        cache_dir=args.cache_dir,
        data_root=args.data_root,
        download=args.download,
        fresh=args.fresh,
        quiet=args.quiet,
        threads=args.threads,
    )

    def report(job, outcome) -> None:
        if not args.quiet:
            t = job.train
            print(
                f"  {t.model}/{job.label}/bs{t.batch_size}/seed{t.seed}/{job.regularizer}: "
                f"{outcome.status} in {outcome.wall_seconds:.0f}s",
                file=sys.stderr,
            )

    def say(text: str) -> None:
        if not args.quiet:
            print(text, file=sys.stderr, flush=True)

    with Store.open(args.store) as store:
        say(f"running suite {suite.name!r}: {len(suite.jobs)} jobs into {args.store}")
        summary = run_suite(
            suite,
            store,
            settings,
            executor=args.executor,
            jobs=args.jobs,
            ray_address=args.ray_address,
            ray_cpus=args.ray_cpus,
            ray_gpus=args.ray_gpus,
            on_job=report,
            say=say,
        )
    print(
        f"run {summary.run_id} of suite {suite.name!r}: {summary.total} jobs, "
        f"{summary.reused} reused, {summary.executed} executed, {len(summary.diverged)} "
        f"diverged, {len(summary.failed)} failed (store {args.store})"
    )
    _print_headline(args.store, summary.run_id, suite.name)
    for line in summary.failed:
        print(f"FAILED {line}", file=sys.stderr)
    return EXIT_JOBS_FAILED if summary.failed else EXIT_OK


def _print_headline(store_path: str, run_id: int, suite: str) -> None:
    """The run's headline numbers and where the full leaderboard comes from."""
    from robustbench_norm.reporting.headline import headline
    from robustbench_norm.reporting.report import build_report
    from robustbench_norm.suites.store import Store

    try:
        with Store.open(store_path, read_only=True) as store:
            text = headline(build_report(store, run_id))
    except RobustBenchError:  # no finished job to show
        return
    if text:
        print("\nheadline (per norm; 95 % intervals from 3 runs on, else each run's value):")
        print(text)
    print(
        f"\nthe full leaderboard (every table, the claims, plots): robustbench-norm report "
        f"--suite {suite} --store {store_path}"
    )


def _cmd_report(args: argparse.Namespace) -> int:
    from robustbench_norm.reporting.report import publish
    from robustbench_norm.suites.store import Store

    with Store.open(args.store, read_only=True) as store:
        run_id = store.resolve_run(args.run, args.suite)
        suite = store.run(run_id)["suite"]
        root = Path("leaderboards") if args.publish else Path("results") / "leaderboards"
        out = Path(args.out or root / suite)
        paths = publish(store, run_id, out)
    print(
        f"leaderboard of run {run_id} ({suite}) written to {out}/: "
        + ", ".join(p.name for p in paths)
    )
    if not args.publish and args.out is None:
        print(f"publish it into leaderboards/{suite}/ with: report --suite {suite} --publish")
    return EXIT_OK


def _cmd_check(args: argparse.Namespace) -> int:
    from robustbench_norm.reporting.check import GateSettings, compare_runs, parse_run_ref
    from robustbench_norm.reporting.check_text import format_report
    from robustbench_norm.suites.store import Store
    from robustbench_norm.suites.suite import CheckSettings, load_suite

    suite = load_suite(args.suite) if args.suite else None
    defaults = suite.check if suite else CheckSettings()
    baseline = args.baseline or defaults.baseline
    if baseline is None:
        raise RobustBenchError(
            "check: --baseline is required (or a suite with [check].baseline), e.g. "
            "--baseline leaderboards/smoke/store.sqlite:latest"
        )
    settings = GateSettings(
        primary=tuple(args.metrics or defaults.primary),
        secondary=tuple(defaults.secondary if args.secondary is None else args.secondary),
        alpha=defaults.alpha if args.alpha is None else args.alpha,
        tolerance=defaults.tolerance if args.tolerance is None else args.tolerance,
        detect=defaults.detect if args.detect is None else args.detect,
        accept_changes=args.accept_changes,
    )
    settings.validate()  # before any store is opened: a usage error costs nothing
    bpath, bref = parse_run_ref(baseline, args.store)
    cpath, cref = parse_run_ref(args.candidate, args.store)
    with Store.open(bpath, read_only=True) as bstore, Store.open(cpath, read_only=True) as cstore:
        # with --suite, `latest` means the newest run of that suite in each store
        name = suite.name if suite else None
        brun, crun = bstore.resolve_run(bref, name), cstore.resolve_run(cref, name)
        report = compare_runs((bstore, brun), (cstore, crun), settings)
    if args.json == "-":
        print(json.dumps(report.to_dict(), indent=1))
    else:
        print(format_report(report))
        if args.json:
            Path(args.json).write_text(json.dumps(report.to_dict(), indent=1) + "\n")
    return EXIT_REGRESSION if report.regression else EXIT_OK


def _cmd_fingerprint(args: argparse.Namespace) -> int:
    from robustbench_norm.norms.fingerprint import compare_fingerprints, fingerprints, signature
    from robustbench_norm.reporting.check import parse_run_ref
    from robustbench_norm.suites.store import Store
    from robustbench_norm.suites.suite import load_suite

    suite = load_suite(args.suite)
    prints = fingerprints(suite.norm_configs())
    if args.json:
        Path(args.json).write_text(json.dumps(prints, indent=1) + "\n")
    if args.compare is None:
        print(f"fingerprints of suite {suite.name!r} (canary losses over 3 float64 SGD steps):")
        for label, fp in prints.items():
            print(f"  {label:<18}{len(fp['entries']):>4} entries   {signature(fp)}")
        return EXIT_OK
    path, ref = parse_run_ref(args.compare, args.store)
    with Store.open(path, read_only=True) as store:
        run_id = store.resolve_run(ref)
        stored = store.fingerprints_of_run(run_id)
    if not stored:
        raise RobustBenchError(
            f"run {run_id} of {path} has no fingerprints (made before they existed); compare "
            "with a newer run"
        )
    diffs = compare_fingerprints(stored, prints)
    print(f"this code's layers vs the fingerprints of {path}:{run_id}")
    for d in diffs:
        print(f"  {d.label:<18}{d.describe()}")
    return EXIT_REGRESSION if any(d.status == "changed" for d in diffs) else EXIT_OK


def _epsilon(text: str) -> float:
    from robustbench_norm.perturb.attacks import parse_epsilon

    try:
        return parse_epsilon(text)
    except RobustBenchError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def _option(text: str) -> tuple[str, object]:
    """KEY=VALUE with VALUE read as JSON when it parses (4, 0.5, true, "auto"), else a string."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def _cmd_train(args: argparse.Namespace) -> int:
    from robustbench_norm.data import load_split
    from robustbench_norm.norms import options_for
    from robustbench_norm.train import TrainSpec, accuracy, load_trained, resolve_device, train

    test = load_split(args.dataset, "test", data_root=args.data_root, download=args.download)
    device = resolve_device(args.device)
    per_norm = options_for(args.norm, dict(args.norm_option))
    rows = []
    for norm in args.norm:
        spec = TrainSpec(
            model=args.model,
            norm=norm,
            norm_options=per_norm[norm],
            width=args.width,
            dataset=args.dataset,
            batch_size=args.batch_size,
            epochs=args.epochs,
            steps=args.steps,
            optimizer=args.optimizer,
            lr=args.lr,
            lr_scaling=args.lr_scaling,
            schedule=args.schedule,
            weight_decay=args.weight_decay,
            seed=args.seed,
            augment=not args.no_augment,
            dropout=args.dropout,
            mixup_alpha=args.mixup,
            perturbation={"mode": args.perturbation},
            stability={"every": args.stability_every},
            precision=args.precision,
            channels_last=args.channels_last,
            compile=args.compile,
        )
        result = train(
            spec,
            args.workdir,
            device=device,
            data_root=args.data_root,
            download=args.download,
            quiet=args.quiet,
        )
        model, _ = load_trained(result.checkpoint, device)
        acc = accuracy(model, test, device=str(device)) if result.status == "done" else None
        rows.append((norm, result, acc))
        if not args.quiet:
            print(f"{norm}: {result.status} after {result.steps} steps", file=sys.stderr)
    print(f"{'norm':<12}{'status':<10}{'steps':>6}{'last loss':>11}{'test acc':>10}{'seconds':>9}")
    for norm, r, acc in rows:
        loss = r.log["loss"][-1] if r.log.get("loss") else float("nan")
        shown = f"{acc:.4f}" if acc is not None else "—"
        print(f"{norm:<12}{r.status:<10}{r.steps:>6}{loss:>11.4f}{shown:>10}{r.wall_seconds:>9.1f}")
    print(f"checkpoints under {args.workdir}/checkpoints/ ({len(test)} test images)")
    return EXIT_OK


def _cmd_eval(args: argparse.Namespace) -> int:
    from robustbench_norm.data import load_split
    from robustbench_norm.evaluate import (
        CleanSpec,
        CorruptionSpec,
        NoiseSequenceSpec,
        NoiseSpec,
        evaluate,
    )
    from robustbench_norm.perturb.attacks import AttackSpec
    from robustbench_norm.perturb.corruptions import ALL
    from robustbench_norm.train import load_trained, resolve_device

    device = resolve_device(args.device)
    model, payload = load_trained(args.checkpoint, device)
    dataset = args.dataset or payload["spec"]["dataset"]
    split = load_split(dataset, "test", data_root=args.data_root, download=args.download)
    split = split.subset(args.limit)
    specs = [CleanSpec()]
    if args.noise is not None:
        specs.append(NoiseSpec(sigmas=tuple(args.noise)) if args.noise else NoiseSpec())
    if args.noise_sequence:
        specs.append(NoiseSequenceSpec())
    if args.corruptions is not None:
        names = ALL if args.corruptions in ([], ["all"]) else tuple(args.corruptions)
        specs.append(
            CorruptionSpec(
                names=names, severities=tuple(args.severities), corruptions_dir=args.corruptions_dir
            )
        )
    for name in args.attack:
        specs.append(AttackSpec(name, epsilons=tuple(args.epsilons or ()), steps=args.steps))
    print(
        f"{args.checkpoint}: {payload['spec']['model']}/{payload['spec']['norm']} on "
        f"{dataset} test ({len(split)} images)"
    )
    warnings = []
    for spec in specs if len(specs) == 1 else specs[1:]:
        result = evaluate(
            model,
            split,
            spec,
            batch_size=args.batch_size,
            device=device,
            cache_dir=args.cache_dir,
            quiet=args.quiet,
        )
        print(f"\n{result.family}")
        print(f"  {'name':<18}{'parameter':>11}  {'metric':<26}{'value':>8}")
        for row in result.metrics:
            parameter = "" if row["parameter"] is None else f"{row['parameter']:.4g}"
            print(f"  {row['name']:<18}{parameter:>11}  {row['metric']:<26}{row['value']:>8.4f}")
        warnings += result.warnings
    for w in warnings:
        print(f"WARNING: {w}", file=sys.stderr)
    return EXIT_OK


def _add_plugin(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--plugin",
        action="append",
        default=[],
        metavar="MODULE",
        help="a module (or .py file) that registers your own layers with register_norm; repeatable",
    )


def _add_device_and_data(p: argparse.ArgumentParser) -> None:
    """Where to compute and where data comes from: the same flags on every command that trains
    or evaluates."""
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    p.add_argument("--data-root", default=None, help="a folder holding the dataset's files")
    p.add_argument("--download", action="store_true", help="allow a dataset download")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    _add_plugin(p)


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Examples kept as written, and every option's default in its help line."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        shown = action.default not in (None, False, [], argparse.SUPPRESS)
        if shown and action.option_strings and "%(default)" not in text and "default" not in text:
            text += " (default: %(default)s)"
        return text.strip()


RAW = HelpFormatter


def _show_defaults(parser: argparse.ArgumentParser) -> None:
    """argparse prints nothing for an option without help text: give those with a default a
    help line that is just the default."""
    for action in parser._actions:
        if action.help is None and action.default not in (None, False, [], argparse.SUPPRESS):
            action.help = "(default: %(default)s)"
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _show_defaults(sub)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="robustbench-norm",
        description="Benchmark normalization layers (BN, GN, GN+ and peers) for training "
        "stability and robustness to distortion.",
        epilog=EXIT_CODES,
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks for user errors")
    parser.add_argument("--version", action="version", version=f"robustbench-norm {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_run(sub)
    _add_plan(sub)
    _add_report(sub)
    _add_check(sub)
    _add_fingerprint(sub)
    _add_list(sub)
    _add_train(sub)
    _add_eval(sub)
    _show_defaults(parser)
    return parser


def _add_run(sub) -> None:
    p = sub.add_parser(
        "run",
        help="run a suite into the results store (resumes by default)",
        description="Train and evaluate every job of a suite into the store. Re-running the "
        "same command resumes: finished jobs are skipped, none is duplicated, an interrupted "
        "job continues from its last epoch.\n\nexamples:\n"
        "  robustbench-norm run suites/smoke.toml\n"
        "  robustbench-norm run suites/nightly.toml --device cuda --jobs 2\n"
        "  robustbench-norm run suites/smoke.toml --executor ray --ray-address auto",
        formatter_class=RAW,
    )
    p.add_argument("suite", help="a suite TOML file")
    p.add_argument("--store", default=str(DEFAULT_STORE_PATH), help="SQLite results store")
    p.add_argument("--executor", default="local", choices=["local", "ray"])
    p.add_argument("--jobs", type=int, default=1, help="local worker processes (default 1)")
    group = p.add_mutually_exclusive_group()
    group.add_argument(
        "--resume",
        dest="fresh",
        action="store_false",
        default=False,
        help="reuse finished jobs and continue an interrupted run (default)",
    )
    group.add_argument(
        "--fresh", dest="fresh", action="store_true", help="a new run that recomputes every job"
    )
    p.add_argument("--workdir", default="results", help="checkpoints go under WORKDIR/checkpoints")
    p.add_argument("--cache-dir", default=None, help="corruption cache (default ~/.cache/...)")
    p.add_argument("--ray-address", default=None, help="an existing Ray cluster (e.g. auto)")
    p.add_argument("--ray-cpus", type=float, default=1.0, help="CPUs per job on Ray")
    p.add_argument("--ray-gpus", type=float, default=0.0, help="GPUs per job on Ray")
    p.add_argument(
        "--threads",
        type=_positive_int,
        default=None,
        help="torch threads per job (default: all cores, shared out over --jobs); part of each "
        "job's key, since it changes the trained weights",
    )
    _add_device_and_data(p)
    p.set_defaults(func=_cmd_run)


def _add_plan(sub) -> None:
    p = sub.add_parser(
        "plan",
        help="print a suite's job matrix and work without running it",
        description="Validate a suite and print its jobs and the work they imply.\n\n"
        "example:\n  robustbench-norm plan suites/nightly.toml",
        formatter_class=RAW,
    )
    p.add_argument("suite")
    p.add_argument(
        "--store",
        default=str(DEFAULT_STORE_PATH),
        help="estimate the time from the durations of the jobs finished in this store",
    )
    _add_plugin(p)
    p.set_defaults(func=_cmd_plan)


def _add_report(sub) -> None:
    p = sub.add_parser(
        "report",
        help="write a run's leaderboard (README, CSV, JSON, HTML, plots, fingerprints)",
        description="Write the leaderboard of a finished run, with the run exported as "
        "store.sqlite beside it. By default it goes to results/leaderboards/<suite>/ (untracked); "
        "--publish writes the committed leaderboards/<suite>/ instead.\n\nexamples:\n"
        "  robustbench-norm report --suite smoke\n"
        "  robustbench-norm report --suite smoke --publish\n"
        "  robustbench-norm report --run 12 --out /tmp/lb",
        formatter_class=RAW,
    )
    p.add_argument("--suite", default=None, help="latest run of this suite (default: any)")
    p.add_argument("--run", default="latest", help="run id, latest or previous")
    p.add_argument("--store", default=str(DEFAULT_STORE_PATH))
    where = p.add_mutually_exclusive_group()
    where.add_argument("--out", default=None, help="default results/leaderboards/<suite>")
    where.add_argument(
        "--publish", action="store_true", help="write leaderboards/<suite>/ (the published one)"
    )
    p.set_defaults(func=_cmd_report)


def _add_check(sub) -> None:
    p = sub.add_parser(
        "check",
        help="regression gate: candidate run vs baseline run (exit 1 on a regression)",
        description="Is the candidate worse than the baseline? Three tiers: completeness "
        "(every setting the baseline finished, the candidate finished), layer fingerprints "
        "(exact: did a layer's function change?), then one-sided Welch tests with training runs "
        "as units, Holm-corrected over the primary metrics. RUN is [STORE:]ID, latest or "
        "previous; `latest` is the newest run and must be finished.\n\n"
        "exit codes: 0 pass, 1 regression, 2 usage error or unreadable store\n\nexamples:\n"
        "  robustbench-norm check --suite suites/smoke.toml --candidate latest\n"
        "  robustbench-norm check --baseline leaderboards/smoke/store.sqlite:latest "
        "--candidate results/robustbench.sqlite:latest --json -\n"
        "  robustbench-norm check --baseline 3 --candidate 4 --metrics clean/accuracy "
        "--tolerance 0.01",
        formatter_class=RAW,
    )
    p.add_argument("--baseline", default=None, help="default: the suite's [check].baseline")
    p.add_argument("--candidate", default="latest")
    p.add_argument("--suite", default=None, help="take the [check] settings from this suite")
    p.add_argument(
        "--metrics", nargs="+", default=None, metavar="FAMILY/METRIC", help="primary metrics"
    )
    p.add_argument(
        "--secondary", nargs="*", default=None, metavar="FAMILY/METRIC", help="reported only"
    )
    p.add_argument("--alpha", type=float, default=None, help="family-wise error (default 0.05)")
    p.add_argument(
        "--tolerance", type=float, default=None, help="δ: a drop up to δ is no regression"
    )
    p.add_argument(
        "--detect", type=float, default=None, help="the drop the gate must see (default 0.02)"
    )
    p.add_argument(
        "--accept-changes",
        action="store_true",
        help="a changed layer fingerprint is intended: report it, let the statistics decide",
    )
    p.add_argument("--store", default=str(DEFAULT_STORE_PATH), help="store for bare run ids")
    p.add_argument("--json", default=None, metavar="PATH", help="the report as JSON (- : stdout)")
    p.set_defaults(func=_cmd_check)


def _add_fingerprint(sub) -> None:
    p = sub.add_parser(
        "fingerprint",
        help="compute (and compare) the exact fingerprints of a suite's layers",
        description="Run every norm configuration of a suite on fixed float64 inputs and print "
        "its fingerprint's signature; --compare checks them against a stored run's "
        "(exit 1 when a layer changed). Takes seconds, needs no training.\n\nexamples:\n"
        "  robustbench-norm fingerprint suites/smoke.toml\n"
        "  robustbench-norm fingerprint suites/smoke.toml "
        "--compare leaderboards/smoke/store.sqlite:latest",
        formatter_class=RAW,
    )
    p.add_argument("suite")
    p.add_argument("--compare", default=None, metavar="[STORE:]RUN")
    p.add_argument("--store", default=str(DEFAULT_STORE_PATH), help="store for a bare run id")
    p.add_argument("--json", default=None, metavar="PATH", help="write the fingerprints")
    _add_plugin(p)
    p.set_defaults(func=_cmd_fingerprint)


def _add_list(sub) -> None:
    p = sub.add_parser(
        "list",
        help="list norms, models, datasets, corruptions, attacks or runs",
        description="List registered names, or the runs in a store.\n\nexamples:\n"
        "  robustbench-norm list norms\n"
        "  robustbench-norm list runs --store leaderboards/smoke/store.sqlite",
        formatter_class=RAW,
    )
    p.add_argument(
        "what", choices=["norms", "models", "datasets", "corruptions", "attacks", "runs"]
    )
    p.add_argument("--store", default=str(DEFAULT_STORE_PATH))
    p.set_defaults(func=_cmd_list)


def _add_train(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train one model per norm and print test accuracy",
        description="Train one spec per --norm (cached by spec: a finished one is reused, an "
        "interrupted one resumes) and print clean test accuracy.\n\nexamples:\n"
        "  robustbench-norm train --norm bn gn gnplus --norm-option groups=auto\n"
        "  robustbench-norm train --model vgg11 --norm gnplus --norm-option variant=gn_first "
        "--batch-size 16 --lr-scaling linear --epochs 3",
        formatter_class=RAW,
    )
    p.add_argument("--model", default="resnet20")
    p.add_argument("--norm", nargs="+", default=["bn"], help="one or more registry names")
    p.add_argument(
        "--norm-option",
        type=_option,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="layer option, e.g. groups=auto (repeatable; applies to each --norm that "
        "accepts it, and must fit at least one)",
    )
    p.add_argument("--width", type=int, default=None, help="first-stage channels")
    p.add_argument("--dataset", default="fashion-mnist-mini")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--steps", type=int, default=None, help="total steps (overrides --epochs)")
    p.add_argument("--optimizer", default="sgd", choices=["sgd", "adam"])
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--lr-scaling", default="none", choices=["none", "linear"])
    p.add_argument("--schedule", default="cosine", choices=["cosine", "step", "constant"])
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-augment", action="store_true")
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--mixup", type=float, default=0.0, help="mixup alpha (0 = off)")
    p.add_argument(
        "--perturbation", default="none", choices=["none", "time_varying", "shared_shift"]
    )
    p.add_argument(
        "--stability-every", type=int, default=0, help="Santurkar measures every N steps"
    )
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    p.add_argument("--channels-last", action="store_true")
    p.add_argument(
        "--compile", action="store_true", help="train through torch.compile(model) (slow start)"
    )
    p.add_argument("--workdir", default="results", help="where checkpoints go (default results/)")
    _add_device_and_data(p)
    p.set_defaults(func=_cmd_train)


def _add_eval(sub) -> None:
    p = sub.add_parser(
        "eval",
        help="evaluate one checkpoint under noise, corruptions and attacks",
        description="Evaluate a checkpoint on its dataset's test split (eval mode, per-example "
        "results, batch-size independent). Clean accuracy is always reported.\n\nexamples:\n"
        "  robustbench-norm eval results/checkpoints/KEY/cpu-2threads/final.pt --noise\n"
        "  robustbench-norm eval CKPT --corruptions fog contrast --severities 1 3 5\n"
        "  robustbench-norm eval CKPT --attack pgd_linf fgsm --epsilons 0 1/255 8/255 --limit 500\n"
        "  robustbench-norm eval CKPT --attack pgd_l2 --epsilons 0 0.25 0.5 --steps 20",
        formatter_class=RAW,
    )
    p.add_argument("checkpoint", help="a final.pt written by `train` or `run`")
    p.add_argument(
        "--noise",
        type=float,
        nargs="*",
        default=None,
        metavar="SIGMA",
        help="Gaussian noise at these σ (default 0.02 0.05 0.1 0.2)",
    )
    p.add_argument("--noise-sequence", action="store_true", help="flip probability")
    p.add_argument(
        "--corruptions",
        nargs="*",
        default=None,
        metavar="NAME",
        help="imagecorruptions names, or none/all for all 19",
    )
    p.add_argument("--severities", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    p.add_argument("--corruptions-dir", default=None, help="precomputed CIFAR-10-C style folder")
    p.add_argument(
        "--attack",
        nargs="+",
        default=[],
        choices=[
            "fgsm",
            "pgd_linf",
            "pgd_l2",
            "apgd_ce",
            "apgd_t",
            "deepfool_linf",
            "deepfool_l2",
            "cw_l2",
        ],
    )
    p.add_argument(
        "--epsilons",
        type=_epsilon,
        nargs="+",
        default=None,
        help="budgets, as numbers or k/255 (default: the attack's own, e.g. 0 1/255 … 8/255)",
    )
    p.add_argument("--steps", type=int, default=None, help="attack steps (attack's default)")
    p.add_argument("--limit", type=_positive_int, default=None, help="first N test images only")
    p.add_argument("--dataset", default=None, help="default: the checkpoint's dataset")
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--cache-dir", default=None, help="corruption cache (default ~/.cache/...)")
    _add_device_and_data(p)
    p.set_defaults(func=_cmd_eval)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command. Whatever goes wrong that the user or the machine can fix ends as one
    ``error:`` line and a non-zero exit, never a traceback (``--debug`` shows it)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    warnings.formatwarning = _one_line_warning
    try:
        if getattr(args, "plugin", None):
            from robustbench_norm.plugins import load_plugins

            args.plugin = load_plugins(args.plugin)
        return args.func(args)
    except KeyboardInterrupt:
        if args.debug:
            raise
        print(
            "interrupted; rerun the same command to resume (finished jobs are kept)",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    except (RobustBenchError, OSError, sqlite3.Error) as e:
        if args.debug:
            raise
        print(f"error: {_message(e)}", file=sys.stderr)
        return EXIT_USER_ERROR


def _message(e: BaseException) -> str:
    """One line for an error; OS errors name the path and what went wrong with it."""
    if isinstance(e, OSError) and e.filename is not None:
        return f"{e.filename}: {e.strerror or e}"
    if isinstance(e, sqlite3.Error):
        return f"a results store could not be read or written: {e}"
    return " ".join(str(e).split("\n"))


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    return f"warning: {message}\n"


if __name__ == "__main__":
    sys.exit(main())
