"""Adversarial robustness: robust accuracy per attack and ε, per example.

FGSM, PGD, DeepFool and C&W come from foolbox 3. APGD-CE and APGD-T, the two gradient attacks
of AutoAttack's standard ensemble (Croce & Hein 2020), come from torchattacks 3.5.1: AutoAttack
itself is not on PyPI, and torchattacks ports both with their step-size schedule, restarts and
(APGD-T) the targeted DLR loss over the 9 most likely wrong classes. Without them robust accuracy
from FGSM and a few PGD steps overstates robustness; prefer ``apgd_t`` (strongest) or
``apgd_ce`` for any number you publish.

The model is wrapped with bounds (0, 1); it normalizes its input itself, so the attack moves
pixels. Robust accuracy at ε is the share of examples classified correctly *and* not fooled by
the attack within ε (foolbox counts an already-misclassified input as a success).

Fairness across layers: attacks run in eval mode, where BN uses running statistics and GN/GN+
per-sample ones, so every model is a fixed per-sample function; in training mode a BN model's
prediction would depend on the rest of the batch and an attack could exploit that.

Sanity checks run on every result and are reported in ``warnings``, never silently fixed:
perturbations must lie within ε (+ float tolerance); ε = 0 must reproduce clean accuracy; for
the fixed-budget attacks the raw robust accuracy must not increase with ε (if it does, e.g.
through gradient masking, the reported value is the worst case over ε' ≤ ε: an adversarial
example within ε' is also one within ε).

Reproducibility: examples are attacked in chunks of ``chunk`` (part of the spec), with torch
seeded per chunk, so random starts are the same for every model and any evaluation batch size.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from robustbench_norm.errors import RobustBenchError
from robustbench_norm.specs import check_seed

#: name → (norm, fixed budget?)
ATTACKS = {
    "fgsm": ("linf", True),
    "pgd_linf": ("linf", True),
    "pgd_l2": ("l2", True),
    "apgd_ce": ("linf", True),
    "apgd_t": ("linf", True),
    "deepfool_linf": ("linf", False),
    "deepfool_l2": ("l2", False),
    "cw_l2": ("l2", False),
}
DEFAULT_EPSILONS = {
    "linf": (0.0, 1 / 255, 2 / 255, 4 / 255, 8 / 255),
    "l2": (0.0, 0.1, 0.25, 0.5, 1.0),
}
#: attacks run through torchattacks (the rest through foolbox)
APGD = ("apgd_ce", "apgd_t")
#: relative slack on the budget check (float32 rounding of x + δ then clipping)
BUDGET_TOLERANCE = 1e-4


def parse_epsilon(value: float | int | str) -> float:
    """An ε as a number or as the fraction every table prints: ``8/255``, ``0.5``, ``1``."""
    if isinstance(value, bool):
        raise RobustBenchError(f"ε {value!r} is not a number")
    if isinstance(value, int | float):
        return float(value)
    text = str(value).strip()
    try:
        num, sep, den = text.partition("/")
        return float(num) / float(den) if sep else float(text)
    except (ValueError, ZeroDivisionError):
        raise RobustBenchError(f"ε {value!r} is not a number or a fraction like 8/255") from None


def format_epsilon(value: float) -> str:
    """k/255 for the budgets image-space robustness is quoted in (0, 1/255 … 16/255), else the
    number."""
    if value == 0:
        return "0"
    for k in range(1, 33):
        if math.isclose(value, k / 255, rel_tol=1e-6):
            return f"{k}/255"
    return f"{value:g}"


@dataclass(frozen=True)
class AttackSpec:
    """One attack. ``steps=None`` uses the attack's default (PGD 10, DeepFool 50, CW 100).

    CW's defaults (5 binary-search steps × 100 steps) keep a CPU run in seconds; foolbox's own
    (9 × 10,000) took minutes for 16 images.
    """

    name: str
    epsilons: tuple[float, ...] = ()
    steps: int | None = None
    rel_stepsize: float | None = None
    random_start: bool = True
    seed: int = 0
    chunk: int = 100
    cw_binary_search_steps: int = 5
    deepfool_candidates: int = 10
    #: random restarts (APGD-CE, APGD-T; PGD restarts nothing)
    restarts: int = 1

    def __post_init__(self) -> None:
        if self.name not in ATTACKS:
            raise RobustBenchError(
                f"unknown attack {self.name!r}; valid names: {', '.join(ATTACKS)}"
            )
        if not self.epsilons:
            object.__setattr__(self, "epsilons", DEFAULT_EPSILONS[self.norm])
        eps = tuple(parse_epsilon(e) for e in self.epsilons)
        if not all(0 <= e < math.inf for e in eps) or list(eps) != sorted(eps):
            raise RobustBenchError(
                f"attack {self.name}: epsilons {eps} must be finite, non-negative and increasing"
            )
        if self.norm == "linf" and eps[-1] > 1:
            raise RobustBenchError(
                f"attack {self.name}: ε={eps[-1]} exceeds the pixel range [0, 1]; an L∞ budget "
                "is in pixel units, e.g. 8/255 = 0.0314"
            )
        object.__setattr__(self, "epsilons", eps)
        if self.steps is not None and self.steps < 1:
            raise RobustBenchError(f"attack {self.name}: steps={self.steps} must be >= 1")
        if self.chunk < 1:
            raise RobustBenchError(f"attack {self.name}: chunk={self.chunk} must be >= 1")
        if self.rel_stepsize is not None and not 0 < self.rel_stepsize < math.inf:
            raise RobustBenchError(
                f"attack {self.name}: rel_stepsize={self.rel_stepsize} must be a positive "
                "number (a fraction of ε per step, e.g. 0.25)"
            )
        for name in ("cw_binary_search_steps", "deepfool_candidates", "restarts"):
            if getattr(self, name) < 1:
                raise RobustBenchError(f"attack {self.name}: {name} must be >= 1")
        check_seed(self.seed, f"attack {self.name}: seed")

    @property
    def norm(self) -> str:
        return ATTACKS[self.name][0]

    @property
    def default_steps(self) -> int:
        """Steps when unset: PGD 10, APGD 100 (AutoAttack's standard), DeepFool 50, C&W 100."""
        return {"pgd_linf": 10, "pgd_l2": 10, "apgd_ce": 100, "apgd_t": 100, "fgsm": 1}.get(
            self.name, 50 if self.name.startswith("deepfool") else 100
        )

    def describe(self) -> str:
        """The threat model and effort, as a leaderboard labels a robust-accuracy column."""
        norm = "L∞" if self.norm == "linf" else "L2"
        parts = [f"{self.name} ({norm})"]
        if self.name != "fgsm":
            parts.append(f"{self.steps or self.default_steps} steps")
        if self.name in ("pgd_linf", "pgd_l2"):
            parts.append("random start" if self.random_start else "no random start")
        if self.name in APGD:
            parts.append(f"{self.restarts} restart{'s' if self.restarts > 1 else ''}")
        return ", ".join(parts)

    @property
    def fixed_budget(self) -> bool:
        return ATTACKS[self.name][1]

    def build(self):
        fb = _foolbox()
        a = fb.attacks
        steps = self.steps
        if self.name == "fgsm":
            return a.FGSM()
        if self.name in ("pgd_linf", "pgd_l2"):
            cls = a.LinfPGD if self.name == "pgd_linf" else a.L2PGD
            kw = {"steps": steps or 10, "random_start": self.random_start}
            # step 2.5·ε/steps (Madry et al.) unless given
            kw["rel_stepsize"] = self.rel_stepsize or 2.5 / kw["steps"]
            return cls(**kw)
        if self.name in ("deepfool_linf", "deepfool_l2"):
            cls = a.LinfDeepFoolAttack if self.name == "deepfool_linf" else a.L2DeepFoolAttack
            return cls(steps=steps or 50, candidates=self.deepfool_candidates)
        return a.L2CarliniWagnerAttack(
            binary_search_steps=self.cw_binary_search_steps, steps=steps or 100
        )


@dataclass
class AttackResult:
    epsilons: tuple[float, ...]
    #: (len(epsilons), N): correct and not fooled within ε (worst case over ε' ≤ ε)
    robust: np.ndarray
    #: what the attack achieved at each ε on its own
    raw_robust: np.ndarray
    #: (len(epsilons), N): size of the perturbation the attack returned, in its norm
    perturbation_norms: np.ndarray
    #: (len(epsilons), N): the model's labels for the attack's output at each ε
    predictions: np.ndarray
    warnings: list[str] = field(default_factory=list)


def _foolbox():
    # foolbox imports GitPython, which refuses to load without a git executable otherwise
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
    import foolbox

    return foolbox


def _norms(delta: torch.Tensor, norm: str) -> torch.Tensor:
    flat = delta.flatten(1)
    return flat.abs().amax(1) if norm == "linf" else flat.norm(dim=1)


def run_attack(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    spec: AttackSpec,
    clean_correct: np.ndarray,
    device: torch.device,
    progress=None,
) -> AttackResult:
    """Attack ``images`` (N, C, H, W in [0, 1]) with ``spec``; ``clean_correct`` is the model's
    clean per-example correctness, used for the ε = 0 check."""
    if spec.name in APGD:
        return _run_apgd(model, images, labels, spec, clean_correct, device, progress)
    fb = _foolbox()
    model.eval()
    fmodel = fb.PyTorchModel(model, bounds=(0.0, 1.0), device=device)
    attack = spec.build()
    eps = list(spec.epsilons)
    n = len(labels)
    raw = np.zeros((len(eps), n), dtype=bool)
    sizes = np.zeros((len(eps), n), dtype=np.float64)
    preds = np.zeros((len(eps), n), dtype=np.int64)
    for chunk_index, start in enumerate(range(0, n, spec.chunk)):
        x = images[start : start + spec.chunk].to(device)
        y = labels[start : start + spec.chunk].to(device=device, dtype=torch.int64)
        torch.manual_seed(spec.seed * 1_000_003 + chunk_index)
        _, clipped, success = attack(fmodel, x, y, epsilons=eps)
        raw[:, start : start + len(y)] = ~success.cpu().numpy()
        for k, adv in enumerate(clipped):
            sizes[k, start : start + len(y)] = _norms(adv - x, spec.norm).cpu().numpy()
            with torch.no_grad():
                preds[k, start : start + len(y)] = model(adv).argmax(1).cpu().numpy()
        if progress is not None:
            progress.update(len(y))

    robust = np.logical_and.accumulate(raw, axis=0)
    warnings = sanity_warnings(spec, raw, sizes, clean_correct)
    return AttackResult(tuple(eps), robust, raw, sizes, preds, warnings)


def _run_apgd(model, images, labels, spec, clean_correct, device, progress) -> AttackResult:
    """APGD-CE / APGD-T (torchattacks) at each ε, chunk by chunk, seeded per chunk."""
    import torchattacks

    model.eval()
    eps = list(spec.epsilons)
    n = len(labels)
    raw = np.zeros((len(eps), n), dtype=bool)
    sizes = np.zeros((len(eps), n), dtype=np.float64)
    preds = np.zeros((len(eps), n), dtype=np.int64)
    steps = spec.steps or spec.default_steps
    for chunk_index, start in enumerate(range(0, n, spec.chunk)):
        x = images[start : start + spec.chunk].to(device)
        y = labels[start : start + spec.chunk].to(device=device, dtype=torch.int64)
        seed = spec.seed * 1_000_003 + chunk_index
        for k, e in enumerate(eps):
            if e == 0:
                adv = x
            elif spec.name == "apgd_ce":
                attack = torchattacks.APGD(
                    model, norm="Linf", eps=e, steps=steps, n_restarts=spec.restarts, seed=seed,
                    loss="ce", rho=0.75,
                )  # fmt: skip
                adv = attack(x, y).detach()
            else:
                with torch.no_grad():
                    classes = model(x[:1]).shape[1]
                attack = torchattacks.APGDT(
                    model, norm="Linf", eps=e, steps=steps, n_restarts=spec.restarts, seed=seed,
                    n_classes=classes,
                )  # fmt: skip
                attack.n_target_classes = min(9, classes - 1)
                adv = attack(x, y).detach()
            with torch.no_grad():
                p = model(adv).argmax(1)
            raw[k, start : start + len(y)] = (p == y).cpu().numpy()
            preds[k, start : start + len(y)] = p.cpu().numpy()
            sizes[k, start : start + len(y)] = _norms(adv - x, spec.norm).cpu().numpy()
        if progress is not None:
            progress.update(len(y))
    model.eval()  # torchattacks restores the mode it found; keep eval for what follows
    robust = np.logical_and.accumulate(raw, axis=0)
    warnings = sanity_warnings(spec, raw, sizes, clean_correct)
    return AttackResult(tuple(eps), robust, raw, sizes, preds, warnings)


def sanity_warnings(
    spec: AttackSpec, raw: np.ndarray, sizes: np.ndarray, clean_correct: np.ndarray
) -> list[str]:
    """What is wrong with an attack's raw result: perturbations over budget, ε = 0 not equal to
    clean, robust accuracy rising with ε (fixed-budget attacks). Empty when all is well."""
    eps = spec.epsilons
    warnings = []
    for k, e in enumerate(eps):
        over = sizes[k] > e * (1 + BUDGET_TOLERANCE) + 1e-6
        if over.any():
            warnings.append(
                f"{spec.name}: {int(over.sum())} perturbations exceed ε={e:.5g} "
                f"(largest {sizes[k].max():.6g}); robust accuracy at this ε is not trustworthy"
            )
        if e == 0 and not np.array_equal(raw[k], clean_correct):
            warnings.append(
                f"{spec.name}: robust accuracy at ε=0 ({raw[k].mean():.4f}) differs from clean "
                f"accuracy ({clean_correct.mean():.4f})"
            )
    acc = raw.mean(1)
    if spec.fixed_budget:
        for k in range(1, len(eps)):
            if acc[k] > acc[k - 1]:
                warnings.append(
                    f"{spec.name}: raw robust accuracy rises from {acc[k - 1]:.4f} at "
                    f"ε={eps[k - 1]:.5g} to {acc[k]:.4f} at ε={eps[k]:.5g} (a sign of gradient "
                    "masking); reported values are the worst case over smaller ε"
                )
    return warnings
