"""Layer fingerprints: the exact identity of what a normalization layer computes.

"Did the layer change?" has an exact answer that needs no training: run the layer on fixed,
seeded float64 inputs and record everything it produces. Training, by contrast, is a random
draw on every machine (the same seed on another CPU or thread count gives another model), so a
regression gate built only on trained models must be statistical and can miss or invent small
changes. A fingerprint closes that gap: it is the blocking, exact half of ``check``.

For one norm configuration (registry name + options) the fingerprint holds, per *case* (an input
shape, a memory layout, a group count):

* the training-mode output, and the gradients of a fixed random projection of it with respect
  to the input and to every parameter (γ, β, GN+'s θ, ...);
* every buffer (running statistics) after four training-mode calls;
* the eval-mode output on a fresh input, which reads those running statistics;

plus a *canary*: a two-layer float64 conv net using the layer, trained for three SGD steps on a
fixed batch (losses and final eval-mode logits), which catches changes that only show through
the optimizer (a parameter that stopped receiving gradient, a buffer that stopped updating).

Cases cover N = 1 and 2, contiguous and channels_last input (the same numbers in both layouts,
so the fingerprint itself shows whether the layout changes a result), and — for grouped layers
— the configured group count plus 1 and C groups. Inputs come from numpy's PCG64 (identical on every
platform) and have a non-zero mean, so a change in how moments are computed shows up.

Two fingerprints agree when every entry has the same shape and
``max|a − b| ≤ rtol · max(max|a|, max|b|)`` with ``rtol = 1e-9``: float64 summation order
differs between CPUs (AVX2 vs AVX-512) and thread counts by ~1e-15 relative, far inside it,
while any change to the math moves entries by many orders more (freezing GN+'s λ at 1 moves
the input gradient by ~97 %).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from robustbench_norm.norms.registry import make_norm, norm_options

FORMAT = "robustbench-norm/fingerprint@1"
RTOL = 1e-9
#: training-mode calls before the running statistics are read
STEPS = 4
CANARY_STEPS = 3


@dataclass(frozen=True)
class Case:
    name: str
    shape: tuple[int, int, int, int]
    options: dict[str, Any]
    channels_last: bool = False
    #: the input stream; a channels_last case shares its contiguous twin's, so the two must agree
    seed: int = 0


@dataclass
class FingerprintDiff:
    """How a candidate's fingerprint of one norm label relates to the baseline's."""

    label: str
    status: str  # unchanged | changed | missing (no candidate fingerprint) | new
    max_rel_diff: float = 0.0
    where: str = ""
    changed_entries: list[str] = field(default_factory=list)
    note: str = ""

    def to_dict(self) -> dict:
        return dict(self.__dict__)

    def describe(self) -> str:
        if self.status == "unchanged":
            return f"unchanged (largest relative difference {self.max_rel_diff:.1e})"
        if self.status == "changed":
            n = len(self.changed_entries)
            text = (
                f"CHANGED: {n} entr{'y' if n == 1 else 'ies'} differ; largest relative "
                f"difference {self.max_rel_diff:.3g} at {self.where}"
            )
            return text + (f" ({self.note})" if self.note else "")
        return self.note


def fingerprint(name: str, options: dict[str, Any] | None = None) -> dict[str, Any]:
    """The fingerprint of norm ``name`` built with ``options`` (JSON-ready)."""
    options = dict(options or {})
    entries: dict[str, dict] = {}
    for case in _cases(name, options):
        try:
            _record_case(name, case, np.random.default_rng([case.seed, 1]), entries)
        except Exception as e:  # a layer that cannot take this case: the error is its answer
            entries[f"{case.name}/error"] = _error(e)
    try:
        _record_canary(name, options, entries)
    except Exception as e:
        entries["canary/error"] = _error(e)
    return {
        "format": FORMAT,
        "norm": name,
        "options": options,
        "torch": torch.__version__,
        "entries": entries,
    }


def fingerprints(configs: dict[str, tuple[str, dict[str, Any]]]) -> dict[str, dict]:
    """Label → fingerprint for each ``label: (name, options)`` of a suite."""
    return {label: fingerprint(name, options) for label, (name, options) in configs.items()}


def compare_fingerprints(
    baseline: dict[str, dict], candidate: dict[str, dict], rtol: float = RTOL
) -> list[FingerprintDiff]:
    """Compare two ``label → fingerprint`` maps, label by label (baseline's labels first)."""
    out = []
    for label, base in baseline.items():
        cand = candidate.get(label)
        if cand is None:
            out.append(FingerprintDiff(label, "missing", note="no fingerprint in the candidate"))
            continue
        out.append(_compare_one(label, base, cand, rtol))
    for label in candidate:
        if label not in baseline:
            out.append(FingerprintDiff(label, "new", note="not in the baseline"))
    return out


def signature(fp: dict[str, Any]) -> str:
    """A short human-readable signature: the canary's losses, to 10 significant digits."""
    loss = fp["entries"].get("canary/loss")
    if loss is None:
        return "canary failed"
    return " → ".join(f"{float(v):.10g}" for v in loss["values"])


# -- building -----------------------------------------------------------------------------------


def _cases(name: str, options: dict[str, Any]) -> list[Case]:
    groups = options.get("groups")
    fixed = isinstance(groups, int) and not isinstance(groups, bool) and groups > 0
    c = 2 * groups if fixed else 8
    cases = [
        Case(f"N2·C{c}·3x4", (2, c, 3, 4), options, seed=0),
        Case(f"N1·C{c}·4x4", (1, c, 4, 4), options, seed=1),
        Case(f"N2·C{c}·3x4·channels_last", (2, c, 3, 4), options, channels_last=True, seed=0),
    ]
    accepted = norm_options(name)
    if accepted is not None and "groups" in accepted:
        for g in (1, c):
            if g != groups:
                regrouped = {**options, "groups": g}
                cases.append(Case(f"N2·C{c}·3x4·groups={g}", (2, c, 3, 4), regrouped, seed=2 + g))
    return cases


def _record_case(name: str, case: Case, rng: np.random.Generator, out: dict) -> None:
    layer = make_norm(name, case.shape[1], **case.options).double()
    _perturb_parameters(layer, rng)
    layer.train()
    x = _input(rng, case.shape, case.channels_last).requires_grad_(True)
    y = layer(x)
    projection = torch.from_numpy(rng.standard_normal(tuple(y.shape)))
    (y * projection).sum().backward()
    out[f"{case.name}/train/output"] = _entry(y)
    out[f"{case.name}/grad/input"] = _entry(x.grad)
    for pname, p in sorted(layer.named_parameters()):
        out[f"{case.name}/grad/{pname}"] = _entry(p.grad)
    with torch.no_grad():
        for _ in range(STEPS - 1):
            layer(_input(rng, case.shape, case.channels_last))
        for bname, b in sorted(layer.named_buffers()):
            out[f"{case.name}/buffer/{bname}"] = _entry(b)
        layer.eval()
        out[f"{case.name}/eval/output"] = _entry(layer(_input(rng, case.shape, case.channels_last)))


class _Canary(nn.Module):
    """conv → norm → ReLU → conv → norm → ReLU → global mean → linear, all in float64."""

    def __init__(self, name: str, options: dict[str, Any], channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, channels, 3, padding=1, bias=False)
        self.norm1 = make_norm(name, channels, **options)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.norm2 = make_norm(name, channels, **options)
        self.head = nn.Linear(channels, 10)

    def forward(self, x: Tensor) -> Tensor:
        x = torch.relu(self.norm1(self.conv1(x)))
        x = torch.relu(self.norm2(self.conv2(x)))
        return self.head(x.mean((2, 3)))


def _record_canary(name: str, options: dict[str, Any], out: dict) -> None:
    rng = np.random.default_rng([0, 2])
    channels = _cases(name, options)[0].shape[1]
    model = _Canary(name, options, channels).double()
    with torch.no_grad():
        for pname, p in sorted(model.named_parameters()):
            if pname.startswith(("conv", "head")) and pname.endswith("weight"):
                fan_in = p[0].numel()
                p.copy_(torch.from_numpy(rng.standard_normal(tuple(p.shape))) / math.sqrt(fan_in))
            elif pname.startswith("head"):
                p.zero_()
    _perturb_parameters(model.norm1, rng)
    _perturb_parameters(model.norm2, rng)
    x = _input(rng, (8, 1, 8, 8), False)
    labels = torch.from_numpy(rng.integers(0, 10, size=8))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    losses = []
    model.train()
    for _ in range(CANARY_STEPS):
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(x), labels)
        loss.backward()
        optimizer.step()
        losses.append(loss.detach())
    out["canary/loss"] = _entry(torch.stack(losses))
    model.eval()
    with torch.no_grad():
        out["canary/eval/logits"] = _entry(model(x))


