"""Shared plumbing for the layers built on per-(n, c) moments (GN+, CN, BGN).

A subclass says two things: which statistics its batch branch tracks (``_tracked_moments``) and
how the per-(n, c) moments become the output's scale and shift (``_coefficients``). Running
statistics, the training-batch check, the fused/autograd switch and the parameter layout
(``weight``, ``bias``, ``running_mean``, ``running_var``, ``num_batches_tracked``, as in
BatchNorm2d) live here once.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
from torch import Tensor, nn

from robustbench_norm.errors import RobustBenchError
from robustbench_norm.norms import triton_layers
from robustbench_norm.norms.checks import check_input, check_num_channels, check_options
from robustbench_norm.norms.kernels import compiled
from robustbench_norm.norms.moments import (
    batch_moments,
    check_trainable_batch,
    moment_affine,
    normalizer,
    update_running_stats,
)


class MomentNorm(nn.Module):
    """Base class: ``y = a(moments)·x + b(moments)`` with BatchNorm-style running statistics."""

    #: registry name, used in error messages
    layer = "moment_norm"

    def __init__(
        self,
        num_channels: int,
        *,
        eps: float,
        momentum: float | None,
        impl: str,
        stats_size: int | None = None,
    ) -> None:
        super().__init__()
        check_num_channels(num_channels, self.layer)
        check_options(self.layer, eps=eps, momentum=momentum, impl=impl)
        if impl == "triton" and type(self)._triton_variant is None:
            raise RobustBenchError(
                f"{self.layer}: impl='triton' is not available for this layer (the Triton "
                "kernels cover GN+, CN and BGN); use impl='kernels'"
            )
        self.num_channels = num_channels
        self.eps = eps
        self.momentum = momentum
        self.impl = impl
        size = num_channels if stats_size is None else stats_size
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))
        self.register_buffer("running_mean", torch.zeros(size))
        self.register_buffer("running_var", torch.ones(size))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    # -- what a subclass defines ------------------------------------------------------------
    def _tracked_moments(self, mean: Tensor, var: Tensor) -> tuple[Tensor, Tensor]:
        """Per-(n, c) moments of the tensor whose batch statistics the layer tracks."""
        return mean, var

    def _batch_statistics(self, mean: Tensor, var: Tensor) -> tuple[Tensor, Tensor]:
        """Batch mean and biased variance of the tracked tensor, shaped like the buffers."""
        return batch_moments(mean, var)

    def _values_per_statistic(self, x: Tensor) -> int:
        return x.shape[0] * x.shape[2] * x.shape[3]

    def _extra_params(self) -> tuple[Tensor, ...]:
        return ()

    def _coefficients(
        self,
        mean: Tensor,
        var: Tensor,
        weight: Tensor,
        bias: Tensor,
        *extra: Tensor,
        training: bool,
    ) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    # -- shared machinery -------------------------------------------------------------------
    def _batch_normalizer(self, mean: Tensor, var: Tensor, training: bool) -> tuple[Tensor, Tensor]:
        """(scale, shift) of the batch branch: batch statistics in training, running in eval."""
        if training:
            mu, sigma2 = self._batch_statistics(mean, var)
        else:
            mu = self.running_mean.to(mean.dtype)
            sigma2 = self.running_var.to(mean.dtype)
        return normalizer(mu, sigma2, self.eps)

    def _observe(self, count: int, mean: Tensor, var: Tensor) -> None:
        self.num_batches_tracked.add_(1)
        momentum = self.momentum
        if momentum is None:  # cumulative moving average, as BatchNorm2d(momentum=None)
            momentum = 1.0 / float(self.num_batches_tracked)
        mu, sigma2 = self._batch_statistics(*self._tracked_moments(mean, var))
        update_running_stats(self.running_mean, self.running_var, mu, sigma2, count, momentum)

    #: the layer composed from ATen's norm kernels (kernels.py), the same composition from
    #: functional ops for compiled code, and their arguments
    _kernel_function: type[torch.autograd.Function]
    _kernel_functional: Callable[..., Tensor]

    def _kernel_args(self, x: Tensor, momentum: float) -> tuple:
        """The arguments of ``_kernel_function`` (this form: the grouped layers CN and BGN)."""
        buffers = (self.running_mean, self.running_var)
        state = (self.groups, self.eps, momentum)
        return (x, self.weight, self.bias, *buffers, self.training, state)

    #: what the Triton kernels (triton_layers.py) compute this layer as: a name of
    #: ``triton_layers.VARIANT_CODES``, or None for a subclass with coefficients of its own
    _triton_variant: str | None = None

    def _triton_args(self, x: Tensor, momentum: float) -> tuple:
        """The arguments of ``triton_layers.apply``; θ only for a layer that learns λ (GN+)."""
        theta = getattr(self, "lambda_logit", None)
        buffers = (self.running_mean, self.running_var)
        state = (self.groups, self.eps, momentum, self._triton_variant)
        return (x, self.weight, self.bias, theta, *buffers, self.training, state)

    def resolved_impl(self, x: Tensor | None = None) -> str:
        """``auto`` → ``triton`` for a CUDA input the Triton kernels take (GN+, CN, BGN: three
        launches each way, the activation read as often as BN reads it) once they are measured
        on a GPU (``triton_layers.AUTO_PICKS_TRITON``), else ``kernels``:
        7 + 14 ops per call, traceable by ``torch.compile``, and on CPU as fast or faster for
        the benchmark's networks (ResNet-20 width 8 at batch 8: 1.35× BN against 2.39× for
        ``fused``; ResNet-18 at batch 32: 1.06× against 1.10×). ``fused`` reads the activation
        once per direction instead of twice and is faster for a layer alone at large
        activations on CPU; choose it explicitly there."""
        if self.impl != "auto":
            return self.impl
        if (
            triton_layers.AUTO_PICKS_TRITON
            and x is not None
            and x.is_cuda
            and self._triton_variant is not None
            and not torch.compiler.is_compiling()
            and triton_layers.unsupported(x, self.num_channels // self.groups) is None
        ):
            return "triton"
        return "kernels"

    def _step_momentum(self) -> float:
        """The running-average weight of this forward (0 in eval), counting the batch."""
        if not self.training:
            return 0.0
        self.num_batches_tracked.add_(1)
        if self.momentum is None:  # cumulative moving average, as BatchNorm2d(momentum=None)
            return 1.0 / float(self.num_batches_tracked)
        return self.momentum

    def forward(self, x: Tensor) -> Tensor:
        check_input(x, self.num_channels, self.layer)
        if self.training:
            count = self._values_per_statistic(x)
            check_trainable_batch(x, count)
        impl = self.resolved_impl(x)
        if impl == "triton" and not torch.compiler.is_compiling():
            with torch.autocast(device_type=x.device.type, enabled=False):
                return triton_layers.apply(*self._triton_args(x, self._step_momentum()))
        if impl in ("kernels", "compiled", "triton"):  # triton inside a compiled model: as kernels
            momentum = self._step_momentum()
            if impl == "compiled":
                apply = compiled(self._kernel_functional)
            elif torch.compiler.is_compiling():  # inside a compiled model: see kernels.py
                apply = self._kernel_functional
            else:
                apply = self._kernel_function.apply
            with torch.autocast(device_type=x.device.type, enabled=False):
                return apply(*self._kernel_args(x, momentum))
        return moment_affine(
            x,
            partial(self._coefficients, training=self.training),
            self.weight,
            self.bias,
            *self._extra_params(),
            impl=impl,
            observe=partial(self._observe, count) if self.training else None,
        )

    def extra_repr(self) -> str:
        return f"{self.num_channels}, eps={self.eps}, momentum={self.momentum}, impl={self.impl!r}"
