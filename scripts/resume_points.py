"""Pack the resume points of a run's unfinished jobs into one tar, to carry them to a fresh machine.

A sitting can stop at any moment, and a fresh machine has only what was committed. The store
holds every finished job. A job in flight has either a ``last.pt`` (training, written at every
epoch) or a ``final.pt`` that no finished job claims yet (trained, evaluating). Both must travel:
without the ``final.pt``, the next sitting would train the job again from the start. The
``final.pt`` of a finished job stays behind, because the store is its record.

    python scripts/resume_points.py results runs/standard-resume.tar \
        --stores results/standard.sqlite results/curves-2m.sqlite

Unpack with ``tar -C results -xf runs/standard-resume.tar``.
"""

from __future__ import annotations

import argparse
import sqlite3
import tarfile
from pathlib import Path


def claimed(stores: list[Path]) -> set[Path]:
    """The checkpoints that finished jobs in these stores point to."""
    out = set()
    for store in stores:
        with sqlite3.connect(f"file:{store}?mode=ro", uri=True) as conn:
            rows = conn.execute("SELECT checkpoint FROM jobs WHERE status = 'done'").fetchall()
        conn.close()
        out |= {Path(p).resolve() for (p,) in rows if p}
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("workdir", type=Path, help="the run's --workdir (holds checkpoints/)")
    p.add_argument("tar", type=Path, help="the tar to write (replaced)")
    p.add_argument("--stores", type=Path, nargs="+", required=True,
                   help="every store with finished jobs under workdir")  # fmt: skip
    args = p.parse_args(argv)
    done = claimed(args.stores)
    points = sorted(args.workdir.glob("checkpoints/*/*/last.pt")) + sorted(
        f for f in args.workdir.glob("checkpoints/*/*/final.pt") if f.resolve() not in done
    )
    with tarfile.open(args.tar, "w") as tar:
        for f in points:
            tar.add(f, arcname=str(f.relative_to(args.workdir)))
    print(f"{args.tar}: {len(points)} resume point(s)")
    for f in points:
        print(f"  {f.relative_to(args.workdir)}")


if __name__ == "__main__":
    main()
