"""``robustbench-norm nightly SUITE``: run → check → history → report → publish, in one command.

1. **Run** the suite on tonight's seeds (``suites/nights.py``: night *n* trains the suite's seeds
   shifted by *n* × their span, so each night is a fresh draw) into the working store. Cut
   off, the same command resumes it: the night's number comes from the published history,
   which only changes at the end.
2. **Check** it against the pooled baseline (``reporting/pool.py``): every trusted earlier night
   of the same compute class, settings and layer fingerprints. No such night: this one is the
   first of its kind and becomes the baseline.
3. **History.** The published store is copied, the night's run is added to it with its verdict,
   and the drift test (``reporting/drift.py``) runs over the era's trusted nights.
4. **Publish** the night's leaderboard with its history section, and the grown store, in one
   atomic swap of the folder. A failing night is published too, marked on the page, and never
   becomes a baseline.

Exit codes are check's: 0 pass (or a first night), 1 regression or slow drift, 2 usage error
or runs that are not comparable, 3 jobs failed on a first night (nothing to check them against),
4 undecided.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from robustbench_norm.cli.commands import (
    CHECK_EXIT,
    EXIT_JOBS_FAILED,
    EXIT_OK,
    EXIT_REGRESSION,
    execute_suite,
    gate_settings,
)
from robustbench_norm.errors import RobustBenchError, StorageError
from robustbench_norm.reporting.check import compare_runs
from robustbench_norm.reporting.check_text import format_report
from robustbench_norm.reporting.history import build_history
from robustbench_norm.reporting.leaderboard_folder import check_replaceable
from robustbench_norm.reporting.pool import baseline_pool
from robustbench_norm.reporting.report import publish, write_report
from robustbench_norm.suites.nights import copy_run, next_night, night_suite, record_night
from robustbench_norm.suites.store import Store
from robustbench_norm.suites.suite import load_suite

NIGHTLY_SCHEMA = "robustbench-norm/nightly@1"


def cmd_nightly(args: argparse.Namespace) -> int:
    suite = load_suite(args.suite)
    out = Path(args.out or Path("leaderboards") / f"{suite.name}-nightly")
    held = out / "store.sqlite"
    settings = gate_settings(args, suite)
    if out.exists() and not out.is_dir():
        raise RobustBenchError(f"--out {out} is a file; pass a folder for the nightly leaderboard")
    check_replaceable(out, Path(args.store))  # before training, not after
    if held.exists():
        with Store.open(held, read_only=True) as history:
            night = next_night(history, suite.name)
    else:
        night = 0
    tonight = night_suite(suite, night)
    if not args.quiet:
        seeds = sorted({j.train.seed for j in tonight.jobs})
        print(f"night {night} of suite {suite.name!r}: seeds {seeds}", file=sys.stderr)
    summary = execute_suite(args, tonight)

    with tempfile.TemporaryDirectory(prefix=f".{out.name}.history-", dir=_parent(out)) as tmp:
        grown = Path(tmp) / "store.sqlite"
        if held.exists():
            with Store.open(held, read_only=True) as published:
                published.export_all(grown)
        with Store.open(args.store, read_only=True) as work, Store.open(grown) as history:
            pool, report, verdict = _judge(history, work, summary, suite.name, settings, held)
            document = {
                "schema": NIGHTLY_SCHEMA,
                "suite": suite.name,
                "night": night,
                "verdict": verdict,
                "pool": pool.describe(),
                "left_out": list(pool.left_out),
                "reasons": _reasons(report) if report else list(summary.failed),
                "check": report.to_dict() if report else None,
            }
            run_id = copy_run(work, summary.run_id, history)
            commit = history.run(run_id)["provenance"].get("git_sha")
            record_night(history, run_id, suite.name, night, verdict, pool.runs, document, commit)
            nights = build_history(history, suite.name, settings.primary, settings.alpha)
            document["drift"] = [d.to_dict() for d in nights.drift]
            document["drifting"] = [d.describe() for d in nights.drifting]

            def writer(store: Store, run: int, staging: Path) -> list[Path]:
                return write_report(store, run, staging, folder=out, history=nights)

            paths = publish(
                history,
                run_id,
                out,
                writer=writer,
                export=lambda store, _, dest: store.export_all(dest),
            )
    document["published"] = str(out)
    _print(args, document, report, pool, out, paths)
    if verdict in ("first", "incomplete"):
        code = EXIT_JOBS_FAILED if verdict == "incomplete" else EXIT_OK
    else:
        code = CHECK_EXIT[verdict]
    return EXIT_REGRESSION if code == EXIT_OK and nights.drifting else code


def _judge(history: Store, work: Store, summary, suite: str, settings, held: Path):
    """(pool, check report or None, verdict) of the night's run against the trusted earlier
    nights; a night with nothing to compare with is ``first`` (``incomplete`` if jobs failed)."""
    pool = baseline_pool(history, suite, work, summary.run_id)
    if pool.baseline is None:
        return pool, None, "first" if not summary.failed else "incomplete"
    candidate = (work, summary.run_id)
    report = compare_runs((history, pool.baseline), candidate, settings, pool=pool.runs)
    pooled = f" + {len(pool.runs) - 1} pooled" if len(pool.runs) > 1 else ""
    report.baseline = f"{held}:{pool.baseline}{pooled}"  # the published path, not the copy's
    return pool, report, report.verdict


def _reasons(report) -> list[str]:
    """Why a night did not pass: the check's reasons, or what it could not decide."""
    return report.reasons or [f"undecided: {c.describe()}" for c in report.undecided]


def _parent(out: Path) -> Path:
    parent = out.resolve().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StorageError(f"cannot create {parent} for --out {out}: {e.strerror}") from None
    return parent


def _print(args, document: dict, report, pool, out: Path, paths: list[Path]) -> None:
    if args.json == "-":
        print(json.dumps(document, indent=1))
        return
    lines = [f"night {document['night']} of suite {document['suite']!r}: {pool.describe()}"]
    lines += [f"  left out: {reason}" for reason in pool.left_out]
    if report is not None:
        lines += ["", format_report(report)]
    elif document["verdict"] == "first":
        lines.append("FIRST NIGHT: nothing to compare with; it is the baseline from now on")
    else:
        lines.append("INCOMPLETE: jobs failed on a night with nothing to compare them with")
        lines += [f"  - {r}" for r in document["reasons"]]
    lines += [f"slow drift: {d}" for d in document["drifting"]] or ["slow drift: none found"]
    lines.append(f"published night {document['night']} to {out}/ ({len(paths)} files)")
    print("\n".join(lines))
    if args.json:
        Path(args.json).write_text(json.dumps(document, indent=1) + "\n")
