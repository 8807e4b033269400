"""``robustbench-norm``: wires commands to the library; no logic of its own lives here."""

from __future__ import annotations

import argparse
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


def _cmd_demo(args: argparse.Namespace) -> int:
    from robustbench_norm.demo import run_layer_demo

    run_layer_demo()
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
        "demo",
        help="run every layer once and check its defining properties",
        description="Run every registered layer on a random batch and report measured "
        "properties (output moments, eval-mode batch independence, GN+ λ).\n\n"
        "example:\n  robustbench-norm demo",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.set_defaults(func=_cmd_demo)
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
