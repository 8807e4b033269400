"""Evaluation: a trained model under a perturbation family, with per-example results.

* ``settings.py``: what is applied — the perturbation families and test-time statistics
* ``evaluate.py``: :func:`evaluate`, the per-example correctness and metrics of one family
* ``metrics.py``: accuracy, CE/mCE, flip probability, a confidence interval
* ``adapters.py``: the input contract of an evaluated model, and :class:`InputAdapter`
"""

from robustbench_norm.evaluation.evaluate import (
    Condition,
    EvalResult,
    corruption_error_table,
    evaluate,
    predict,
)
from robustbench_norm.evaluation.settings import (
    BatchStatistics,
    BatchStatisticsPlan,
    CleanSpec,
    CorruptionSpec,
    NoiseSequenceSpec,
    NoiseSpec,
    PerturbationSpec,
    family_of,
)

__all__ = [
    "BatchStatistics",
    "BatchStatisticsPlan",
    "CleanSpec",
    "Condition",
    "CorruptionSpec",
    "EvalResult",
    "NoiseSequenceSpec",
    "NoiseSpec",
    "PerturbationSpec",
    "corruption_error_table",
    "evaluate",
    "family_of",
    "predict",
]
