"""Suites: a TOML file → a validated, frozen job matrix.

A suite names the dataset, models, norms (with options), batch sizes, seeds, training settings,
an optional regularization sweep, the evaluations, the reference norm for CE/mCE and the
settings of regression checks. Everything is validated before any work starts. A mistake is
one :class:`RobustBenchError` naming the file, the key path (``norms[2].options.groups``) and
what is allowed. See ``suites/smoke.toml`` for a commented example.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from robustbench_norm.data import dataset_info
from robustbench_norm.errors import RobustBenchError
from robustbench_norm.evaluation import (
    BatchStatisticsPlan,
    CorruptionSpec,
    NoiseSequenceSpec,
    NoiseSpec,
)
from robustbench_norm.norms import make_norm
from robustbench_norm.norms.registry import layer_identity
from robustbench_norm.perturb.attacks import AttackSpec, parse_epsilon
from robustbench_norm.plugins import load_plugins
from robustbench_norm.specs import check_seed, code_version, spec_key
from robustbench_norm.suites.sweeps import regularization_sweep, regularizer_label
from robustbench_norm.training import TRAIN_CODE, TrainSpec
from robustbench_norm.training.activation_noise import ActivationNoise
from robustbench_norm.training.models import build_model
from robustbench_norm.training.stability import StabilitySpec

EVAL_CODE = ("evaluation", "perturb")
#: the package parts every job's key hashes (plus a plugin layer's own source)
JOB_CODE = (*TRAIN_CODE, *EVAL_CODE)
#: step sizes a suite's [stability] must take (range and predictiveness need a path, not a pair)
MIN_ETAS = 4

#: keys of [train]: TrainSpec fields that a suite sets once for every job
TRAIN_KEYS = {
    "epochs": int, "steps": int, "images": int, "optimizer": str, "lr": float, "momentum": float,
    "lr_scaling": str, "schedule": str, "weight_decay": float, "exempt_norm_from_decay": bool,
    "augment": bool, "precision": str, "channels_last": bool, "compile": bool, "log_every": int,
    "dropout": float, "mixup_alpha": float, "perturbation": dict,
}  # fmt: skip
PERTURBATION_KEYS = {
    "mode": str, "mean_range": float, "std_low": float, "std_high": float,
    "shift_std": float, "groups": (int, str),
}  # fmt: skip
ATTACK_KEYS = {
    "name": str, "epsilons": list, "steps": int, "rel_stepsize": float, "random_start": bool,
    "seed": int, "chunk": int, "limit": int, "cw_binary_search_steps": int,
    "deepfool_candidates": int, "restarts": int,
}  # fmt: skip
#: what a regression check tests by default: primary metrics block (Holm-corrected), secondary
#: ones are reported with BH q-values
DEFAULT_PRIMARY = ("clean/accuracy", "noise/mean_accuracy", "corruption/mean_corruption_accuracy")
DEFAULT_SECONDARY = ("attack/robust_accuracy", "noise_sequence/flip_probability")


@dataclass(frozen=True)
class Evaluation:
    """One perturbation family, on the first ``limit`` of the job's test images (None: all)."""

    spec: Any
    limit: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": type(self.spec).__name__,
            "limit": self.limit,
            **dataclasses.asdict(self.spec),
        }


@dataclass(frozen=True)
class JobSpec:
    """One model to train and evaluate. Its key changes with the spec, the code it uses and
    where it trains (``compute``: the device type and CPU thread count, set when a run starts;
    see :func:`robustbench_norm.training.compute_tag`)."""

    label: str
    train: TrainSpec
    evaluations: tuple[Evaluation, ...]
    test_limit: int | None
    compute: str | None = None
    #: test-time statistics evaluated beside the running ones (models that keep running
    #: statistics only; see evaluate.BatchStatisticsPlan)
    test_statistics: BatchStatisticsPlan | None = None

    @property
    def key(self) -> str:
        code = code_version(*JOB_CODE) + layer_identity(self.train.norm)
        return spec_key(self.to_dict(), code)

    @property
    def regularizer(self) -> str:
        return regularizer_label(self.train)

    @property
    def title(self) -> str:
        """The job as logs name it, e.g. ``resnet20/bn/bs8/seed16/none/1,048,576 images``:
        every label that tells it from the suite's other jobs."""
        t = self.train
        budget = f"/{t.images:,} images" if t.images else ""
        return f"{t.model}/{self.label}/bs{t.batch_size}/seed{t.seed}/{self.regularizer}{budget}"

    def labels(self) -> dict[str, Any]:
        return {
            "model": self.train.model,
            "norm": self.label,
            "batch_size": self.train.batch_size,
            "seed": self.train.seed,
            "regularizer": self.regularizer,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "train": self.train.to_dict(),
            "evaluations": [e.to_dict() for e in self.evaluations],
            "test_limit": self.test_limit,
            "compute": self.compute,
            "test_statistics": (
                None if self.test_statistics is None else dataclasses.asdict(self.test_statistics)
            ),
        }


