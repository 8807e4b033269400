"""Name → layer registry: what suites, models and users refer to.

A layer is a factory ``factory(num_channels, **options) -> nn.Module``. Registering one
(``register_norm("mine", MyNorm)``) is all it takes to benchmark it: models, suites and
``convert_norms`` find it by name, and its options are checked against the factory's signature
so a misspelt option fails at once instead of being silently ignored.

Layers outside this package arrive three ways: a suite's ``plugins`` or the CLI's ``--plugin``
(plugins.py imports the module, which registers), or the ``robustbench_norm.norms`` entry-point
group of an installed package (loaded here the first time an unknown name is asked for). Every
such layer has an *identity*, the hash of the source file that defines it, which enters the cache
key of every checkpoint and job that uses it: editing the layer invalidates its results.
"""

from __future__ import annotations

import ast
import hashlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import torch
from torch import nn

from robustbench_norm.errors import RobustBenchError
from robustbench_norm.norms.batch_group import BatchGroupNorm
from robustbench_norm.norms.checks import check_options
from robustbench_norm.norms.continual import ContinualNorm
from robustbench_norm.norms.evonorm import EvoNormS0
from robustbench_norm.norms.gnplus import GNPlus
from robustbench_norm.norms.standard import BatchNorm, GroupNorm, instance_norm, layer_norm

NormFactory = Callable[..., nn.Module]

#: attribute set on every module made by :func:`make_norm`: (registry name, num_channels)
_TAG = "_robustbench_norm"

#: state shared by name between layers, copied by :func:`convert_norms` when shapes agree
_TRANSFERABLE = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


@dataclass(frozen=True)
class NormEntry:
    name: str
    factory: NormFactory
    description: str


_REGISTRY: dict[str, NormEntry] = {}


def register_norm(
    name: str,
    factory: NormFactory | None = None,
    *,
    description: str = "",
    overwrite: bool = False,
):
    """Register ``factory(num_channels, **options) -> nn.Module`` under ``name``.

    Usable directly (``register_norm("mine", MyNorm)``) or as a class/function decorator
    (``@register_norm("mine")``). Re-registering a name needs ``overwrite=True``.
    """

    def add(f: NormFactory) -> NormFactory:
        if not isinstance(name, str) or not name:
            raise RobustBenchError(f"register_norm: name={name!r} must be a non-empty string")
        if not callable(f):
            raise RobustBenchError(f"register_norm({name!r}): factory {f!r} is not callable")
        if name in _REGISTRY and not overwrite:
            raise RobustBenchError(
                f"register_norm: {name!r} is already registered; pass overwrite=True to replace it"
            )
        doc = description or (inspect.getdoc(f) or "").split("\n")[0]
        _REGISTRY[name] = NormEntry(name, f, doc)
        return f

    return add if factory is None else add(factory)


#: the entry-point group through which installed packages register layers
ENTRY_POINT_GROUP = "robustbench_norm.norms"
_entry_points_loaded = False


def load_entry_points() -> None:
    """Import every layer that installed packages declare under :data:`ENTRY_POINT_GROUP`
    (once per process). An entry point names a factory, registered under the entry point's
    name, or a module, which registers its layers itself on import."""
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            obj = ep.load()
        except Exception as e:
            raise RobustBenchError(
                f"entry point {ep.name} = {ep.value} ({ENTRY_POINT_GROUP}) failed to load: {e}"
            ) from e
        if callable(obj) and not inspect.ismodule(obj) and ep.name not in _REGISTRY:
            register_norm(ep.name, obj)


def available() -> list[str]:
    """Registered layer names, sorted (installed packages' entry points included)."""
    load_entry_points()
    return sorted(_REGISTRY)


def is_builtin(name: str) -> bool:
    return name in BUILTIN


def layer_identity(name: str) -> str:
    """'' for this package's layers (its sources are hashed with the rest of the code), else
    the sha256 of the source file that defines the layer's factory (the factory's own source
    when it has no file): what makes an edited plugin layer a different layer."""
    if is_builtin(name):
        return ""
    return _source_hash(_entry(name).factory)


def layer_origin(name: str) -> str | None:
    """Where a non-built-in layer comes from (its module and file), for messages."""
    if is_builtin(name) or name not in _REGISTRY:
        return None
    factory = _REGISTRY[name].factory
    where = inspect.getsourcefile(factory) if _has_source(factory) else None
    return f"{factory.__module__}" + (f" ({where})" if where else "")


def _has_source(f) -> bool:
    try:
        inspect.getsourcefile(f)
        return True
    except TypeError:
        return False


@cache
def _source_hash(factory) -> str:
    try:
        path = inspect.getsourcefile(factory)
        text = Path(path).read_bytes() if path else inspect.getsource(factory).encode()
    except (OSError, TypeError):
        text = repr(factory).encode()  # defined interactively: its name is all there is
    return hashlib.sha256(_code_only(text)).hexdigest()[:16]


