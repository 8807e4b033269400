"""Forward+backward speed of every registered layer, as ratios to BN and GN measured in this run.

Two measurements:
  1. each layer alone at the four ResNet-18 (CIFAR stem) activation shapes;
  2. one full training step (forward, backward, SGD update) with each layer: ResNet-18 (CIFAR
     stem, 3×32×32), or with ``--model resnet20-w8`` the suites' own network (ResNet-20 width 8,
     groups 4, 1×28×28), whose small activations make a GPU step launch-bound.
``--count-ops`` prints instead the ATen ops of one call of every layer (forward, backward, and
how many of them launch a kernel): on a GPU each launch costs ~5 µs whatever the tensor size.

A layer is NAME[-VARIANT][:IMPL], e.g. gnplus, gnplus-bn_first:kernels, cn:fused, gnplus:compiled.

Usage:
  python benchmarks/norm_speed.py                      # CPU, batch 32
  python benchmarks/norm_speed.py --count-ops
  python benchmarks/norm_speed.py --device cuda --batch 128 --channels-last --bf16
  python benchmarks/norm_speed.py --norms gnplus:fused gnplus:kernels --compile
  python benchmarks/norm_speed.py --device cuda --model resnet20-w8 --batch 8 --norms gnplus:triton
Absolute times are printed for context only; compare the ratios.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable

import torch
import torchvision
from torch import nn

from robustbench_norm.norms import convert_norms, make_norm, norm_options
from robustbench_norm.norms.op_count import count_ops, launches
from robustbench_norm.training.models import build_model

RESNET18_SHAPES = [(64, 32, 32), (128, 16, 16), (256, 8, 8), (512, 4, 4)]
#: every layer, and each moment layer (GN+ variants, BGN, CN) on both of its eager paths
DEFAULT_LAYERS = [
    "bn", "gn", "ln", "in", "evonorm_s0",
    *(f"{base}:{impl}" for base in ("gnplus", "gnplus-gn_first", "gnplus-bn_first", "bgn", "cn")
      for impl in ("fused", "kernels")),
]  # fmt: skip


def timed_round_robin(
    steps: dict[str, Callable[[], None]], device: torch.device, repeats: int, warmup: int = 2
) -> dict[str, float]:
    """Median wall time (ms) of each step, timed in interleaved rounds.

    Interleaving puts every layer under the same machine conditions (frequency, other load,
    allocator state), so the ratios stay meaningful on a noisy shared machine.
    """
    for _ in range(warmup):
        for fn in steps.values():
            fn()
    samples: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repeats):
        for name, fn in steps.items():
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize()
            samples[name].append((time.perf_counter() - start) * 1e3)
    return {name: statistics.median(s) for name, s in samples.items()}


def parse(spec: str, groups: int = 32) -> tuple[str, dict]:
    """NAME[-VARIANT][:IMPL] → (registry name, options)."""
    name, _, impl = spec.partition(":")
    name, _, variant = name.partition("-")
    options = {"groups": groups} if "groups" in (norm_options(name) or []) else {}
    options.update({"impl": impl} if impl else {}, **({"variant": variant} if variant else {}))
    return name, options


def layer_step(spec: str, batch: int, args, device) -> Callable[[], None]:
    name, options = parse(spec)
    layers, inputs, grads = [], [], []
    for c, h, w in RESNET18_SHAPES:
        layer = make_norm(name, c, **options).to(device)
        x = torch.randn(batch, c, h, w, device=device, dtype=args.dtype)
        if args.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        layers.append(layer)
        inputs.append(x.requires_grad_())
        grads.append(torch.randn_like(x))

    def step() -> None:
        for layer, x, g in zip(layers, inputs, grads, strict=True):
            layer(x).backward(g)

    return step


def cifar_resnet18(spec: str) -> nn.Module:
    model = torchvision.models.resnet18(num_classes=10)
    model.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    model.maxpool = nn.Identity()
    name, options = parse(spec)
    return convert_norms(model, name, **options)


def suite_resnet20(spec: str) -> nn.Module:
    """The suites' network: ResNet-20 width 8 on 1×28×28 images, 4 groups per grouped layer."""
    name, options = parse(spec, groups=4)
    return build_model("resnet20", name, num_classes=10, in_channels=1, width=8, **options)


