"""``robustbench-norm``: wires commands to the library; no logic of its own lives here."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from robustbench_norm.errors import RobustBenchError

EXIT_OK, EXIT_USER_ERROR = 0, 2


def _cmd_list(args: argparse.Namespace) -> int:
    from robustbench_norm.norms import describe

    listings = {"norms": describe}
    for name, text in listings[args.what]().items():
        print(f"{name:<14}{text}")
    return EXIT_OK


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
        specs.append(CorruptionSpec(names=names, severities=tuple(args.severities),
                                    corruptions_dir=args.corruptions_dir))  # fmt: skip
    for name in args.attack:
        specs.append(AttackSpec(name, epsilons=tuple(args.epsilons or ()), steps=args.steps))
    print(f"{args.checkpoint}: {payload['spec']['model']}/{payload['spec']['norm']} on "
          f"{dataset} test ({len(split)} images)")  # fmt: skip
    warnings = []
    for spec in specs if len(specs) == 1 else specs[1:]:
        result = evaluate(model, split, spec, batch_size=args.batch_size, device=device,
                          cache_dir=args.cache_dir, quiet=args.quiet)  # fmt: skip
        print(f"\n{result.family}")
        print(f"  {'name':<18}{'parameter':>11}  {'metric':<26}{'value':>8}")
        for row in result.metrics:
            parameter = "" if row["parameter"] is None else f"{row['parameter']:.4g}"
            print(f"  {row['name']:<18}{parameter:>11}  {row['metric']:<26}{row['value']:>8.4f}")
        warnings += result.warnings
    for w in warnings:
        print(f"WARNING: {w}", file=sys.stderr)
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="robustbench-norm",
        description="Benchmark normalization layers (BN, GN, GN+ and peers) for training "
        "stability and robustness to distortion.",
        epilog="Exit codes: 0 success, 1 a regression was found (check), 2 a usage error "
        "(message printed, no traceback; --debug shows it).",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks for user errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "list",
        help="list registered names",
        description="List registered names.\n\nexample:\n  robustbench-norm list norms",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("what", choices=["norms"])
    p.set_defaults(func=_cmd_list)

    p = sub.add_parser(
        "train",
        help="train one model per norm and print test accuracy",
        description="Train one spec per --norm (cached by spec: a finished one is reused, an "
        "interrupted one resumes) and print clean test accuracy.\n\nexamples:\n"
        "  robustbench-norm train --norm bn gn gnplus --norm-option groups=auto\n"
        "  robustbench-norm train --model vgg11 --norm gnplus --norm-option variant=gn_first "
        "--batch-size 16 --lr-scaling linear --epochs 3",
        formatter_class=argparse.RawDescriptionHelpFormatter,
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
    p.add_argument("--workdir", default="results", help="where checkpoints go (default results/)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    p.add_argument("--data-root", default=None)
    p.add_argument("--download", action="store_true", help="allow a dataset download")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser(
        "eval",
        help="evaluate one checkpoint under noise, corruptions and attacks",
        description="Evaluate a checkpoint on its dataset's test split (eval mode, per-example "
        "results, batch-size independent). Clean accuracy is always reported.\n\nexamples:\n"
        "  robustbench-norm eval results/checkpoints/KEY/final.pt --noise\n"
        "  robustbench-norm eval CKPT --corruptions fog contrast --severities 1 3 5\n"
        "  robustbench-norm eval CKPT --attack pgd_linf fgsm --limit 500\n"
        "  robustbench-norm eval CKPT --attack pgd_l2 --epsilons 0 0.25 0.5 --steps 20",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("checkpoint", help="a final.pt written by `train` or `run`")
    p.add_argument("--noise", type=float, nargs="*", default=None, metavar="SIGMA",
                   help="Gaussian noise at these σ (default 0.02 0.05 0.1 0.2)")  # fmt: skip
    p.add_argument("--noise-sequence", action="store_true", help="flip probability")
    p.add_argument("--corruptions", nargs="*", default=None, metavar="NAME",
                   help="imagecorruptions names, or none/all for all 19")  # fmt: skip
    p.add_argument("--severities", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    p.add_argument("--corruptions-dir", default=None, help="precomputed CIFAR-10-C style folder")
    p.add_argument(
        "--attack",
        nargs="+",
        default=[],
        choices=["fgsm", "pgd_linf", "pgd_l2", "deepfool_linf", "deepfool_l2", "cw_l2"],
    )
    p.add_argument("--epsilons", type=float, nargs="+", default=None)
    p.add_argument("--steps", type=int, default=None, help="attack steps (attack's default)")
    p.add_argument("--limit", type=int, default=None, help="first N test images only")
    p.add_argument("--dataset", default=None, help="default: the checkpoint's dataset")
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--cache-dir", default=None, help="corruption cache (default ~/.cache/...)")
    p.add_argument("--device", default="auto")
    p.add_argument("--data-root", default=None)
    p.add_argument("--download", action="store_true")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_eval)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except RobustBenchError as e:
        if args.debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR


if __name__ == "__main__":
    sys.exit(main())
