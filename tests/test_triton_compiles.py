"""The Triton kernels compile for a GPU, checked without one: every launch the layers make
(recorded through the interpreter, so the argument types are the real ones) is compiled to a
cubin for sm_90 in a subprocess where TRITON_INTERPRET is off. The interpreter runs the
kernels' Python; only a compiler sees type errors and unsupported constructs."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from robustbench_norm.norms import make_norm

TRITON_TYPES = {
    torch.float32: "fp32", torch.float64: "fp64", torch.bfloat16: "bf16", torch.float16: "fp16",
}  # fmt: skip


@pytest.fixture
def recorder(triton_interpreter, monkeypatch):
    """Record the signature of every kernel launch, then let it run."""
    from robustbench_norm.norms import triton_kernels

    launches: dict[str, dict] = {}

    class Recording:
        def __init__(self, name, kernel):
            self.name, self.kernel = name, kernel

        def __getitem__(self, grid):
            def launch(*args, **constexprs):
                names = self.kernel.arg_names[: len(args)]
                signature = {n: type_of(a) for n, a in zip(names, args, strict=True)}
                shown = {k: f"dtype:{v.name}" if hasattr(v, "name") else v
                         for k, v in constexprs.items()}  # fmt: skip
                entry = {"kernel": self.name, "signature": signature, "constexprs": shown}
                launches[json.dumps(entry, sort_keys=True)] = entry
                return self.kernel[grid](*args, **constexprs)

            return launch

    for name in ("moments_kernel", "backward_sums_kernel", "affine_kernel",
                 "coefficients_kernel", "backward_coefficients_kernel"):  # fmt: skip
        monkeypatch.setattr(triton_kernels, name, Recording(name, getattr(triton_kernels, name)))
    return launches


def type_of(arg) -> str:
    if isinstance(arg, torch.Tensor):
        return "*" + TRITON_TYPES[arg.dtype]
    if isinstance(arg, bool):
        return "i1"
    if isinstance(arg, int):
        return "i32" if -(2**31) <= arg < 2**31 else "i64"
    return "fp32"  # a Python float: what Triton passes it as on a GPU


def run_layers(configs) -> None:
    for name, variant, training, per_channel, dtype, layout in configs:
        options = (
            {"variant": variant, "per_channel_lambda": per_channel} if name == "gnplus" else {}
        )
        layer = make_norm(name, 16, groups=4, impl="triton", **options).train(training)
        x = torch.randn(4, 16, 5, 5).to(dtype).contiguous(memory_format=layout)
        layer(x.requires_grad_()).float().sum().backward()


def compile_all(launches: dict, tmp_path: Path, minimum: int) -> None:
    path = tmp_path / "launches.json"
    path.write_text(json.dumps(list(launches.values())))
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    script = Path(__file__).with_name("triton_compile.py")
    done = subprocess.run([sys.executable, str(script), str(path)], env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert done.stdout.count("ok ") == len(launches) >= minimum


def test_every_variant_compiles_for_sm90_in_training_and_eval(recorder, tmp_path):
    """float32 NCHW and bfloat16 channels_last; every variant, CN, BGN, both kinds of λ."""
    layers = [("gnplus", v) for v in ("parallel", "gn_first", "bn_first")]
    layers += [("cn", None), ("bgn", None)]
    configs = [
        (name, variant, training, per_channel, dtype, layout)
        for (name, variant), training, per_channel in itertools.product(
            layers, (True, False), (False, True)
        )
        if not (name != "gnplus" and per_channel)
        for dtype, layout in ((torch.float32, torch.contiguous_format),)
    ] + [("gnplus", "parallel", True, False, torch.bfloat16, torch.channels_last)]
    run_layers(configs)
    # (coefficients, backward) × (3 variants, CN, BGN) × 2 modes (λ's kind is an argument)
    # + 2 memory formats/dtypes × (moments, sums, forward affine, backward affine)
    compile_all(recorder, tmp_path, minimum=2 * 10 + 2 * 4)


@pytest.mark.slow
def test_every_dtype_and_layout_compiles_for_sm90(recorder, tmp_path):
    layers = [("gnplus", v) for v in ("parallel", "gn_first", "bn_first")]
    layers += [("cn", None), ("bgn", None)]
    dtypes = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
    configs = [
        (name, variant, training, False, dtype, layout)
        for (name, variant), training, dtype, layout in itertools.product(
            layers, (True, False), dtypes, (torch.contiguous_format, torch.channels_last)
        )
    ]
    run_layers(configs)
    compile_all(recorder, tmp_path, minimum=40)
