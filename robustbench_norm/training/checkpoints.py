"""Where a trained model lives and how it is read back: the device, the compute tag in every
checkpoint path, whole-or-nothing writes, and :func:`load_trained`."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from robustbench_norm.errors import RobustBenchError, StorageError
from robustbench_norm.norms import available
from robustbench_norm.training.spec import TrainSpec


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` → CUDA when there is one, else CPU. A device that is not there fails here, once,
    before any work: not in every job, and not as a damaged-checkpoint error."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise RobustBenchError(
            f"--device {device!r} is not a device name; use auto, cpu, cuda or cuda:N"
        ) from None
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise RobustBenchError(
                f"--device {device}: no CUDA device is available here; use --device cpu (or auto)"
            )
        if dev.index is not None and dev.index >= count:
            raise RobustBenchError(
                f"--device {device}: this machine has {count} CUDA device(s), cuda:0 to "
                f"cuda:{count - 1}"
            )
    elif dev.type != "cpu":
        raise RobustBenchError(f"--device {device}: only cpu and cuda devices are supported")
    return dev


def compute_tag(device: torch.device, threads: int | None = None) -> str:
    """What besides the spec decides a trained model's weights: the device type and, on a CPU,
    the torch thread count (reductions split differently: 1 and 2 threads gave BN clean
    accuracies 0.495 and 0.420 after the same 30 steps). Part of every checkpoint's path and
    job's key, so models trained under different settings are never mixed."""
    if device.type == "cuda":
        return "cuda"
    return f"cpu-{threads or torch.get_num_threads()}threads"


def checkpoint_dir(spec: TrainSpec, workdir: str | Path, device: torch.device) -> Path:
    return Path(workdir) / "checkpoints" / spec.key / compute_tag(device)


def load_trained(path: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """Model (eval mode) and payload of a finished checkpoint written by :func:`train`."""
    path = Path(path)
    device = resolve_device(device)
    if not path.is_file():
        raise RobustBenchError(f"checkpoint {path} does not exist; train the spec first")
    try:
        payload = torch.load(path, map_location=device, weights_only=False)
        norm = payload["spec"]["norm"]
    except Exception as e:
        payload, norm = None, None
        error = e
    if norm is not None and norm not in available():
        origin = payload.get("meta", {}).get("layer_origin")
        raise RobustBenchError(
            f"checkpoint {path} was trained with norm {norm!r}, which is not registered here; "
            f"pass --plugin MODULE, the module that registers it"
            + (f" (it came from {origin})" if origin else "")
        )
    try:
        if payload is None:
            raise error
        spec = TrainSpec.from_dict(payload["spec"])
    except Exception as e:
        raise RobustBenchError(
            f"checkpoint {path} is not a robustbench-norm checkpoint or is damaged "
            f"({type(e).__name__}: {str(e).strip().splitlines()[0] if str(e) else ''}); delete "
            "it and train again"
        ) from e
    model = spec.build_model().to(device)
    model.load_state_dict(payload["model"])
    return model.eval(), payload


def atomic_save(obj: Any, path: Path) -> None:
    """Write ``path`` whole or not at all. A failed write (a full disk) leaves no ``.tmp`` and
    stops the run with :class:`StorageError`: every later checkpoint would fail the same way."""
    tmp = path.with_suffix(f"{path.suffix}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as e:  # torch reports a short write as a RuntimeError
        tmp.unlink(missing_ok=True)
        reason = getattr(e, "strerror", None) or str(e).strip().splitlines()[-1]
        raise StorageError(
            f"could not write checkpoint {path} ({reason}); free space or pass another "
            "--workdir, then rerun the same command: finished jobs are kept"
        ) from None


def load_checkpoint(path: Path, device: torch.device, what: str) -> dict | None:
    """A checkpoint's payload, or None (with a warning) when it is damaged: a truncated file
    is a lost resume point, not a reason to fail the job on every rerun."""
    try:
        payload = torch.load(path, map_location=device, weights_only=False)
        if not isinstance(payload, dict) or "model" not in payload:
            raise ValueError("not a robustbench-norm checkpoint")
        return payload
    except Exception as e:  # torch raises anything from OSError to UnpicklingError here
        warnings.warn(f"{what} {path} is damaged ({e}); training this job again", stacklevel=3)
        path.unlink(missing_ok=True)
        return None


def save_resume_point(
    path: Path,
    spec: TrainSpec,
    model: nn.Module,
    opt: torch.optim.Optimizer,
    state: dict[str, Any],
    dev: torch.device,
) -> None:
    """``last.pt``: everything an interrupted run needs to continue exactly (weights, optimizer,
    the RNG states, the step, log and wall time)."""
    atomic_save(
        {
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "rng_cpu": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state(dev) if dev.type == "cuda" else None,
            "state": state,
            "spec": spec.to_dict(),
        },
        path,
    )


def restore_resume_point(
    path: Path, model: nn.Module, opt: torch.optim.Optimizer, dev: torch.device
) -> dict[str, Any] | None:
    """Load ``last.pt`` into ``model`` and ``opt`` and restore the RNG states; the run's state,
    or None when there is no readable resume point (then nothing was changed)."""
    ckpt = load_checkpoint(path, dev, "resume point") if path.exists() else None
    if ckpt is None:
        return None
    model.load_state_dict(ckpt["model"])
    opt.load_state_dict(ckpt["optimizer"])
    torch.set_rng_state(ckpt["rng_cpu"])
    if dev.type == "cuda" and ckpt.get("rng_cuda") is not None:
        torch.cuda.set_rng_state(ckpt["rng_cuda"], dev)
    return ckpt["state"]
