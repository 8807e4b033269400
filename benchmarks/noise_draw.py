"""Cost of drawing the activation noise of one ResNet-20 (width 8) training step, per layout.

The ``time_varying`` regularizer draws one N(0, 1) value per activation after every norm layer
(19 tensors, 4.6M values at batch 64 on 28×28 images). In a channels_last run those tensors are
channels_last, and ``randn_like`` fills them through a strided path; ``training/
activation_noise.py`` draws (N, H, W, C) contiguously and permutes instead. This prints the
milliseconds per step of each, interleaved, with the NCHW draw as the reference.

    python benchmarks/noise_draw.py [--batch 64] [--rounds 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from robustbench_norm.training.activation_noise import _standard_normal


def shapes(batch: int) -> list[tuple[int, int, int, int]]:
    """The activations after each of ResNet-20's 19 norm layers (width 8, 28×28 input)."""
    return [(batch, 8, 28, 28)] * 7 + [(batch, 16, 14, 14)] * 6 + [(batch, 32, 7, 7)] * 6


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    nchw = [torch.zeros(s) for s in shapes(args.batch)]
    cl = [x.contiguous(memory_format=torch.channels_last) for x in nchw]
    ways = {
        "NCHW, randn_like": (torch.randn_like, nchw),
        "channels_last, randn_like": (torch.randn_like, cl),
        "channels_last, ours": (_standard_normal, cl),
    }
    times: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(args.rounds):  # interleaved
        for name, (draw, xs) in ways.items():
            start = time.perf_counter()
            for x in xs:
                draw(x)
            times[name].append(1000 * (time.perf_counter() - start))
    ref = statistics.median(times["NCHW, randn_like"])
    print(f"batch {args.batch}, {torch.get_num_threads()} thread(s), torch {torch.__version__}")
    for name, ms in times.items():
        print(f"{name:<28}{statistics.median(ms):8.1f} ms/step{statistics.median(ms) / ref:7.2f}×")


if __name__ == "__main__":
    main()