MODELS = {"resnet18": (cifar_resnet18, (3, 32, 32)), "resnet20-w8": (suite_resnet20, (1, 28, 28))}


def model_step(spec: str, batch: int, args, device, compiled: bool = False) -> Callable[[], None]:
    build, shape = MODELS[args.model]
    model = build(spec).to(device)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if compiled:
        model = torch.compile(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.rand(batch, *shape, device=device)
    if args.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,), device=device)
    amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with amp:
            loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()

    return step


def report(title: str, times: dict[str, float]) -> None:
    bn, gn = times["bn"], times["gn"]
    print(f"\n{title}")
    print(f"{'layer':<26}{'ms':>10}{'÷ BN':>8}{'÷ GN':>8}")
    for name, ms in sorted(times.items(), key=lambda kv: kv[1]):
        print(f"{name:<26}{ms:>10.2f}{ms / bn:>8.2f}{ms / gn:>8.2f}")


def report_ops(specs: list[str]) -> None:
    """Ops per call at 8×64×8×8 (groups 32), training mode, eager."""
    print("\nATen ops per call (8×64×8×8, groups 32, training): all ops / kernel launches")
    print(f"{'layer':<26}{'forward':>12}{'backward':>12}")
    x = torch.randn(8, 64, 8, 8)
    for spec in specs:
        name, options = parse(spec)
        if options.get("impl") == "compiled":
            continue  # one compiled graph: its op count is the compiler's business
        ops = count_ops(make_norm(name, 64, **options), x)
        f, b = ops["forward"], ops["backward"]
        fwd, bwd = f"{sum(f.values())} / {launches(f)}", f"{sum(b.values())} / {launches(b)}"
        print(f"{spec:<26}{fwd:>12}{bwd:>12}")


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--batch", type=int, default=None, help="default: 32 on CPU, 128 on CUDA")
    p.add_argument("--repeats", type=int, default=None, help="timed repetitions (median reported)")
    p.add_argument("--model", choices=sorted(MODELS), default="resnet18", help="for the step")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast for the model step")
    p.add_argument("--float64", action="store_true", help="layers alone in float64")
    p.add_argument("--norms", nargs="*", default=None, help="subset of layers (BN, GN always run)")
    p.add_argument("--count-ops", action="store_true", help="print ATen ops per call and exit")
    p.add_argument(
        "--compile", action="store_true", help="also time each model under torch.compile"
    )
    args = p.parse_args()
    device = torch.device(args.device)
    batch = args.batch or (128 if device.type == "cuda" else 32)
    repeats = args.repeats or (50 if device.type == "cuda" else 20)
    args.dtype = torch.float64 if args.float64 else torch.float32
    names = args.norms or DEFAULT_LAYERS
    names = ["bn", "gn"] + [n for n in names if n not in ("bn", "gn")]
    if args.count_ops:
        report_ops(names)
        return

    where = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or platform.machine()
    )
    print(
        f"torch {torch.__version__} on {device.type} ({where}), {torch.get_num_threads()} threads, "
        f"batch {batch}, channels_last={args.channels_last}, bf16={args.bf16}, median of {repeats}"
    )
    torch.manual_seed(0)
    report(
        "layers alone, forward+backward over the four ResNet-18 shapes",
        timed_round_robin({n: layer_step(n, batch, args, device) for n in names}, device, repeats),
    )
    steps = {n: model_step(n, batch, args, device) for n in names}
    if args.compile:
        steps |= {f"{n} compiled": model_step(n, batch, args, device, True) for n in names}
    report(
        f"{args.model} training step",
        timed_round_robin(steps, device, max(3, repeats // 2)),
    )


if __name__ == "__main__":
    main()
