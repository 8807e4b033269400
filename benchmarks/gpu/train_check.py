"""The project's training path on a GPU, end to end: ResNet-20 (width 16) on the embedded
Fashion-MNIST subset with BN, GN and GN+ (default kernels path), bf16 autocast and
channels_last, then BN and GN+ again under torch.compile of the whole model. Prints each run's
status, steps, seconds and clean test accuracy (chance is 0.1). Torch only."""

from __future__ import annotations

import sys
import tempfile
import time

import torch

from robustbench_norm.data import load_split
from robustbench_norm.training import TrainSpec, accuracy, load_trained, train

DEV = sys.argv[1] if len(sys.argv) > 1 else "cuda"
RUNS = [("bn", False), ("gn", False), ("gnplus", False), ("bn", True), ("gnplus", True)]


def check(work: str, norm: str, compiled: bool, test) -> str:
    spec = TrainSpec(
        dataset="fashion-mnist-mini", width=16, batch_size=64, epochs=3, norm=norm,
        norm_options={} if norm == "bn" else {"groups": 4},
        precision="bf16" if DEV == "cuda" else "fp32", channels_last=True, compile=compiled,
    )  # fmt: skip
    started = time.perf_counter()
    result = train(spec, work, device=DEV, quiet=True)
    model, _ = load_trained(result.checkpoint, DEV)
    acc = accuracy(model.to(memory_format=torch.channels_last), test, device=DEV)
    seconds = time.perf_counter() - started
    return f"{result.status} {result.steps} steps {seconds:6.1f} s  test accuracy {acc:.3f}"


test = load_split("fashion-mnist-mini", "test")
with tempfile.TemporaryDirectory() as work:
    for norm, compiled in RUNS:
        try:
            line = check(work, norm, compiled, test)
        except Exception as e:  # a crash is a result here
            line = f"ERROR {type(e).__name__}: {str(e)[:200]}"
        print(f"{norm:7s} compile={compiled!s:5s} {line}", flush=True)
