"""The commands: each takes the parsed arguments, calls the library and prints; the exit
codes they return are defined here."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from robustbench_norm.errors import RobustBenchError

#: kept here (not imported from store) so that `--help` does not import torch
DEFAULT_STORE_PATH = Path("results") / "robustbench.sqlite"

#: exit codes: 0 success; 1 `check` found a regression; 2 a usage error or a fault of the machine
#: (one-line message, no traceback), or `check`'s runs differ in job-defining settings; 3 `run`
#: finished but some jobs failed (their errors are in the store and the summary); 4 `check` could
#: not decide (a primary metric looks worse than `detect`, but the runs cannot test it); 130
#: interrupted (Ctrl-C)
EXIT_OK, EXIT_REGRESSION, EXIT_USER_ERROR, EXIT_JOBS_FAILED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
EXIT_UNDECIDED = 4
CHECK_EXIT = {
    "pass": EXIT_OK,
    "regression": EXIT_REGRESSION,
    "not comparable": EXIT_USER_ERROR,
    "undecided": EXIT_UNDECIDED,
}
EXIT_CODES = (
    "Exit codes: 0 success; 1 check found a regression (fingerprint changes too); 2 a usage "
    "error or a fault such as a full disk or a damaged store (a one-line message; --debug "
    "shows the traceback), or check's runs differ in job-defining settings; 3 run finished but "
    "some jobs failed (listed); 4 check could not decide (a primary metric looks worse than "
    "detect, with too few runs to test it); 130 interrupted (rerun the same command to resume)."
)


def _cmd_list(args: argparse.Namespace) -> int:
    if args.what == "runs":
        from robustbench_norm.suites.job_claims import live_runs
        from robustbench_norm.suites.store import Store

        with Store.open(args.store, read_only=True) as store:
            runs = store.runs()
            live = live_runs(store)
        if not runs:
            print(f"no runs in {args.store} yet: robustbench-norm run SUITE --store {args.store}")
        for r in runs:
            status = r["status"]
            if status == "running" and r["id"] not in live:
                status = "interrupted"  # no live process holds it: rerun `run` to resume
            print(
                f"{r['id']:>4}  {r['suite']:<12}{status:<12}{r['started']}  {r['finished'] or ''}"
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
        from robustbench_norm.training.models import MODELS

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
    from robustbench_norm.suites.suite import load_suite

    suite = load_suite(args.suite)
    summary = execute_suite(args, suite)
    print(
        f"run {summary.run_id} of suite {suite.name!r}: {summary.total} jobs, "
        f"{summary.reused} reused, {summary.executed} executed, {len(summary.diverged)} "
        f"diverged, {len(summary.failed)} failed (store {args.store})"
    )
    _print_headline(args.store, summary.run_id, suite.name)
    for line in summary.failed:
        print(f"FAILED {line}", file=sys.stderr)
    return EXIT_JOBS_FAILED if summary.failed else EXIT_OK


def execute_suite(args: argparse.Namespace, suite):
    """Run ``suite``'s jobs into the store with the execution flags of `run` and `curves`,
    printing each job as it finishes; the run's summary."""
    from robustbench_norm.suites.execute import RunSettings, check_run_settings, run_suite
    from robustbench_norm.suites.store import Store

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
    check_run_settings(settings, args.executor, args.jobs)  # before the store is created

    def report(job, outcome) -> None:
        if not args.quiet:
            print(
                f"  {job.title}: {outcome.status} in {outcome.wall_seconds:.0f}s",
                file=sys.stderr,
                flush=True,
            )

    def say(text: str) -> None:
        if not args.quiet:
            print(text, file=sys.stderr, flush=True)

    with Store.open(args.store) as store:
        say(f"running suite {suite.name!r}: {len(suite.jobs)} jobs into {args.store}")
        return run_suite(
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


def _cmd_curves(args: argparse.Namespace) -> int:
    from contextlib import ExitStack

    from robustbench_norm.data import dataset_info
    from robustbench_norm.reporting.check import parse_run_ref
    from robustbench_norm.reporting.curves import curve_frame, decide_plateau, write_curves
    from robustbench_norm.reporting.report import publish
    from robustbench_norm.suites.curves import Ladder, curve_suite
    from robustbench_norm.suites.store import Store
    from robustbench_norm.suites.suite import load_suite

    def chosen(values):
        return tuple(values) if values else None

    ladder = Ladder(
        tuple(args.budgets), tuple(args.seeds), chosen(args.norms), chosen(args.batch_sizes)
    )
    suite = curve_suite(load_suite(args.suite), ladder)
    failed = [] if args.no_run else execute_suite(args, suite).failed
    with Store.open(args.store, read_only=True) as store:
        every = store.runs(suite.name)
        runs = [r for r in every if store.run(r["id"])["suite_hash"] == suite.hash]
        if not runs:
            other = (
                f"; it holds {suite.name} run(s) {', '.join(str(r['id']) for r in every)} with "
                "other training settings or budgets: pass the suite file (or the worktree's) "
                "that ladder started with"
                if every else ""
            )  # fmt: skip
            raise RobustBenchError(
                f"{args.store} has no run of this ladder ({suite.name}){other}; or run the same "
                "command without --no-run to start it"
            )
        run_id = runs[-1]["id"]
        root = Path("leaderboards") if args.publish else Path("results") / "curves"
        out = Path(args.out or root / suite.name)
        with ExitStack() as stack:
            borrowed = []
            for ref in args.borrow:
                path, run = parse_run_ref(ref)
                other = stack.enter_context(Store.open(path, read_only=True))
                borrowed.append((other, other.resolve_run(run)))

            def writer(s, r, staging):
                return write_curves(s, r, staging, borrowed)

            publish(store, run_id, out, writer=writer)
            plateau = decide_plateau(curve_frame(store, run_id, borrowed))
    print(f"learning curves of run {run_id} ({suite.name}) written to {out}/")
    print(plateau.sentence(dataset_info(suite.dataset).train_size).replace("**", ""))
    for line in failed:
        print(f"FAILED {line}", file=sys.stderr)
    return EXIT_JOBS_FAILED if failed else EXIT_OK


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


def gate_settings(args: argparse.Namespace, suite):
    """The regression gate's settings: the suite's [check] table, overridden by the flags."""
    from robustbench_norm.reporting.check import GateSettings
    from robustbench_norm.suites.suite import CheckSettings

    defaults = suite.check if suite else CheckSettings()
    metrics, secondary = getattr(args, "metrics", None), getattr(args, "secondary", None)
    # metrics nobody named (the defaults) are watched where the baseline measures them
    implicit = (*(() if metrics or "primary" in defaults.named else defaults.primary),
                *(() if secondary is not None or "secondary" in defaults.named
                  else defaults.secondary))  # fmt: skip
    alpha, tolerance = getattr(args, "alpha", None), getattr(args, "tolerance", None)
    detect = getattr(args, "detect", None)
    settings = GateSettings(
        primary=tuple(metrics or defaults.primary),
        secondary=tuple(defaults.secondary if secondary is None else secondary),
        implicit=implicit,
        alpha=defaults.alpha if alpha is None else alpha,
        tolerance=defaults.tolerance if tolerance is None else tolerance,
        detect=defaults.detect if detect is None else detect,
        accept_changes=args.accept_changes,
    )
    settings.validate()  # before any store is opened: a usage error costs nothing
    return settings


def _cmd_check(args: argparse.Namespace) -> int:
    from robustbench_norm.reporting.check import compare_runs, parse_run_ref
    from robustbench_norm.reporting.check_text import format_report
    from robustbench_norm.suites.store import Store
    from robustbench_norm.suites.suite import load_suite

    suite = load_suite(args.suite) if args.suite else None
    baseline = args.baseline or (suite.check.baseline if suite else None)
    if baseline is None:
        raise RobustBenchError(
            "check: --baseline is required (or a suite with [check].baseline), e.g. "
            "--baseline leaderboards/smoke/store.sqlite:latest"
        )
    settings = gate_settings(args, suite)
    bpath, bref = parse_run_ref(baseline, args.store)
    cpath, cref = parse_run_ref(args.candidate, args.store)
    with Store.open(bpath, read_only=True) as bstore, Store.open(cpath, read_only=True) as cstore:
        # with --suite, `latest` means the newest run of that suite in each store
        name = suite.name if suite else None
        crun = cstore.resolve_run(cref, name)
        pool: tuple[int, ...] = ()
        if bref == "pooled":  # a nightly history: every trusted night like the candidate
            from robustbench_norm.reporting.pool import baseline_pool

            found = baseline_pool(bstore, cstore.run(crun)["suite"], cstore, crun)
            if found.baseline is None:
                raise RobustBenchError(
                    f"check: {bpath} holds no trusted night of suite "
                    f"{cstore.run(crun)['suite']!r} like the candidate ("
                    + ("; ".join(found.left_out) or "it has no nights: `nightly` makes them")
                    + "); name a run instead, e.g. --baseline STORE:latest"
                )
            brun, pool = found.baseline, found.runs
        else:
            brun = bstore.resolve_run(bref, name)
        report = compare_runs((bstore, brun), (cstore, crun), settings, pool=pool)
    if args.json == "-":
        print(json.dumps(report.to_dict(), indent=1))
    else:
        print(format_report(report))
        if args.json:
            Path(args.json).write_text(json.dumps(report.to_dict(), indent=1) + "\n")
    return CHECK_EXIT[report.verdict]


def _cmd_nightly(args: argparse.Namespace) -> int:
    from robustbench_norm.cli.nightly import cmd_nightly

    return cmd_nightly(args)


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
    if not set(stored) & set(prints):
        raise RobustBenchError(
            f"suite {suite.name!r} has no norm label in common with run {run_id} of {path} "
            f"(suite: {', '.join(prints)}; run: {', '.join(stored)}): nothing to compare; "
            "compare with a run of the same suite"
        )
    print(f"this code's layers vs the fingerprints of {path}:{run_id}")
    for d in diffs:
        print(f"  {d.label:<18}{d.describe()}")
    return EXIT_REGRESSION if any(d.status == "changed" for d in diffs) else EXIT_OK


def _cmd_train(args: argparse.Namespace) -> int:
    from robustbench_norm.data import load_split
    from robustbench_norm.norms import options_for
    from robustbench_norm.training import TrainSpec, accuracy, load_trained, resolve_device, train

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


def _cmd_detach(args: argparse.Namespace) -> int:
    from robustbench_norm.suites.external import detach

    run_id = detach(args.name, args.suite, store=args.store)
    print(f"run {run_id} of suite {args.suite!r}: the latest board without {args.name!r}")
    return EXIT_OK


def _cmd_export(args: argparse.Namespace) -> int:
    from robustbench_norm.suites.store import Store

    dest, source = Path(args.dest), Path(args.store)
    if dest.exists() and source.exists() and dest.resolve() == source.resolve():
        raise RobustBenchError(f"export: DEST {dest} is --store itself; name another file")
    if not dest.parent.is_dir():
        raise RobustBenchError(
            f"export: DEST's folder {dest.parent} does not exist; create it or name another path"
        )
    with Store.open(source, read_only=True) as store:
        store.export_all(dest)
        runs = len(store.runs())
        (jobs,) = store.conn.execute("SELECT COUNT(*) FROM jobs WHERE status = 'done'").fetchone()
    size = dest.stat().st_size / 1e6
    print(f"{dest}: {runs} run(s), {jobs} finished jobs of {source} ({size:.1f} MB)")
    return EXIT_OK


def _cmd_eval(args: argparse.Namespace) -> int:
    from robustbench_norm.data import load_split
    from robustbench_norm.evaluation import (
        BatchStatistics,
        CleanSpec,
        CorruptionSpec,
        NoiseSequenceSpec,
        NoiseSpec,
        evaluate,
    )
    from robustbench_norm.perturb.attacks import AttackSpec
    from robustbench_norm.perturb.corruptions import ALL
    from robustbench_norm.training import load_trained, resolve_device

    statistics = None
    if args.test_batch is not None:
        if args.attack:
            raise RobustBenchError(
                "--test-batch: attacks are evaluated with running statistics only (an attacked "
                "image's prediction would depend on its batch); run --attack without it"
            )
        statistics = BatchStatistics(args.test_batch, args.prior)
    elif args.prior:
        raise RobustBenchError("--prior needs --test-batch B: the batch it is mixed with")
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
                names=names,
                severities=tuple(args.severities),
                corruptions_dir=args.corruptions_dir,
                table=args.severity_table,
            )
        )
    for name in args.attack:
        specs.append(AttackSpec(name, epsilons=tuple(args.epsilons or ()), steps=args.steps))
    where = "" if statistics is None else f", {statistics.label} statistics"
    print(
        f"{args.checkpoint}: {payload['spec']['model']}/{payload['spec']['norm']} on "
        f"{dataset} test ({len(split)} images{where})"
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
            statistics=statistics,
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
