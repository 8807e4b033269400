"""What an evaluation applies: the perturbation families (clean, Gaussian noise, CIFAR-10-P
noise sequences, common corruptions; attacks are :class:`perturb.attacks.AttackSpec`) and the
test-time statistics BN-style layers normalize with (:class:`BatchStatistics`, and a suite's
:class:`BatchStatisticsPlan`). Frozen, validated on construction, hashed into job keys."""

from __future__ import annotations

from dataclasses import dataclass

from robustbench_norm.errors import RobustBenchError
from robustbench_norm.norms.adaptation import check_prior
from robustbench_norm.perturb.attacks import AttackSpec
from robustbench_norm.perturb.corruptions import (
    ALL,
    SEVERITIES,
    check_names,
    check_severities,
    check_table,
)
from robustbench_norm.perturb.noise import DEFAULT_SIGMAS
from robustbench_norm.specs import check_seed


@dataclass(frozen=True)
class CleanSpec:
    """No perturbation: clean accuracy."""

    family = "clean"


@dataclass(frozen=True)
class NoiseSpec:
    """Additive Gaussian pixel noise at each σ (in [0, 1] units), clipped, uint8."""

    sigmas: tuple[float, ...] = DEFAULT_SIGMAS
    seed: int = 0
    family = "noise"

    def __post_init__(self) -> None:
        object.__setattr__(self, "sigmas", tuple(float(s) for s in self.sigmas))
        if not self.sigmas or not all(0 <= s <= 1 for s in self.sigmas):
            raise RobustBenchError(
                f"noise.sigmas={self.sigmas} must be non-empty and each in [0, 1] (pixels span "
                "[0, 1]: σ = 1 already drowns the image), e.g. [0.02, 0.05, 0.1, 0.2]"
            )
        check_seed(self.seed, "noise.seed")


@dataclass(frozen=True)
class NoiseSequenceSpec:
    """CIFAR-10-P-style Gaussian-noise sequences for flip probability: frame 0 is the clean
    image, frames 1 … frames−1 each add *fresh* noise of one fixed σ (make_cifar_p.py: 30
    frames at σ = 0.02). A growing σ would measure accuracy loss instead of prediction
    stability, and a model that always predicts one class would score best."""

    frames: int = 31
    sigma: float = 0.02
    seed: int = 0
    family = "noise_sequence"

    def __post_init__(self) -> None:
        if self.frames < 3 or not (0 < self.sigma < 1):
            raise RobustBenchError(
                f"noise_sequence: frames={self.frames} must be >= 3 and sigma={self.sigma} in "
                "(0, 1), e.g. frames = 31, sigma = 0.02 (CIFAR-10-P)"
            )
        check_seed(self.seed, "noise_sequence.seed")


@dataclass(frozen=True)
class CorruptionSpec:
    """The common corruptions at each (name, severity) of a severity ``table`` (imagecorruptions'
    ``imagenet-c`` or ``cifar-10-c``, see :mod:`perturb.corruptions`); ``corruptions_dir`` reads
    CIFAR-10-C style precomputed arrays instead of generating them."""

    names: tuple[str, ...] = ALL
    severities: tuple[int, ...] = SEVERITIES
    seed: int = 0
    corruptions_dir: str | None = None
    table: str = "imagenet-c"
    family = "corruption"

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", tuple(self.names))
        object.__setattr__(self, "severities", tuple(self.severities))
        if not self.names or not self.severities:
            raise RobustBenchError("corruptions: names and severities must be non-empty")
        check_names(self.names)
        check_severities(self.severities)
        check_seed(self.seed, "corruptions.seed")
        check_table(self.table, "corruptions.table")
        if self.corruptions_dir is not None and self.table != "imagenet-c":
            raise RobustBenchError(
                "corruptions: table applies to generated corruptions; precomputed arrays "
                "(corruptions_dir) carry their own severities: drop one of the two"
            )


@dataclass(frozen=True)
class BatchStatistics:
    """Normalize with the statistics of each evaluated batch of ``batch`` images, mixed with the
    running averages at Schneider et al.'s prior strength ``prior`` (0: the batch alone). See
    :mod:`robustbench_norm.norms.adaptation`."""

    batch: int
    prior: float = 0.0

    def __post_init__(self) -> None:
        if isinstance(self.batch, bool) or not isinstance(self.batch, int) or self.batch < 1:
            raise RobustBenchError(
                f"test_statistics batch={self.batch!r} must be a positive integer: the images "
                "that share one set of statistics, e.g. 500"
            )
        object.__setattr__(self, "prior", check_prior(self.prior, "test_statistics.priors"))

    @property
    def label(self) -> str:
        """How results and leaderboard rows name the setting: ``test-batch 500`` or
        ``prior 16 · batch 500``."""
        if self.prior == 0:
            return f"test-batch {self.batch}"
        return f"prior {self.prior:g} · batch {self.batch}"


@dataclass(frozen=True)
class BatchStatisticsPlan:
    """A suite's ``[evaluate.test_statistics]``: which test-time statistics its models with
    running statistics are evaluated under, beside the running averages.

    At ``batch`` (and at each of ``priors``) every evaluation but the attacks runs again: these
    are the leaderboard's adapted rows (``bn · test-batch 500``). Each size in ``sweep`` reruns
    only clean accuracy and Gaussian noise: the curve of accuracy against the adaptation batch,
    which shows where batch statistics fail (batch 1 has one image's statistics)."""

    batch: int = 500
    priors: tuple[float, ...] = ()
    sweep: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "priors", tuple(check_prior(p, "priors") for p in self.priors))
        object.__setattr__(self, "sweep", tuple(self.sweep))
        BatchStatistics(self.batch)
        for b in self.sweep:
            BatchStatistics(b)

    def settings(self) -> list[tuple[BatchStatistics, bool]]:
        """(setting, whether every family runs under it) in the order results are stored."""
        out = []
        for size in dict.fromkeys((self.batch, *self.sweep)):
            full = size == self.batch
            out += [(BatchStatistics(size, p), full) for p in (0.0, *self.priors)]
        return out


PerturbationSpec = CleanSpec | NoiseSpec | NoiseSequenceSpec | CorruptionSpec | AttackSpec


def family_of(spec: PerturbationSpec) -> str:
    return "attack" if isinstance(spec, AttackSpec) else spec.family
