"""Gradients under torch.compile against eager, on the device (TF32 off, float32): each moment
layer compiled alone, and a whole ResNet-18 with GN+ and with BN. A custom autograd.Function
traced by dynamo gave all-zero gradients on CUDA (torch 2.11, H100); compiled code now runs the
functional compositions (norms/kernels.py). Prints the worst relative error and how many
parameters got an all-zero gradient. Torch only."""

import sys
from functools import partial
from pathlib import Path

import torch
import torchvision

from robustbench_norm import make_norm
from robustbench_norm.norms import convert_norms

DEV = sys.argv[1] if len(sys.argv) > 1 else "cuda"
torch.backends.cudnn.allow_tf32 = False
torch.backends.cuda.matmul.allow_tf32 = False


def compare(build, x, target):
    """Worst relative gradient error (compiled vs eager) over x and the parameters."""
    grads = {}
    for compiled in (False, True):
        torch.manual_seed(0)
        module = build().to(DEV)
        run = torch.compile(module) if compiled else module
        xi = x.clone().requires_grad_(True)
        out = run(xi)
        loss = (
            torch.nn.functional.cross_entropy(out, target)
            if out.dim() == 2
            else (out * torch.linspace(-1, 1, out.numel(), device=DEV).view_as(out)).sum()
        )
        loss.backward()
        grads[compiled] = {"x": xi.grad, **{n: p.grad for n, p in module.named_parameters()}}
    errors = [
        (float((grads[True][n] - g).abs().max() / g.abs().max().clamp_min(1e-30)), n)
        for n, g in grads[False].items()
    ]
    zero = sum(float(g.abs().max()) == 0 for g in grads[True].values())
    worst = max(errors)
    return f"worst rel err {worst[0]:.1e} ({worst[1]}), {zero} all-zero of {len(errors)}"


torch.manual_seed(0)
x = torch.randn(16, 64, 16, 16, device=DEV) * 2 + 3
for name, options in [
    ("gnplus", {}), ("gnplus", {"variant": "gn_first"}), ("gnplus", {"variant": "bn_first"}),
    ("cn", {}), ("bgn", {}),
]:  # fmt: skip
    label = f"{name} {options.get('variant', '')}"
    layer = partial(make_norm, name, 64, groups=32, **options)
    print(f"layer {label:16s}", compare(layer, x, None), flush=True)
xb = torch.rand(32, 3, 32, 32, device=DEV)
yb = torch.arange(32, device=DEV) % 10
for norm in ("gnplus", "bn"):

    def build(norm=norm):
        model = torchvision.models.resnet18(num_classes=10)
        return convert_norms(model, norm, **({} if norm == "bn" else {"groups": 32}))

    print(f"resnet18 {norm:6s}", compare(build, xb, yb), flush=True)

if "--time" in sys.argv:  # the compiled step's speed, as norm_speed.py measures it
    sys.path.insert(0, str(Path(__file__).parents[1]))
    from norm_speed import cifar_resnet18, timed_round_robin

    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
    xb = torch.rand(128, 3, 32, 32, device=DEV).contiguous(memory_format=torch.channels_last)
    yb = torch.randint(0, 10, (128,), device=DEV)
    steps = {}
    for spec, compiled in (("bn", False), ("bn", True), ("gnplus", False), ("gnplus", True)):
        model = cifar_resnet18(spec).to(DEV).to(memory_format=torch.channels_last)
        run = torch.compile(model) if compiled else model
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

        def step(run=run, opt=opt):
            opt.zero_grad(set_to_none=True)
            with torch.autocast(DEV, dtype=torch.bfloat16):
                loss = torch.nn.functional.cross_entropy(run(xb), yb)
            loss.backward()
            opt.step()

        steps[f"{spec}{' compiled' if compiled else ''}"] = step
    times = timed_round_robin(steps, torch.device(DEV), 20)
    for name, ms in times.items():
        print(f"step {name:16s} {ms:7.2f} ms  {ms / times['bn']:.2f}× BN eager")