def _perturb_parameters(module: nn.Module, rng: np.random.Generator) -> None:
    """Move every parameter off its initial value (γ = 1, β = 0, θ = logit λ₀ are special
    points where a wrong formula can still give the right number)."""
    with torch.no_grad():
        for _, p in sorted(module.named_parameters()):
            p.add_(0.3 * torch.from_numpy(rng.standard_normal(tuple(p.shape))))


def _input(rng: np.random.Generator, shape: tuple[int, ...], channels_last: bool) -> Tensor:
    x = torch.from_numpy(1.5 * rng.standard_normal(shape) + 0.7)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def _entry(t: Tensor | None) -> dict:
    if t is None:
        return {"shape": None, "values": []}
    v = t.detach().to(torch.float64).contiguous().reshape(-1).tolist()
    return {"shape": list(t.shape), "values": [x if math.isfinite(x) else str(x) for x in v]}


def _error(e: Exception) -> dict:
    return {"shape": None, "values": [], "error": f"{type(e).__name__}: {e}"}


# -- comparing ---------------------------------------------------------------------------------


def _values(entry: dict) -> np.ndarray:
    return np.array([float(v) for v in entry["values"]], dtype=np.float64)


def _compare_one(label: str, base: dict, cand: dict, rtol: float) -> FingerprintDiff:
    diff = FingerprintDiff(label, "unchanged")
    notes = []
    if base.get("norm") != cand.get("norm") or base.get("options") != cand.get("options"):
        notes.append(
            f"configuration {base.get('norm')} {base.get('options')} → "
            f"{cand.get('norm')} {cand.get('options')}"
        )
    if base.get("torch") != cand.get("torch"):
        notes.append(f"torch {base.get('torch')} → {cand.get('torch')}")
    b_entries, c_entries = base["entries"], cand["entries"]
    for key in sorted(set(b_entries) | set(c_entries)):
        b, c = b_entries.get(key), c_entries.get(key)
        if b is None or c is None:
            diff.changed_entries.append(key)
            if not diff.where:
                diff.where = f"{key} (only in the {'candidate' if b is None else 'baseline'})"
                diff.max_rel_diff = math.inf
            continue
        if b.get("shape") != c.get("shape") or b.get("error") != c.get("error"):
            diff.changed_entries.append(key)
            diff.max_rel_diff, diff.where = math.inf, f"{key} (shape or error differs)"
            continue
        rel, index = _relative_difference(_values(b), _values(c))
        if rel > rtol:
            diff.changed_entries.append(key)
        if rel > diff.max_rel_diff:
            shape = b.get("shape") or []
            at = list(np.unravel_index(index, shape)) if shape else []
            diff.max_rel_diff = rel
            diff.where = f"{key}{at if at else ''}".replace(" ", "")
    if diff.changed_entries:
        diff.status = "changed"
    diff.note = "; ".join(notes)
    return diff


def _relative_difference(a: np.ndarray, b: np.ndarray) -> tuple[float, int]:
    """max|a − b| relative to the larger magnitude of the two entries, and where; NaN at the
    same position counts as equal, NaN against a number as infinitely different."""
    if a.size == 0:
        return 0.0, 0
    nan_a, nan_b = np.isnan(a), np.isnan(b)
    if np.any(nan_a != nan_b):
        return math.inf, int(np.argmax(nan_a != nan_b))
    a, b = np.where(nan_a, 0.0, a), np.where(nan_b, 0.0, b)
    with np.errstate(invalid="ignore"):
        delta = np.abs(a - b)
    delta = np.where(a == b, 0.0, delta)  # inf == inf
    if not np.all(np.isfinite(delta)):
        return math.inf, int(np.argmax(~np.isfinite(delta)))
    scale = max(float(np.max(np.abs(a))), float(np.max(np.abs(b))), 1e-300)
    index = int(np.argmax(delta))
    return float(delta[index]) / scale, index
