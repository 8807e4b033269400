"""Training throughput (images/s) of each layer, as ratios to BN and GN measured in this run.

Trains ResNet-20 (width 16) on the embedded Fashion-MNIST subset for one epoch per layer, in
interleaved rounds, each round in a fresh work directory (no cache hits).

    python benchmarks/train_speed.py [--rounds 2] [--norms bn gn gnplus] [--device cpu]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile

import torch

from robustbench_norm.norms import norm_options
from robustbench_norm.train import TrainSpec, train


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--norms", nargs="+", default=["bn", "gn", "gnplus"])
    p.add_argument("--device", default="cpu")
    p.add_argument("--model", default="resnet20")
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=128)
    args = p.parse_args()
    names = ["bn", "gn"] + [n for n in args.norms if n not in ("bn", "gn")]
    rates: dict[str, list[float]] = {n: [] for n in names}
    for _ in range(args.rounds):
        for norm in names:
            spec = TrainSpec(
                model=args.model,
                width=args.width,
                norm=norm,
                norm_options={"groups": "auto"} if "groups" in (norm_options(norm) or []) else {},
                batch_size=args.batch_size,
                epochs=1,
            )
            with tempfile.TemporaryDirectory() as tmp:
                result = train(spec, tmp, device=args.device, quiet=True)
            rates[norm].append(result.steps * args.batch_size / result.wall_seconds)
    print(
        f"{args.model} width {args.width}, batch {args.batch_size}, 1 epoch of fashion-mnist-mini "
        f"on {args.device} ({torch.get_num_threads()} threads), median of {args.rounds} rounds"
    )
    bn, gn = statistics.median(rates["bn"]), statistics.median(rates["gn"])
    print(f"{'layer':<12}{'img/s':>9}{'s/epoch':>9}{'÷ BN':>8}{'÷ GN':>8}")
    for norm in names:
        r = statistics.median(rates[norm])
        seconds = 5000 // args.batch_size * args.batch_size / r
        print(f"{norm:<12}{r:>9.0f}{seconds:>9.1f}{bn / r:>8.2f}{gn / r:>8.2f}")
    print("÷ BN, ÷ GN: the layer's time per step divided by BN's and by GN's")


if __name__ == "__main__":
    main()
