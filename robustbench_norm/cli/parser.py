"""The argument parser: one ``_add_<command>`` per command, the argument types, and help that
shows every default and examples that work as printed (tests run them)."""

from __future__ import annotations

import argparse
import json

from robustbench_norm.cli.commands import (
    DEFAULT_STORE_PATH,
    EXIT_CODES,
    _cmd_check,
    _cmd_curves,
    _cmd_detach,
    _cmd_eval,
    _cmd_export,
    _cmd_fingerprint,
    _cmd_list,
    _cmd_nightly,
    _cmd_plan,
    _cmd_report,
    _cmd_run,
    _cmd_train,
)
from robustbench_norm.errors import RobustBenchError
from robustbench_norm.version import __version__


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
    _add_curves(sub)
    _add_check(sub)
    _add_nightly(sub)
    _add_fingerprint(sub)
    _add_list(sub)
    _add_detach(sub)
    _add_export(sub)
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
    _add_execution(p)
    p.set_defaults(func=_cmd_run)


def _add_execution(p: argparse.ArgumentParser) -> None:
    """How and where a run's jobs execute: the same flags for `run` and `curves`."""
    p.add_argument("--store", default=str(DEFAULT_STORE_PATH), help="SQLite results store")
    p.add_argument("--executor", default="local", choices=["local", "ray"])
    p.add_argument("--jobs", type=int, default=1, help="local worker processes (default 1)")
    p.add_argument("--ray-address", default=None, help="an existing Ray cluster (e.g. auto)")
    p.add_argument("--ray-cpus", type=float, default=1.0, help="CPUs per job on Ray")
    p.add_argument("--ray-gpus", type=float, default=0.0, help="GPUs per job on Ray")
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
    p.add_argument(
        "--threads",
        type=_positive_int,
        default=None,
        help="torch threads per job (default: all cores, shared out over --jobs); part of each "
        "job's key, since it changes the trained weights",
    )
    _add_device_and_data(p)


def _add_curves(sub) -> None:
    p = sub.add_parser(
        "curves",
        help="learning curves: a suite's layers at a ladder of training budgets, and where "
        "they plateau",
        description="Train each norm and batch size of a suite (its unregularized settings) at "
        "every budget of a ladder (training images per run, each a full schedule of its own) "
        "for fresh seeds, measure clean accuracy on the whole test set, and write the curves "
        "(table, plot) with the plateau budget: the smallest budget B at which every layer's "
        "mean accuracy at 2B is within 0.01 of its accuracy at B. The ladder is a run of suite "
        "<suite>-curves in the store: rerunning the same command resumes it, --no-run only "
        "writes the page of what has finished.\n\nexamples:\n"
        "  robustbench-norm curves suites/smoke.toml --budgets 256 512 1024 --seeds 100 101\n"
        "  robustbench-norm curves suites/standard.toml --budgets 16384 32768 65536 131072 "
        "--seeds 100 101 --norms bn gn gnplus none --jobs 2 --publish",
        formatter_class=RAW,
    )
    p.add_argument("suite", help="a suite TOML file")
    p.add_argument(
        "--budgets", type=_positive_int, nargs="+", required=True, metavar="IMAGES",
        help="training images per run, e.g. doublings 16384 32768 65536",
    )  # fmt: skip
    p.add_argument("--seeds", type=int, nargs="+", default=[100, 101], help="fresh seeds")
    p.add_argument("--norms", nargs="+", default=None, help="norm labels (default: all)")
    p.add_argument("--batch-sizes", type=_positive_int, nargs="+", default=None)
    p.add_argument("--no-run", action="store_true", help="only write the page of finished runs")
    p.add_argument(
        "--with",
        dest="borrow",
        action="append",
        default=[],
        metavar="STORE:RUN",
        help="also read the unregularized runs of another run that trained a ladder arm's "
        "settings (e.g. a publication at one of the budgets, on fresh seeds)",
    )
    _add_execution(p)
    where = p.add_mutually_exclusive_group()
    where.add_argument("--out", default=None, help="default results/curves/<suite>-curves")
    where.add_argument(
        "--publish", action="store_true", help="write leaderboards/<suite>-curves/ instead"
    )
    p.set_defaults(func=_cmd_curves)


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
        "previous; `latest` is the newest run and must be finished. A nightly history's "
        "STORE:pooled pools every trusted night like the candidate.\n\n"
        "exit codes: 0 pass, 1 regression, 2 usage error, unreadable store or runs of different\n"
        "settings, 4 undecided (a primary metric looks worse than detect; too few runs to test)"
        "\n\nexamples:\n"
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
    _add_accept_changes(p)
    p.add_argument("--store", default=str(DEFAULT_STORE_PATH), help="store for bare run ids")
    p.add_argument("--json", default=None, metavar="PATH", help="the report as JSON (- : stdout)")
    p.set_defaults(func=_cmd_check)


