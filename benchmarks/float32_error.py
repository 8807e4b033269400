"""How far a trained model's float32 logits are from the same weights in float64.

Training normalizes with batch statistics, so the float32 error that matters is in train mode;
eval mode uses the running ones. A one-pass variance (E[x²] − E[x]²) loses precision where
activations have a large mean relative to their spread, which float64 makes visible.

    python benchmarks/float32_error.py results/checkpoints/*/cpu-1threads/final.pt \
        --images 512 --threads 1 --layout channels_last

prints, per checkpoint (its norm, batch size and budget), the largest |Δlogit| in eval and
train mode and the share of predictions that agree.
"""

from __future__ import annotations

import argparse
import copy

import torch

from robustbench_norm.data import load_split
from robustbench_norm.training import load_trained


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkpoints", nargs="+", help="final.pt files")
    parser.add_argument("--images", type=int, default=512, help="test images (one batch)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--layout", choices=["channels_last", "contiguous_format"],
                        default="channels_last")  # fmt: skip
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    layout = getattr(torch, args.layout)
    print(f"{args.images} test images, {args.threads} thread(s), {args.layout}")
    for path in args.checkpoints:
        model, payload = load_trained(path, torch.device("cpu"))
        spec = payload["spec"]  # the TrainSpec as a dict
        x, _ = load_split(spec["dataset"], "test").subset(args.images).tensors()
        reference = copy.deepcopy(model).double()
        for mode in ("eval", "train"):
            getattr(model, mode)()
            getattr(reference, mode)()
            with torch.no_grad():
                want = reference(x.double())
                got = model(x.contiguous(memory_format=layout)).double()
            agree = (want.argmax(1) == got.argmax(1)).float().mean().item()
            print(
                f"{spec['norm']:<8} bs {spec['batch_size']:<3} {spec['images'] or '':>8} {mode:<5} "
                f"max |Δlogit| {(want - got).abs().max().item():.2e}, agree {agree:.4f}"
            )


if __name__ == "__main__":
    main()
