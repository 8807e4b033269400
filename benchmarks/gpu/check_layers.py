"""CUDA correctness of the moment layers against a float64 CPU reference: every GN+ variant, CN
and BGN, on every eager path (fused, kernels, triton) and compiled, contiguous and
channels_last, at two input offsets, with the gradients of x, γ and (GN+) θ and the running
mean. Prints one line per case; run by run.sh on a GPU machine (torch only).

    python benchmarks/gpu/check_layers.py [cuda|cpu] [IMPL ...]"""

from __future__ import annotations

import itertools
import sys

import torch

from robustbench_norm import make_norm

DEV = sys.argv[1] if len(sys.argv) > 1 else "cuda"  # "cpu" to try the script itself
ONLY = sys.argv[2:]  # impls to check (default: all)
LAYERS = [("gnplus", {"variant": v}) for v in ("parallel", "gn_first", "bn_first")]
LAYERS += [("cn", {}), ("bgn", {})]


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double().cpu() - b).abs().max() / b.abs().max()).item()


# the compiled cases last: they compile (seconds each), and a timeout should cut only them
IMPLS = ("fused", "kernels", "triton", "compiled")
CASES = itertools.product(IMPLS, LAYERS, (False, True), (3.0, 1000.0))
for impl, (name, options), channels_last, offset in CASES:
    if ONLY and impl not in ONLY:
        continue
    torch.manual_seed(0)
    ref = make_norm(name, 64, groups=32, impl="fused", **options).double()
    lay = make_norm(name, 64, groups=32, impl=impl, **options).to(DEV)
    x = torch.randn(16, 64, 16, 16, dtype=torch.float64) * 2 + offset
    xd = x.float().to(DEV)
    if channels_last:
        xd = xd.contiguous(memory_format=torch.channels_last)
    xd.requires_grad_(True)
    xr = x.clone().requires_grad_(True)
    variant = options.get("variant", "")
    tag = f"{name:6s} {variant:9s} {impl:9s} cl={channels_last!s:5s} off={offset:4.0f}"
    try:
        y, yr = lay(xd), ref(xr)
        g = torch.randn_like(yr)
        y.backward(g.float().to(DEV))
        yr.backward(g)
        lay.eval(), ref.eval()
        ye, yre = lay(xd.detach()), ref(xr.detach())
        layout = y.is_contiguous(memory_format=torch.channels_last) == channels_last
        parts = [
            f"fwd {rel(y, yr):.1e}",
            f"dx {rel(xd.grad, xr.grad):.1e}",
            f"dγ {rel(lay.weight.grad, ref.weight.grad):.1e}",
        ]
        if name == "gnplus":
            parts.append(f"dθ {rel(lay.lambda_logit.grad, ref.lambda_logit.grad):.1e}")
        parts += [
            f"rm {rel(lay.running_mean, ref.running_mean):.1e}",
            f"eval {rel(ye, yre):.1e}",
            f"layout {'ok' if layout else 'CHANGED'}",
        ]
        print(tag, " ".join(parts))
    except Exception as e:  # a crash is a result here: print it and go on
        print(f"{tag} ERROR {type(e).__name__}: {str(e)[:160]}")
