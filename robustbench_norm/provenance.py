"""Where and with what a run was made — enough to explain why two runs differ.

Training is not bitwise reproducible across CPUs or thread counts (FACTS.md): the same seed on
an AVX-512 Intel and an AVX2 AMD machine gives a different model. So a run records the facts
that change float summation order — CPU model, the instruction-set level ATen dispatched to,
the BLAS and oneDNN builds, the thread count — and ``check`` names the ones that differ
between baseline and candidate. It never relies on them being equal.
"""

from __future__ import annotations

import os
import platform
import re
import socket
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

#: the packages whose versions can change a number
PACKAGES = (
    "torch",
    "torchvision",
    "numpy",
    "scipy",
    "scikit-image",
    "opencv-python-headless",
    "pillow",
    "foolbox",
    "eagerpy",
    "imagecorruptions",
    "torchattacks",
    "pandas",
)

#: provenance fields that change float results; ``check`` warns when they differ
NUMERIC_ENVIRONMENT = (
    "cpu_model",
    "cpu_capability",
    "blas",
    "onednn",
    "torch_threads",
    "torch",
    "device",
)


def provenance(threads: int | None = None) -> dict[str, Any]:
    """Where and with what a run was made; ``threads``: the torch threads its jobs use (default:
    this process's)."""
    import torch

    from robustbench_norm.version import __version__

    packages = {}
    for name in PACKAGES:
        try:
            packages[name] = version(name)
        except PackageNotFoundError:
            packages[name] = None
    cuda = torch.cuda.is_available()
    return {
        "robustbench_norm": __version__,
        "git_sha": _git("rev-parse", "HEAD"),
        "git_dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
        "packages": packages,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "device": torch.cuda.get_device_name(0)
        if cuda
        else f"cpu ({platform.processor() or platform.machine()})",
        "cpu_count": os.cpu_count(),
        "host": socket.gethostname(),
        "platform": platform.platform(),
        **machine(threads),
    }


def machine(threads: int | None = None) -> dict[str, Any]:
    """The numeric environment: what makes float results differ between two machines."""
    import torch

    config = torch.__config__.show()
    return {
        "cpu_model": cpu_model(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "blas": _config_line(config, r"BLAS_INFO=(\w+)") or None,
        "mkl": _config_line(config, r"Math Kernel Library Version ([\w.\-]+)"),
        "onednn": _config_line(config, r"MKL-DNN v([\w.]+)"),
        "torch_threads": threads or torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
    }


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux; ``platform`` elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment_differences(base: dict, cand: dict) -> list[str]:
    """``field: baseline → candidate`` for each numeric-environment field that differs (fields
    a run did not record, e.g. in a store from an older release, are skipped)."""
    out = []
    for key in NUMERIC_ENVIRONMENT:
        a, b = base.get(key), cand.get(key)
        if a is not None and b is not None and a != b:
            out.append(f"{key}: {a} → {b}")
    return out


def _config_line(text: str, pattern: str) -> str | None:
    match = re.search(pattern, text)
    return match.group(1) if match else None


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args],
            capture_output=True,
            text=True,
            timeout=10,
            cwd=Path(__file__).resolve().parent,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None
