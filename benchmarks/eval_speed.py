"""Evaluation throughput: clean, noise, cached corruptions, PGD-10, and corruption generation.

Images/s per workload and layer, with ratios to BN in the same run (same model, only the norm
differs) and, for corruption generation, the speed-up of using every core over one.

    python benchmarks/eval_speed.py [--images 1000] [--device cpu]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import torch

from robustbench_norm.data import load_split
from robustbench_norm.evaluation import CleanSpec, CorruptionSpec, NoiseSpec, evaluate
from robustbench_norm.perturb.attacks import AttackSpec
from robustbench_norm.perturb.corruptions import ALL, CorruptionCache, corrupt_images
from robustbench_norm.training.models import build_model

NORMS = {"bn": {}, "gn": {"groups": "auto"}, "gnplus": {"groups": "auto"}}


def rate(fn, images: int, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return images / statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--images", type=int, default=1000)
    p.add_argument("--attack-images", type=int, default=200)
    p.add_argument("--generation-images", type=int, default=200)
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    split = load_split("fashion-mnist-mini", "test").subset(args.images)
    cores = os.cpu_count() or 1
    print(
        f"resnet20 width 16, fashion-mnist-mini test, {args.device}, "
        f"{torch.get_num_threads()} torch threads, {cores} cores"
    )

    with tempfile.TemporaryDirectory() as cache_dir:
        corruption = CorruptionSpec(names=("fog", "contrast"), severities=(3,))
        CorruptionCache(cache_dir).ensure(split, [("fog", 3), ("contrast", 3)], quiet=True)
        work = {
            "clean eval": (CleanSpec(), len(split)),
            "noise eval (4 σ)": (NoiseSpec(), 5 * len(split)),
            "cached corruption eval (2)": (corruption, 3 * len(split)),
            "PGD-10 (5 ε)": (AttackSpec("pgd_linf", steps=10), args.attack_images),
        }
        results: dict[str, dict[str, float]] = {w: {} for w in work}
        for norm, options in NORMS.items():
            model = build_model("resnet20", norm, 10, 1, **options).eval()
            for name, (spec, count) in work.items():
                target = split if "PGD" not in name else split.subset(args.attack_images)

                def run(spec=spec, target=target, model=model):
                    evaluate(model, target, spec, device=args.device, cache_dir=cache_dir)

                results[name][norm] = rate(run, count, repeats=1 if "PGD" in name else 3)

    print(
        f"\n{'workload':<28}"
        + "".join(f"{n + ' img/s':>14}" for n in NORMS)
        + f"{'GN÷BN':>8}{'GN+÷BN':>8}"
    )
    for name, by_norm in results.items():
        cells = "".join(f"{by_norm[n]:>14.0f}" for n in NORMS)
        # time ratios: > 1 means slower than BN
        gn, gnplus = by_norm["bn"] / by_norm["gn"], by_norm["bn"] / by_norm["gnplus"]
        print(f"{name:<28}{cells}{gn:>8.2f}{gnplus:>8.2f}")
    print("(counts include the clean pass evaluate() always makes; ratios are time ÷ BN's time)")

    gen = split.subset(args.generation_images)
    print(f"\ncorruption generation, severity 3, {len(gen)} images (one process):")
    per = {}
    for name in ALL:
        start = time.perf_counter()
        corrupt_images(gen.images, name, 3, seed=0)
        per[name] = len(gen) / (time.perf_counter() - start)
    for name, r in sorted(per.items(), key=lambda kv: kv[1]):
        print(f"  {name:<20}{r:>9.0f} img/s  {1000 / r:>6.2f} ms/img")
    one = len(ALL) * len(gen) / sum(len(gen) / r for r in per.values())
    with tempfile.TemporaryDirectory() as cache_dir:
        start = time.perf_counter()
        CorruptionCache(cache_dir).ensure(gen, [(c, 3) for c in ALL], workers=cores, quiet=True)
        all_cores = len(ALL) * len(gen) / (time.perf_counter() - start)
    print(
        f"  all 19 on 1 process: {one:.0f} img/s; on {cores} worker processes: "
        f"{all_cores:.0f} img/s ({all_cores / one:.2f}× speed-up, start-up included)"
    )


if __name__ == "__main__":
    main()
