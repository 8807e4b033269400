"""robustbench_norm: does a normalization layer make image classifiers train more stably and
resist distortion better than BatchNorm and GroupNorm? The public API, re-exported."""

from robustbench_norm.errors import NormInputError, RobustBenchError
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
)

__version__ = "0.1.0"

__all__ = [
    "BatchGroupNorm",
    "BatchNorm",
    "ContinualNorm",
    "EvoNormS0",
    "GNPlus",
    "GroupNorm",
    "NormInputError",
    "RobustBenchError",
    "__version__",
    "available",
    "convert_norms",
    "make_norm",
    "register_norm",
]
