"""Compile recorded Triton launches for a CUDA target, without a GPU (a subprocess of
test_triton_compiles.py: the kernels must be imported with TRITON_INTERPRET off).

    python tests/triton_compile.py LAUNCHES.json [ARCH]     # ARCH: 90 (H100/H200) by default

Each launch is {"kernel", "signature": {arg: type}, "constexprs": {name: value}}; types are
Triton's ("*fp32", "i32", "fp32", …) and a dtype constexpr is written "dtype:fp32". Prints one
line per launch and exits 1 if any fails to compile to a cubin.
"""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path

import triton
import triton.language as tl
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from robustbench_norm.norms import triton_kernels


def value(v):
    """A constexpr as recorded: "dtype:fp32" stands for tl.float32."""
    if isinstance(v, str) and v.startswith("dtype:"):
        return {"fp32": tl.float32, "fp64": tl.float64}[v.removeprefix("dtype:")]
    return v


def main() -> int:
    launches = json.loads(Path(sys.argv[1]).read_text())
    arch = int(sys.argv[2]) if len(sys.argv) > 2 else 90
    target = GPUTarget("cuda", arch, 32)
    failed = 0
    for launch in launches:
        kernel = getattr(triton_kernels, launch["kernel"])
        constexprs = {k: value(v) for k, v in launch["constexprs"].items()}
        signature = {**launch["signature"], **dict.fromkeys(constexprs, "constexpr")}
        tag = f"{launch['kernel']} {launch['constexprs']}"
        try:
            compiled = triton.compile(
                ASTSource(fn=kernel, signature=signature, constexprs=constexprs), target=target
            )
            assert compiled.asm.get("cubin"), "no cubin"
            print("ok", tag)
        except Exception:  # every failure is reported, then the exit code says it
            failed += 1
            print("FAILED", tag, traceback.format_exc(), sep="\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