def _add_accept_changes(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--accept-changes",
        action="store_true",
        help="a changed layer fingerprint is intended: report it, let the statistics decide",
    )


def _add_nightly(sub) -> None:
    p = sub.add_parser(
        "nightly",
        help="run → check against the pooled history → publish the night with its history",
        description="One night of a suite: train it on tonight's fresh seeds (night n shifts "
        "the suite's seeds by n × their span), check it against every trusted earlier night "
        "of the same compute class, settings and layers (a pooled baseline), add it to the "
        "history in OUT/store.sqlite, test the history for slow drift and publish OUT with a "
        "history section. A failing night is published, marked, and never becomes a baseline. "
        "Rerunning after an interruption resumes the same night.\n\n"
        "exit codes: 0 pass or first night, 1 regression or slow drift, 2 usage error, 3 jobs\n"
        "failed on a first night, 4 undecided\n\nexamples:\n"
        "  robustbench-norm nightly suites/smoke.toml\n"
        "  robustbench-norm nightly suites/smoke.toml --out leaderboards/smoke-nightly --json -\n"
        "  robustbench-norm nightly suites/standard.toml --device cuda --jobs 4 --accept-changes",
        formatter_class=RAW,
    )
    p.add_argument("suite", help="a suite TOML file; its [check] table sets the gate")
    p.add_argument(
        "--out",
        default=None,
        help="the nightly leaderboard folder; its store.sqlite is the history (default "
        "leaderboards/SUITE-nightly)",
    )
    _add_accept_changes(p)
    p.add_argument("--json", default=None, metavar="PATH", help="the night's summary (- : stdout)")
    _add_execution(p)
    p.set_defaults(func=_cmd_nightly)


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


def _add_detach(sub) -> None:
    p = sub.add_parser(
        "detach",
        help="take a benchmarked external model off a suite's board",
        description="Models benchmarked with benchmark() stay on their suite's board: every "
        "new run of the suite keeps them. This records a new run without NAME (its stored "
        "result stays; benchmarking the same weights again brings it back).\n\nexamples:\n"
        "  robustbench-norm detach resnet18-tv --suite mine --store mine.sqlite",
        formatter_class=RAW,
    )
    p.add_argument("name", help="the name it was benchmarked under (without ' (external)')")
    p.add_argument("--suite", required=True, help="the suite's name (list runs shows it)")
    p.add_argument("--store", default=str(DEFAULT_STORE_PATH))
    p.set_defaults(func=_cmd_detach)


def _add_export(sub) -> None:
    p = sub.add_parser(
        "export",
        help="copy a store into one compact file, safely while a run writes into it",
        description="Copy every run of a store into DEST: one compacted SQLite file with no "
        "-wal beside it, read from one consistent snapshot, so it is safe while a run is "
        "writing into the store. What to commit at the end of each sitting of a long run (the "
        "store is the record; checkpoints are not) or carry to another machine, where `run` "
        "resumes from a copy of it. DEST is replaced only once the copy is whole.\n\n"
        "examples:\n"
        "  robustbench-norm export /tmp/smoke.sqlite --store leaderboards/smoke/store.sqlite\n"
        "  robustbench-norm export runs/standard.sqlite --store results/standard.sqlite",
        formatter_class=RAW,
    )
    p.add_argument("dest", help="the file to write (replaced if it exists)")
    p.add_argument("--store", default=str(DEFAULT_STORE_PATH))
    p.set_defaults(func=_cmd_export)


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
        "  robustbench-norm eval CKPT --attack pgd_l2 --epsilons 0 0.25 0.5 --steps 20\n"
        "  robustbench-norm eval CKPT --noise --test-batch 500",
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
        "--severity-table",
        choices=["imagenet-c", "cifar-10-c"],
        default="imagenet-c",
        help="corruption constants: imagecorruptions' (ImageNet-C) or CIFAR-10-C's (32×32)",
    )
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
    p.add_argument(
        "--test-batch",
        type=_positive_int,
        default=None,
        metavar="B",
        help="normalize BN-style layers with the statistics of each batch of B test images "
        "instead of their running averages (test-time statistics; not with --attack)",
    )
    p.add_argument(
        "--prior",
        type=float,
        default=0.0,
        metavar="N",
        help="with --test-batch: mix the batch's statistics with the running averages, which "
        "count as N images (Schneider et al. 2020; default 0: the batch alone)",
    )
    p.add_argument("--cache-dir", default=None, help="corruption cache (default ~/.cache/...)")
    _add_device_and_data(p)
    p.set_defaults(func=_cmd_eval)
