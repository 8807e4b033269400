"""Normalization layers by name: BN, GN, LN, IN, GN+, BGN, CN, EvoNorm-S0 and your own."""

from robustbench_norm.norms.adaptation import running_statistics_layers, using_batch_statistics
from robustbench_norm.norms.batch_group import BatchGroupNorm
from robustbench_norm.norms.continual import ContinualNorm
from robustbench_norm.norms.evonorm import EvoNormS0
from robustbench_norm.norms.gnplus import VARIANTS as GNPLUS_VARIANTS
from robustbench_norm.norms.gnplus import GNPlus
from robustbench_norm.norms.registry import (
    available,
    convert_norms,
    describe,
    is_norm_layer,
    make_norm,
    norm_name,
    norm_options,
    options_for,
    register_norm,
)
from robustbench_norm.norms.standard import BatchNorm, GroupNorm

__all__ = [
    "GNPLUS_VARIANTS",
    "BatchGroupNorm",
    "BatchNorm",
    "ContinualNorm",
    "EvoNormS0",
    "GNPlus",
    "GroupNorm",
    "available",
    "convert_norms",
    "describe",
    "is_norm_layer",
    "make_norm",
    "norm_name",
    "norm_options",
    "options_for",
    "register_norm",
    "running_statistics_layers",
    "using_batch_statistics",
]
