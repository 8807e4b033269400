"""Calibrate the regression gate on stored runs: A/A false-alarm rate and power.

Needs stores holding several runs of unchanged code per norm (e.g. the smoke suite with six
seeds, run at two thread counts) and, for power, a store of a planted regression (GN+ with λ
frozen at 1). Builds them with (about 25 minutes on 2 cores):

    sed 's/^seeds = .*/seeds = [0, 1, 2, 3, 4, 5]/' suites/smoke.toml > /tmp/smoke6.toml
    robustbench-norm run /tmp/smoke6.toml --store /tmp/t2.sqlite
    OMP_NUM_THREADS=1 robustbench-norm run /tmp/smoke6.toml --store /tmp/t1.sqlite
    # planted: options = { groups = 4, learn_lambda = false, lambda_init = 1.0 } for gnplus
    robustbench-norm run /tmp/planted6.toml --store /tmp/planted.sqlite

then:

    python benchmarks/gate_calibration.py --aa /tmp/t2.sqlite /tmp/t1.sqlite \
        --planted /tmp/planted.sqlite

It prints, for 2 and 3 runs per side:
* the new gate's A/A rate (a split flagged "worse" anywhere; must be ≤ α);
* the same for baseline and candidate from *different thread counts* (the cross-machine case);
* the old gate's A/A rate: a paired bootstrap over test examples with seeds matched, no
  multiplicity control (what ``check`` did until this release), for comparison;
* the power against the planted regression.

``--simulate`` needs no store: it calibrates the pooled baseline of ``nightly`` on runs drawn
with the smoke suite's measured means and seed spreads (calibration.SMOKE_SPREAD) and the
planted regression's (GN+ 0.476 ± 0.102): the A/A rate and the detection rate of one night of
2 runs against 1, 3 and 6 nights pooled.
"""

from __future__ import annotations

import argparse

import numpy as np

from robustbench_norm.reporting.calibration import (
    example_bootstrap_flag_rate,
    flag_rate,
    merge,
    runs_from_store,
    simulated_runs,
)
from robustbench_norm.reporting.check import GateSettings
from robustbench_norm.suites.store import Store

PRIMARY = ("clean/accuracy", "noise/mean_accuracy", "corruption/mean_corruption_accuracy")


def load(ref: str) -> tuple[dict, dict]:
    """(runs per norm, per-example scores per norm) of a store's latest (or named) run."""
    path, _, run = ref.partition(":")
    with Store.open(path, read_only=True) as store:
        run_id = store.resolve_run(run or "latest")
        runs = runs_from_store(store, run_id, PRIMARY)
        scores: dict[str, list] = {}
        for job in store.jobs_of_run(run_id):
            if job["status"] == "done":
                flags = store.flags_of_job(job["id"])
                scores.setdefault(job["norm"], []).append(
                    {m: _example_scores(flags, m) for m in PRIMARY}
                )
    return runs, scores


def _example_scores(flags: dict, metric: str) -> np.ndarray:
    """Per-example scores of a primary metric, rebuilt from flags as the old gate did."""
    family = metric.split("/")[0]
    keep = [f for (fam, _, p), f in flags.items() if fam == family]
    if metric == "noise/mean_accuracy":  # σ = 0 is clean, not noise
        keep = [f for (fam, _, p), f in flags.items() if fam == "noise" and p]
    return np.mean([f.astype(float) for f in keep], 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--aa", nargs="+", default=None, metavar="STORE[:RUN]")
    parser.add_argument("--simulate", action="store_true", help="pooled baselines, no store")
    parser.add_argument("--per-night", type=int, default=2, help="runs per night (--simulate)")
    parser.add_argument("--planted", default=None, metavar="STORE[:RUN]")
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--splits", type=int, default=2000)
    parser.add_argument("--old-splits", type=int, default=200)
    args = parser.parse_args()

    settings = GateSettings(primary=PRIMARY, alpha=args.alpha)
    if args.simulate:
        simulate_pooled(settings, args.per_night, args.splits)
        return
    if not args.aa:
        parser.error("--aa STORE… (or --simulate)")
    loaded = [load(ref) for ref in args.aa]
    pooled = merge(*(runs for runs, _ in loaded))
    pooled_scores = merge(*(scores for _, scores in loaded))
    sizes = {norm: len(r) for norm, r in pooled.items()}
    print(
        f"A/A pool: {sizes} runs of unchanged code from {len(args.aa)} store(s); α = {args.alpha}"
    )
    for norm, runs in pooled.items():
        spread = ", ".join(f"{m} {np.std([r[m] for r in runs], ddof=1):.4f}" for m in PRIMARY)
        print(f"  seed spread (sd) {norm}: {spread}")
    print(f"\n{'runs/side':>9}  {'new gate A/A':>12}  {'cross-threads':>13}  {'old gate A/A':>12}")
    for k in (2, 3):
        aa = flag_rate(pooled, None, k, settings, args.splits)
        cross = (
            f"{flag_rate(loaded[0][0], loaded[1][0], k, settings, args.splits):.3f}"
            if len(loaded) > 1
            else "—"
        )
        old = example_bootstrap_flag_rate(pooled_scores, k, args.alpha, args.old_splits)
        print(f"{k:>9}  {aa:>12.3f}  {cross:>13}  {old:>12.3f}")
    if args.planted:
        planted, _ = load(args.planted)
        # the full check: every norm, GN+ from the planted store, the others unchanged (from
        # the second A/A store when there is one, so that both sides are independent draws)
        base = loaded[0][0]
        cand = {**(loaded[1][0] if len(loaded) > 1 else {}), "gnplus": planted["gnplus"]}
        base = {n: r for n, r in base.items() if n in cand}
        most = min(len(r) for r in (*base.values(), *cand.values()))
        print(f"\npower against the planted regression (GN+ λ frozen at 1), {len(base)} norms:")
        for k in range(2, most + 1):
            print(f"  {k} runs/side: {flag_rate(base, cand, k, settings, args.splits):.3f}")


def simulate_pooled(settings: GateSettings, per_night: int, splits: int) -> None:
    """A/A and planted-regression rates of one night against k nights pooled."""
    rng = np.random.default_rng(0)
    runs = simulated_runs(400, rng)
    planted = {**simulated_runs(400, rng), "gnplus": [
        {m: 0.476 + 0.102 * rng.standard_normal() for m in PRIMARY} for _ in range(400)
    ]}  # fmt: skip
    print(f"simulated: smoke spreads, {per_night} runs a night, α = {settings.alpha}, "
          f"{splits} splits per cell")  # fmt: skip
    print(f"{'nights pooled':>13}  {'baseline runs':>13}  {'A/A false alarms':>16}  "
          f"{'planted regression caught':>25}")  # fmt: skip
    for k in (1, 2, 3, 6, 10):
        size = k * per_night
        aa = flag_rate(runs, None, per_night, settings, splits, seed=k, base_size=size)
        power = flag_rate(runs, planted, per_night, settings, splits, seed=100 + k, base_size=size)
        print(f"{k:>13}  {size:>13}  {aa:>16.3f}  {power:>25.3f}")


if __name__ == "__main__":
    main()