def _code_only(source: bytes) -> bytes:
    """The source's syntax tree without comments, docstrings and layout: editing a comment or
    reformatting a plugin must not retrain its layer (its fingerprint does not change either).
    Source that does not parse is hashed as it is."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return source
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and _is_docstring(body[0]):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree, include_attributes=False).encode()


def _is_docstring(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
    )


def describe() -> dict[str, str]:
    """Name → one-line description, for ``robustbench-norm list norms``."""
    return {n: _REGISTRY[n].description for n in available()}


def _entry(name: str) -> NormEntry:
    if isinstance(name, str) and name not in _REGISTRY:
        load_entry_points()
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise RobustBenchError(
            f"unknown norm {name!r}; valid names: {', '.join(available())}. A layer of your "
            "own: register it in a module and pass it with --plugin MODULE (or a suite's "
            "plugins = [...])"
        ) from None


def norm_options(name: str) -> list[str] | None:
    """The options ``name`` accepts, or None when its factory takes ``**kwargs``."""
    params = list(inspect.signature(_entry(name).factory).parameters.values())[1:]
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


def options_for(names: list[str], options: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Split one option set across several layers: each gets the options it accepts.

    Lets ``--norm bn gn gnplus --norm-option groups=auto`` mean "groups for those that have
    groups"; an option that none of ``names`` accepts is still an error.
    """
    accepted = {n: norm_options(n) for n in names}
    unused = [k for k in options if all(a is not None and k not in a for a in accepted.values())]
    if unused:
        raise RobustBenchError(
            f"no selected norm ({', '.join(names)}) has option {', '.join(map(repr, unused))}"
        )
    return {
        n: {k: v for k, v in options.items() if a is None or k in a} for n, a in accepted.items()
    }


def make_norm(name: str, num_channels: int, **options) -> nn.Module:
    """Build the layer registered as ``name`` for ``num_channels`` channels."""
    entry = _entry(name)
    allowed = norm_options(name)
    if allowed is not None:
        unknown = sorted(set(options) - set(allowed))
        if unknown:
            raise RobustBenchError(
                f"norm {name!r} has no option {', '.join(map(repr, unknown))}; "
                f"valid options: {', '.join(allowed) or '(none)'}"
            )
    # eps and momentum mean the same in every family (impl is the moment layers' own)
    check_options(name, **{k: v for k, v in options.items() if k in ("eps", "momentum")})
    try:
        module = entry.factory(num_channels, **options)
    except TypeError as e:  # e.g. a wrongly typed option reaching torch
        raise RobustBenchError(f"norm {name!r} with options {options}: {e}") from e
    setattr(module, _TAG, (name, num_channels))
    return module


def norm_name(module: nn.Module) -> str | None:
    """The registry name a module was made under, or None if it is not a registry layer."""
    tag = getattr(module, _TAG, None)
    return tag[0] if tag else None


def _channels_of(module: nn.Module) -> int | None:
    tag = getattr(module, _TAG, None)
    if tag:
        return tag[1]
    if isinstance(module, nn.BatchNorm2d | nn.InstanceNorm2d):
        return module.num_features
    if isinstance(module, nn.GroupNorm):
        return module.num_channels
    return None


def is_norm_layer(module: nn.Module) -> bool:
    """True for BatchNorm2d, GroupNorm, InstanceNorm2d and anything made by :func:`make_norm`."""
    return _channels_of(module) is not None


def convert_norms(model: nn.Module, name: str, **options) -> nn.Module:
    """Replace every 2-D norm layer in ``model`` by the registered layer ``name``.

    Finds ``BatchNorm2d``, ``GroupNorm``, ``InstanceNorm2d`` and anything made by
    :func:`make_norm`, anywhere in the module tree (a torchvision model works as is). Weight,
    bias and running statistics are copied where the new layer has a tensor of the same name and
    shape, so converting a trained BN model to GN+ keeps what BN learned. Device, dtype and
    train/eval mode are kept. The model is changed in place and also returned (a model that *is*
    a norm layer is returned replaced).
    """
    _entry(name)  # fail on a bad name before touching the model

    def replacement(old: nn.Module) -> nn.Module:
        new = make_norm(name, _channels_of(old), **options)
        ref = next(iter(old.parameters()), None)
        if ref is None:
            ref = next(iter(old.buffers()), None)
        if ref is not None:
            new = new.to(device=ref.device, dtype=ref.dtype if ref.is_floating_point() else None)
        with torch.no_grad():
            for attr in _TRANSFERABLE:
                src, dst = getattr(old, attr, None), getattr(new, attr, None)
                if (
                    isinstance(src, torch.Tensor)
                    and isinstance(dst, torch.Tensor)
                    and src.shape == dst.shape
                ):
                    dst.copy_(src)
        return new.train(old.training)

    if is_norm_layer(model):
        return replacement(model)
    for parent in list(model.modules()):
        for child_name, child in list(parent.named_children()):
            if is_norm_layer(child):
                setattr(parent, child_name, replacement(child))
    return model


def _identity(num_channels: int) -> nn.Module:
    """No normalization (a control: what the norm layer is worth at all)."""
    return nn.Identity()


register_norm(
    "bn",
    BatchNorm,
    description="BatchNorm2d (torch's kernel): batch statistics, running estimates in eval",
)
register_norm(
    "gn",
    GroupNorm,
    description="GroupNorm (torch's kernel): per-sample statistics over channel groups",
)
register_norm("ln", layer_norm, description="LayerNorm for conv nets: GroupNorm with one group")
register_norm("in", instance_norm, description="InstanceNorm: GroupNorm with one group per channel")
register_norm(
    "gnplus",
    GNPlus,
    description="GN+: learnable mix λ·GN + (1−λ)·BN (variants parallel, gn_first, bn_first)",
)
register_norm(
    "bgn", BatchGroupNorm, description="Batch Group Norm: statistics over batch × channel group"
)
register_norm("cn", ContinualNorm, description="Continual Norm: GN without affine, then BN")
register_norm(
    "evonorm_s0", EvoNormS0, description="EvoNorm-S0: x·sigmoid(v·x) / group std, batch-independent"
)
register_norm("none", _identity, description="identity: no normalization")

#: the layers this package ships (their code is part of every cache key already)
BUILTIN = frozenset(_REGISTRY)
