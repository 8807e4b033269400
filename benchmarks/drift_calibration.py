"""Calibrate the slow-drift test (reporting/drift.py) on simulated nightly histories.

A history is 30 nights of the smoke suite's three norms × three primary metrics, 2 runs a
night, drawn with the measured means and seed spreads (calibration.SMOKE_SPREAD). The test runs
every night from night 10 on (21 looks), as `nightly` runs it. Printed:
* the share of null histories (unchanged code) with any alarm in 30 nights (must be ≤ α);
* for a planted drift (GN+ loses d a night from night 10 on), the share found by night 30 and
  the median night of the first alarm.

    python benchmarks/drift_calibration.py --histories 1000
"""

from __future__ import annotations

import argparse

import numpy as np

from robustbench_norm.reporting.calibration import first_drift_alarm, simulated_history
from robustbench_norm.reporting.drift import HORIZON, WINDOW, look_level


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--histories", type=int, default=1000)
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--per-night", type=int, default=2)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(
        f"window {WINDOW} nights, horizon {HORIZON} nights, per-look level "
        f"{look_level(args.alpha):.4f}, {args.per_night} runs a night, {args.histories} histories"
    )
    null = [
        first_drift_alarm(simulated_history(HORIZON, args.per_night, rng), args.alpha)
        for _ in range(args.histories)
    ]
    rate = np.mean([a is not None for a in null])
    print(f"null: any false alarm in {HORIZON} nights: {rate:.3f} (α = {args.alpha})")
    for drift in (0.001, 0.002, 0.004, 0.008):
        found = [
            first_drift_alarm(
                simulated_history(HORIZON, args.per_night, rng, {"gnplus": drift}, 10), args.alpha
            )
            for _ in range(args.histories // 2)
        ]
        hits = [a for a in found if a is not None]
        median = f"{np.median(hits):.0f}" if hits else "—"
        print(
            f"GN+ −{drift} a night from night 10 ({drift * 20:.3f} by night 30): found "
            f"{len(hits) / len(found):.3f}, median first alarm at night {median}"
        )


if __name__ == "__main__":
    main()