@dataclass(frozen=True)
class CheckSettings:
    """The suite's ``[check]`` table: defaults for ``robustbench-norm check --suite``."""

    baseline: str | None = None
    primary: tuple[str, ...] = DEFAULT_PRIMARY
    secondary: tuple[str, ...] = DEFAULT_SECONDARY
    alpha: float = 0.05
    tolerance: float = 0.0
    detect: float = 0.02
    #: which metric lists the suite named (the others are defaults, watched where measured)
    named: tuple[str, ...] = ()


@dataclass(frozen=True)
class Suite:
    name: str
    path: Path
    text: str
    description: str
    dataset: str
    norms: tuple[str, ...]
    reference: str | None
    jobs: tuple[JobSpec, ...]
    evaluations: tuple[Evaluation, ...]
    test_limit: int | None
    check: CheckSettings
    #: plugin modules the suite loads (resolved: module names or absolute .py paths)
    plugins: tuple[str, ...] = ()
    #: [evaluate.test_statistics]: what models with running statistics are also evaluated under
    test_statistics: BatchStatisticsPlan | None = None

    @property
    def hash(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()

    def corruption_conditions(self) -> list[tuple[CorruptionSpec, int | None]]:
        return [(e.spec, e.limit) for e in self.evaluations if isinstance(e.spec, CorruptionSpec)]

    def norm_configs(self) -> dict[str, tuple[str, dict[str, Any]]]:
        """Norm label → (registry name, options), as the jobs build them: what fingerprints
        identify."""
        return {j.label: (j.train.norm, dict(j.train.norm_options)) for j in self.jobs}


# -- validation helpers ---------------------------------------------------------------------------


class _Reader:
    """Typed access to a TOML table that reports mistakes with the file and key path."""

    def __init__(self, file: Path) -> None:
        self.file = file

    def fail(self, path: str, message: str) -> RobustBenchError:
        where = f"{self.file}: {path}" if path else str(self.file)
        return RobustBenchError(f"{where}: {message}")

    def keys(self, table: dict, allowed: dict, path: str) -> None:
        for key in table:
            if key not in allowed:
                raise self.fail(
                    f"{path}.{key}" if path else key,
                    f"unknown key; allowed keys here: {', '.join(sorted(allowed))}",
                )

    def value(self, table: dict, key: str, kind, path: str, default=None, required=False):
        full = f"{path}.{key}" if path else key
        if key not in table:
            if required:
                raise self.fail(full, "is required")
            return default
        return self.check_type(table[key], kind, full)

    def check_type(self, v, kind, path: str):
        kinds = kind if isinstance(kind, tuple) else (kind,)
        for k in kinds:
            if k is float and isinstance(v, int | float) and not isinstance(v, bool):
                if not math.isfinite(v):
                    raise self.fail(path, f"must be a finite number, got {v!r}")
                return float(v)
            if k is int and isinstance(v, int) and not isinstance(v, bool):
                return v
            if k in (str, bool, dict, list) and isinstance(v, k):
                return v
        names = " or ".join(
            {
                float: "a number",
                int: "an integer",
                str: "a string",
                bool: "true/false",
                dict: "a table",
                list: "a list",
            }[k]
            for k in kinds
        )
        raise self.fail(path, f"expected {names}, got {v!r} ({type(v).__name__})")

    def count(self, table: dict, key: str, path: str, available: int = 0) -> int | None:
        """An optional image limit: positive (0 or -900 would slice silently) and, where the
        split's size is known (``available``), no larger than it (it would silently mean all)."""
        value = self.value(table, key, int, path)
        full = f"{path}.{key}" if path else key
        if value is not None and value < 1:
            raise self.fail(
                full, f"must be a positive number of images (or unset for all), got {value}"
            )
        if value is not None and available and value > available:
            raise self.fail(
                full,
                f"{value:,} exceeds the {available:,} test images; unset it to use them all",
            )
        return value

    def items(self, table: dict, key: str, kind, path: str, default=None, required=False):
        values = self.value(table, key, list, path, default=default, required=required)
        full = f"{path}.{key}" if path else key
        if values is None:
            return None
        if not values:
            raise self.fail(full, "is empty: the job matrix needs at least one value")
        checked = [self.check_type(v, kind, f"{full}[{i}]") for i, v in enumerate(values)]
        self.distinct(checked, full)
        return checked

    def distinct(self, values: list, path: str) -> None:
        """Each value of a list once: a repeated σ, batch size or corruption would be measured
        (or planned) twice and counted twice in every mean."""
        repeated = sorted({v for v in values if values.count(v) > 1}, key=str)
        if repeated:
            shown = ", ".join(repr(v) for v in repeated)
            raise self.fail(path, f"repeats {shown}; list each value once")

    def guard(self, path: str, fn, *args, **kwargs):
        """Call a constructor; re-raise its RobustBenchError with the file and key path."""
        try:
            return fn(*args, **kwargs)
        except RobustBenchError as e:
            raise self.fail(path, str(e)) from None
        except TypeError as e:
            raise self.fail(path, str(e)) from None


TOP_KEYS = {
    "name": str, "description": str, "notes": str, "dataset": str, "models": list, "width": int,
    "batch_sizes": list, "seeds": list, "test_limit": int, "reference": str, "norms": list,
    "train": dict, "regularization": dict, "stability": dict, "evaluate": dict, "check": dict,
    "plugins": list, "earlier": (dict, list),
}  # fmt: skip


def load_suite(path: str | Path) -> Suite:
    """Parse and fully validate a suite file."""
    path = Path(path)
    if not path.exists():
        shipped = Path(__file__).resolve().parents[2] / "suites"
        hint = f"; shipped suites: {', '.join(sorted(p.name for p in shipped.glob('*.toml')))}"
        raise RobustBenchError(f"suite file {path} not found{hint if shipped.exists() else ''}")
    if not path.is_file():
        raise RobustBenchError(f"suite {path} is not a file; pass a .toml suite file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise RobustBenchError(
            f"{path}: not UTF-8 text (byte {e.start}: {e.object[e.start : e.start + 1]!r}); "
            "save the suite as UTF-8"
        ) from None
    except OSError as e:
        raise RobustBenchError(f"suite {path} cannot be read: {e.strerror}") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise RobustBenchError(f"{path}: not valid TOML: {e}") from None
    r = _Reader(path)
    r.keys(raw, TOP_KEYS, "")
    plugins = r.guard("plugins", load_plugins, r.items(raw, "plugins", str, "") or [], path.parent)

    name = r.value(raw, "name", str, "", default=path.stem)
    dataset = r.value(raw, "dataset", str, "", default="fashion-mnist-mini")
    info = r.guard("dataset", dataset_info, dataset)
    models = r.items(raw, "models", str, "", default=["resnet20"])
    width = r.value(raw, "width", int, "")
    batch_sizes = r.items(raw, "batch_sizes", int, "", default=[128])
    for i, b in enumerate(batch_sizes):
        if info.train_size and not 1 <= b <= info.train_size:
            raise r.fail(
                f"batch_sizes[{i}]",
                f"{b} must lie between 1 and the {info.train_size:,} training images of "
                f"{dataset!r}",
            )
    seeds = r.items(raw, "seeds", int, "", default=[0])  # distinct: a repeat trains one model twice
    for i, seed in enumerate(seeds):
        r.guard(f"seeds[{i}]", check_seed, seed, "seed")
    test_limit = r.count(raw, "test_limit", "", info.test_size)

    norms = _norms(r, raw)
    labels = [label for label, _, _ in norms]
    train_base = _train(r, raw)
    stability = _stability(r, raw)
    evaluations = _evaluations(r, raw, info.test_size)
    test_statistics = _test_statistics(r, raw)
    reference = r.value(raw, "reference", str, "", default="bn" if "bn" in labels else None)
    if reference is not None and reference not in labels:
        raise r.fail("reference", f"{reference!r} is not a norm label of this suite: {labels}")
    check = _check(r, raw)
    _earlier(r, raw)

    # every (model, norm) must build: catches groups that do not divide a stage's channels
    for model in models:
        for i, (label, norm, options) in enumerate(norms):
            r.guard(
                f"norms[{i}] ({label}) with models = {model!r}",
                build_model,
                model,
                norm,
                info.num_classes,
                info.in_channels,
                width,
                **options,
            )

    jobs = []
    for model, (label, norm, options), batch_size, seed in itertools.product(
        models, norms, batch_sizes, seeds
    ):
        base = r.guard(
            "train",
            TrainSpec,
            model=model,
            norm=norm,
            norm_options=options,
            width=width,
            dataset=dataset,
            batch_size=batch_size,
            seed=seed,
            stability=stability,
            **train_base,
        )
        swept = _sweep_applies(r, raw, label, batch_size, labels, batch_sizes)
        for spec in _regularized(r, raw, base) if swept else [base]:
            # the regularization sweep asks how training changes a model: running statistics
            adapted = test_statistics if regularizer_label(spec) == "none" else None
            jobs.append(JobSpec(label, spec, tuple(evaluations), test_limit, None, adapted))
    return Suite(
        name=name,
        path=path,
        text=text,
        description=r.value(raw, "description", str, "", default=""),
        dataset=dataset,
        norms=tuple(labels),
        reference=reference,
        jobs=tuple(jobs),
        evaluations=tuple(evaluations),
        test_limit=test_limit,
        check=check,
        plugins=tuple(plugins),
        test_statistics=test_statistics,
    )


def _norms(r: _Reader, raw: dict) -> list[tuple[str, str, dict]]:
    tables = r.value(raw, "norms", list, "", required=True)
    if not tables:
        raise r.fail("norms", "is empty: the job matrix needs at least one norm")
    out = []
    for i, t in enumerate(tables):
        path = f"norms[{i}]"
        t = r.check_type(t, dict, path)
        r.keys(t, {"name": str, "label": str, "options": dict}, path)
        name = r.value(t, "name", str, path, required=True)
        options = r.value(t, "options", dict, path, default={})
        label = r.value(t, "label", str, path, default=name)
        r.guard(
            f"{path}.name",
            make_norm,
            name,
            32,
            **{k: v for k, v in options.items() if k != "groups"},
        )
        out.append((label, name, options))
    labels = [label for label, _, _ in out]
    dupes = sorted({x for x in labels if labels.count(x) > 1})
    if dupes:
        raise r.fail("norms", f"labels must be unique; repeated: {dupes} (set label = ...)")
    return out


def _train(r: _Reader, raw: dict) -> dict[str, Any]:
    t = r.value(raw, "train", dict, "", default={})
    r.keys(t, TRAIN_KEYS, "train")
    out = {k: r.value(t, k, kind, "train") for k, kind in TRAIN_KEYS.items() if k in t}
    if "perturbation" in out:
        p = out["perturbation"]
        r.keys(p, PERTURBATION_KEYS, "train.perturbation")
        out["perturbation"] = r.guard("train.perturbation", ActivationNoise, **p)
    return out


def _stability(r: _Reader, raw: dict) -> StabilitySpec:
    t = r.value(raw, "stability", dict, "", default={})
    r.keys(t, {"every": int, "etas": list}, "stability")
    kw: dict[str, Any] = {}
    if "every" in t:
        kw["every"] = r.value(t, "every", int, "stability")
    if "etas" in t:
        kw["etas"] = tuple(r.items(t, "etas", float, "stability"))
        if kw.get("every", 0) and len(set(kw["etas"])) < MIN_ETAS:
            raise r.fail(
                "stability.etas",
                f"has {len(set(kw['etas']))} distinct step sizes; Santurkar et al.'s measures "
                f"need at least {MIN_ETAS} (a range over 2 points is one difference), e.g. "
                "[0.05, 0.1, 0.2, 0.4]",
            )
    return r.guard("stability", StabilitySpec, **kw)


def _sweep_applies(r: _Reader, raw: dict, label: str, batch_size: int, labels, batch_sizes) -> bool:
    """Whether the regularization sweep covers this norm label and batch size (its ``norms`` and
    ``batch_sizes`` keys restrict it; by default it covers every job)."""
    t = raw.get("regularization")
    if not isinstance(t, dict):
        return True
    for key, value, known in (("norms", label, labels), ("batch_sizes", batch_size, batch_sizes)):
        if key in t:
            kind = str if key == "norms" else int
            chosen = r.items(t, key, kind, "regularization")
            unknown = [c for c in chosen if c not in known]
            if unknown:
                raise r.fail(f"regularization.{key}", f"{unknown} not in the suite's {list(known)}")
            if value not in chosen:
                return False
    return True


def _regularized(r: _Reader, raw: dict, base: TrainSpec) -> list[TrainSpec]:
    t = r.value(raw, "regularization", dict, "", default=None)
    if t is None:
        return [base]
    allowed = {
        "dropout": list, "mixup": list, "perturbation": list, "factorial": bool, "norms": list,
        "batch_sizes": list,
    }  # fmt: skip
    r.keys(t, allowed, "regularization")
    kw: dict[str, Any] = {"factorial": r.value(t, "factorial", bool, "regularization", False)}
    for key, arg, kind in (
        ("dropout", "dropouts", float),
        ("mixup", "mixups", float),
        ("perturbation", "perturbations", str),
    ):
        if key in t:
            kw[arg] = r.items(t, key, kind, "regularization")
        else:
            kw[arg] = [{"dropout": 0.0, "mixup": 0.0, "perturbation": "none"}[key]]
    for i, mode in enumerate(kw["perturbations"]):
        r.guard(f"regularization.perturbation[{i}]", ActivationNoise, mode=mode)
    return r.guard("regularization", regularization_sweep, base, **kw)


def _evaluations(r: _Reader, raw: dict, test_size: int) -> list[Evaluation]:
    t = r.value(raw, "evaluate", dict, "", default={})
    families = {"noise": dict, "noise_sequence": dict, "corruptions": dict, "attacks": list}
    r.keys(t, {**families, "test_statistics": dict}, "evaluate")
    out = []
    simple = (
        ("noise", NoiseSpec, {"sigmas": list, "seed": int, "limit": int}),
        (
            "noise_sequence",
            NoiseSequenceSpec,
            {"frames": int, "sigma": float, "seed": int, "limit": int},
        ),
        (
            "corruptions",
            CorruptionSpec,
            {
                "names": list,
                "severities": list,
                "seed": int,
                "corruptions_dir": str,
                "table": str,
                "limit": int,
            },
        ),
    )
    for key, cls, allowed in simple:
        if key not in t:
            continue
        path = f"evaluate.{key}"
        table = r.value(t, key, dict, "evaluate")
        r.keys(table, allowed, path)
        kw = {k: r.value(table, k, kind, path) for k, kind in allowed.items() if k in table}
        kw.pop("limit", None)
        limit = r.count(table, "limit", path, test_size)
        for k in ("sigmas", "names", "severities"):
            if k in kw:
                item = {"sigmas": float, "names": str, "severities": int}[k]
                kw[k] = tuple(r.items(table, k, item, path))
        out.append(Evaluation(r.guard(path, cls, **kw), limit))
    names = []
    for i, a in enumerate(r.value(t, "attacks", list, "evaluate", default=[])):
        path = f"evaluate.attacks[{i}]"
        a = r.check_type(a, dict, path)
        r.keys(a, ATTACK_KEYS, path)
        kw = {k: r.value(a, k, kind, path) for k, kind in ATTACK_KEYS.items() if k in a}
        kw.pop("limit", None)
        limit = r.count(a, "limit", path, test_size)
        if "epsilons" in kw:  # numbers or fractions like "8/255", as the tables print them
            kw["epsilons"] = tuple(
                r.guard(f"{path}.epsilons", parse_epsilon, e)
                for e in r.items(a, "epsilons", (float, str), path)
            )
            r.distinct(list(kw["epsilons"]), f"{path}.epsilons")  # 0.0314 and "8/255" alike
        if "name" not in kw:
            raise r.fail(f"{path}.name", "is required")
        if kw["name"] in names:  # results are keyed by the attack's name
            raise r.fail(
                f"{path}.name",
                f"{kw['name']!r} is already evaluated by evaluate.attacks"
                f"[{names.index(kw['name'])}]; an attack's results are keyed by its name, so "
                "list each attack once",
            )
        names.append(kw["name"])
        out.append(Evaluation(r.guard(path, AttackSpec, **kw), limit))
    return out


def _test_statistics(r: _Reader, raw: dict) -> BatchStatisticsPlan | None:
    t = r.value(r.value(raw, "evaluate", dict, "", default={}), "test_statistics", dict,
                "evaluate")  # fmt: skip
    if t is None:
        return None
    path = "evaluate.test_statistics"
    r.keys(t, {"batch": int, "priors": list, "sweep": list}, path)
    kw = {}
    if "batch" in t:
        kw["batch"] = r.value(t, "batch", int, path)
    for key, kind in (("priors", float), ("sweep", int)):
        if key in t:
            kw[key] = tuple(r.items(t, key, kind, path))
    return r.guard(path, BatchStatisticsPlan, **kw)


def _earlier(r: _Reader, raw: dict) -> None:
    """``[earlier]``: an earlier publication of the same question (``store = "PATH:RUN"``,
    ``label``) whose claims the leaderboard sets beside this run's (reporting/earlier.py);
    ``[[earlier]]``, oldest first, for several (a question asked at several budgets).
    Only read by the report; checked here so that a typo fails before the run, not after."""
    t = r.value(raw, "earlier", (dict, list), "")
    if t is None:
        return
    tables = [("earlier", t)] if isinstance(t, dict) else list(enumerate(t))
    if not tables:
        raise r.fail("earlier", "is empty: name a publication (store, label) or leave it out")
    for where, table in tables:
        path = where if isinstance(where, str) else f"earlier[{where}]"
        table = r.check_type(table, dict, path)
        r.keys(table, {"store": str, "label": str}, path)
        r.value(table, "store", str, path, required=True)
        r.value(table, "label", str, path, required=True)


def _check(r: _Reader, raw: dict) -> CheckSettings:
    t = r.value(raw, "check", dict, "", default={})
    allowed = {
        "baseline": str, "primary": list, "secondary": list, "alpha": float,
        "tolerance": float, "detect": float,
    }  # fmt: skip
    r.keys(t, allowed, "check")
    kw: dict[str, Any] = {k: r.value(t, k, kind, "check") for k, kind in allowed.items() if k in t}
    for key in ("primary", "secondary"):
        if key in kw:  # secondary = [] watches no secondary metric, as `check --secondary` does
            kw[key] = tuple(r.items(t, key, str, "check") if kw[key] else ())
            for i, m in enumerate(kw[key]):
                if m.count("/") != 1:
                    raise r.fail(
                        f"check.{key}[{i}]",
                        f"{m!r} must be FAMILY/METRIC, e.g. clean/accuracy or "
                        "attack/robust_accuracy",
                    )
    if "primary" in kw and not kw["primary"]:
        raise r.fail("check.primary", "is empty: name at least one metric, e.g. clean/accuracy")
    if not 0 < kw.get("alpha", 0.05) < 1:
        raise r.fail("check.alpha", "must lie in (0, 1)")
    tolerance = kw.get("tolerance", 0.0)
    if not math.isfinite(tolerance) or tolerance < 0:
        raise r.fail("check.tolerance", "must be a finite number ≥ 0 (e.g. 0.005)")
    detect = kw.get("detect", 0.02)
    if not math.isfinite(detect) or detect <= tolerance:
        raise r.fail("check.detect", f"must be finite and larger than the tolerance ({tolerance})")
    return CheckSettings(**kw, named=tuple(k for k in ("primary", "secondary") if k in kw))
