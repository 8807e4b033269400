"""A quick, honest look at every layer: measured properties, nothing asserted in advance."""

from __future__ import annotations

import torch

from robustbench_norm.norms import available, make_norm

GROUPED = {"gn", "gnplus", "bgn", "cn", "evonorm_s0"}


def run_layer_demo(channels: int = 32, seed: int = 0) -> list[dict]:
    """Train-mode output moments and eval-mode batch independence of every registered layer.

    Batch independence is the property the whole benchmark leans on: in eval mode a sample's
    prediction must not depend on which other samples share its batch.
    """
    torch.manual_seed(seed)
    x = torch.randn(16, channels, 8, 8) * 3 + 2
    rows = []
    print(f"{'layer':<12}{'train mean':>12}{'train std':>11}{'eval: alone vs batch':>22}{'λ':>8}")
    for name in available():
        layer = make_norm(name, channels, **({"groups": 8} if name in GROUPED else {}))
        y = layer.train()(x)
        layer.eval()
        with torch.no_grad():
            gap = (layer(x[:1]) - layer(x)[:1]).abs().max().item()
        lam = getattr(layer, "mixing_weight", None)
        row = {
            "layer": name,
            "train_mean": y.mean().item(),
            "train_std": y.std().item(),
            "eval_gap": gap,
            "lambda": None if lam is None else lam.mean().item(),
        }
        rows.append(row)
        lam_text = "" if lam is None else f"{row['lambda']:.3f}"
        print(
            f"{name:<12}{row['train_mean']:>12.4f}{row['train_std']:>11.4f}"
            f"{gap:>22.2e}{lam_text:>8}"
        )
    return rows
