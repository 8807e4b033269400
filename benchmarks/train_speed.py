"""Training time per step of each layer and execution variant, as ratios to BN's plain float32
step measured in the same run.

Trains ResNet-20 on the embedded Fashion-MNIST subset per (batch size, variant, layer), in
interleaved rounds, each in a fresh work directory (no cache hits), and reports the median
steady-state milliseconds per step (the data path included: augmentation and batching are part
of a step). Variants (issue 18, "afford it on 2 cores"):

- ``fp32``: float32, NCHW: what the suites run;
- ``cl``: float32, channels_last: other summation order (a different draw), same precision;
- ``bf16-cl``: bf16 autocast + channels_last: a change of the experiment (other numbers);
- ``compile``: ``torch.compile`` of the model, float32 NCHW;
- ``noise``, ``cl-noise``: the standard suite's activation-noise regularizer (Santurkar et
  al.'s ``time_varying``) in float32 NCHW and channels_last: drawing noise has a layout cost.

    python benchmarks/train_speed.py [--rounds 3] [--batch-sizes 8 64] [--threads 1]
        [--variants fp32 cl bf16-cl] [--norms bn gn gnplus none] [--width 8] [--steps 60]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile

import torch

from robustbench_norm.norms import norm_options
from robustbench_norm.training import TrainSpec, train

VARIANTS = {
    "fp32": {},
    "cl": {"channels_last": True},
    "bf16-cl": {"channels_last": True, "precision": "bf16"},
    "compile": {"compile": True},
    "noise": {"perturbation": {"mode": "time_varying"}},
    "cl-noise": {"channels_last": True, "perturbation": {"mode": "time_varying"}},
}


def step_ms(norm: str, batch_size: int, variant: str, args) -> float:
    """Milliseconds per training step in steady state: the difference between a run of 2n and
    one of n steps, over n (the first steps' one-off costs — thread pools, oneDNN primitives,
    compilation — cancel)."""
    options = {"groups": 4} if "groups" in (norm_options(norm) or []) else {}
    walls = []
    for steps in (args.steps, 2 * args.steps):
        spec = TrainSpec(
            model="resnet20", width=args.width, norm=norm, norm_options=options,
            batch_size=batch_size, steps=steps, lr=0.1 * batch_size / 128, **VARIANTS[variant],
        )  # fmt: skip
        with tempfile.TemporaryDirectory() as tmp:
            walls.append(train(spec, tmp, device=args.device, quiet=True).wall_seconds)
    return 1000 * (walls[1] - walls[0]) / args.steps


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--norms", nargs="+", default=["bn", "gn", "gnplus", "none"])
    p.add_argument("--variants", nargs="+", default=["fp32", "cl", "bf16-cl"], choices=VARIANTS)
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 64])
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--width", type=int, default=8)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    norms = ["bn", "gn"] + [n for n in args.norms if n not in ("bn", "gn")]
    variants = ["fp32"] + [v for v in args.variants if v != "fp32"]
    times: dict[tuple, list[float]] = {}
    for _ in range(args.rounds):  # interleaved: a slow minute of the machine hits every cell
        for bs in args.batch_sizes:
            for variant in variants:
                for norm in norms:
                    times.setdefault((bs, variant, norm), []).append(
                        step_ms(norm, bs, variant, args)
                    )
    print(
        f"resnet20 width {args.width}, steps {args.steps}→{2 * args.steps} of fashion-mnist-mini, "
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch "
        f"thread(s), torch {torch.__version__}; median of {args.rounds} interleaved rounds"
    )
    print(
        f"{'batch':>5}  {'variant':<9}{'layer':<9}{'ms/step':>9}{'÷ BN fp32':>11}{'÷ GN fp32':>11}"
    )
    for bs in args.batch_sizes:
        bn = statistics.median(times[(bs, "fp32", "bn")])
        gn = statistics.median(times[(bs, "fp32", "gn")])
        for variant in variants:
            for norm in norms:
                ms = statistics.median(times[(bs, variant, norm)])
                print(f"{bs:>5}  {variant:<9}{norm:<9}{ms:>9.1f}{ms / bn:>11.2f}{ms / gn:>11.2f}")
    print("÷ BN fp32, ÷ GN fp32: the cell's time per step divided by BN's and GN's float32 NCHW")
    print("step at that batch size (higher is slower)")


if __name__ == "__main__":
    main()
