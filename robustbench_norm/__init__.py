"""robustbench_norm: does a normalization layer make image classifiers train more stably and
resist distortion better than BatchNorm and GroupNorm?

The public API, re-exported by name. Names are imported on first use, so ``import
robustbench_norm`` stays light (no foolbox, pandas or matplotlib until they are needed).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from robustbench_norm.version import __version__

#: public name → module that defines it
_EXPORTS = {
    "RobustBenchError": "errors",
    "NormInputError": "errors",
    "make_norm": "norms",
    "convert_norms": "norms",
    "register_norm": "norms",
    "available": "norms",
    "BatchNorm": "norms",
    "GroupNorm": "norms",
    "GNPlus": "norms",
    "BatchGroupNorm": "norms",
    "ContinualNorm": "norms",
    "EvoNormS0": "norms",
    "build_model": "training.models",
    "load_split": "data",
    "TrainSpec": "training",
    "train": "training",
    "load_trained": "training",
    "evaluate": "evaluation",
    "NoiseSpec": "evaluation",
    "NoiseSequenceSpec": "evaluation",
    "CorruptionSpec": "evaluation",
    "BatchStatistics": "evaluation",
    "using_batch_statistics": "norms",
    "AttackSpec": "perturb.attacks",
    "load_suite": "suites.suite",
    "run_suite": "suites.execute",
    "RunSettings": "suites.execute",
    "Store": "suites.store",
    "write_report": "reporting.report",
    "compare_runs": "reporting.check",
    "baseline_pool": "reporting.pool",
    "detect_drift": "reporting.drift",
    "benchmark": "suites.external",
    "InputAdapter": "evaluation.adapters",
    "StorageError": "errors",
}

__all__ = [
    "AttackSpec",
    "BatchGroupNorm",
    "BatchNorm",
    "BatchStatistics",
    "ContinualNorm",
    "CorruptionSpec",
    "EvoNormS0",
    "GNPlus",
    "GroupNorm",
    "InputAdapter",
    "NoiseSequenceSpec",
    "NoiseSpec",
    "NormInputError",
    "RobustBenchError",
    "RunSettings",
    "StorageError",
    "Store",
    "TrainSpec",
    "__version__",
    "available",
    "baseline_pool",
    "benchmark",
    "build_model",
    "compare_runs",
    "convert_norms",
    "detect_drift",
    "evaluate",
    "load_split",
    "load_suite",
    "load_trained",
    "make_norm",
    "register_norm",
    "run_suite",
    "train",
    "using_batch_statistics",
    "write_report",
]


def __getattr__(name: str):
    if name in _EXPORTS:
        module = importlib.import_module(f"robustbench_norm.{_EXPORTS[name]}")
        value = getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'robustbench_norm' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:  # for type checkers and IDEs: the same names, imported eagerly
    from robustbench_norm.data import load_split
    from robustbench_norm.errors import NormInputError, RobustBenchError, StorageError
    from robustbench_norm.evaluation import (
        BatchStatistics,
        CorruptionSpec,
        NoiseSequenceSpec,
        NoiseSpec,
        evaluate,
    )
    from robustbench_norm.evaluation.adapters import InputAdapter
    from robustbench_norm.norms import (
        BatchGroupNorm,
        BatchNorm,
        ContinualNorm,
        EvoNormS0,
        GNPlus,
        GroupNorm,
        available,
        convert_norms,
        make_norm,
        register_norm,
        using_batch_statistics,
    )
    from robustbench_norm.perturb.attacks import AttackSpec
    from robustbench_norm.reporting.check import compare_runs
    from robustbench_norm.reporting.drift import detect_drift
    from robustbench_norm.reporting.pool import baseline_pool
    from robustbench_norm.reporting.report import write_report
    from robustbench_norm.suites.execute import RunSettings, run_suite
    from robustbench_norm.suites.external import benchmark
    from robustbench_norm.suites.store import Store
    from robustbench_norm.suites.suite import load_suite
    from robustbench_norm.training import TrainSpec, load_trained, train
    from robustbench_norm.training.models import build_model
