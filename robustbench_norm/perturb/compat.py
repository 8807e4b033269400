"""Make imagecorruptions 1.1.2 (Dec 2020, the latest release) run on today's libraries.

The real library computes every corruption; this module repairs only its three breakages, and
only inside imagecorruptions' own namespace (numpy and scikit-image are left untouched for
everyone else):

1. ``from pkg_resources import resource_filename`` fails where setuptools ≥ 82 dropped
   ``pkg_resources``. A minimal stand-in is put in ``sys.modules`` for the duration of the import
   only (``resource_filename`` is all imagecorruptions uses: locating the frost images).
2. ``skimage.filters.gaussian(..., multichannel=True)`` raises TypeError on scikit-image ≥ 0.20,
   where the keyword became ``channel_axis``; this breaks ``gaussian_blur`` and ``glass_blur``.
   The module's ``gaussian`` is replaced by a wrapper that translates the keyword.
3. ``np.float_`` is gone in numpy ≥ 2; this breaks ``fog``. The module sees numpy through a proxy
   that adds ``float_`` back.

One more repair makes the library reproducible: ``impulse_noise`` calls scikit-image's
``random_noise``, which draws from its own generator and ignores ``np.random.seed``. The module's
``sk`` proxy passes a generator seeded from ``np.random``, so seeding numpy fixes every
corruption's output.

Use :func:`load` instead of ``import imagecorruptions``.
"""

from __future__ import annotations

import os
import sys
import types
from functools import cache

import numpy as np

from robustbench_norm.errors import RobustBenchError

#: the release this layer was written and tested against
SUPPORTED_VERSION = "1.1.2"


def _resource_filename(module_name: str, path: str) -> str:
    """pkg_resources.resource_filename for a module: ``path`` relative to its folder."""
    module = sys.modules[module_name]
    base = os.path.dirname(module.__file__)
    return os.path.normpath(os.path.join(base, path))


class _NumpyWithFloat(types.ModuleType):
    """numpy, plus the ``float_`` alias numpy 2 removed."""

    float_ = np.float64

    def __getattr__(self, name: str):
        return getattr(np, name)


def _gaussian_accepting_multichannel(gaussian):
    def wrapped(image, *args, multichannel=None, **kwargs):
        if multichannel is not None and "channel_axis" not in kwargs:
            kwargs["channel_axis"] = -1 if multichannel else None
        return gaussian(image, *args, **kwargs)

    return wrapped


class _SkimageSeededFromNumpy(types.ModuleType):
    """skimage, whose ``util.random_noise`` draws from a generator seeded by ``np.random``."""

    def __init__(self, skimage):
        super().__init__("skimage")
        self._skimage = skimage
        util = types.ModuleType("skimage.util")
        util.__getattr__ = lambda name: getattr(skimage.util, name)

        def random_noise(image, *args, rng=None, **kwargs):
            if rng is None:
                rng = np.random.default_rng(np.random.randint(0, 2**31 - 1))
            return skimage.util.random_noise(image, *args, rng=rng, **kwargs)

        util.random_noise = random_noise
        self.util = util

    def __getattr__(self, name: str):
        return getattr(self._skimage, name)


@cache
def load() -> types.ModuleType:
    """imagecorruptions, imported and repaired. Raises RobustBenchError if it is missing."""
    shim = None
    try:
        import pkg_resources  # noqa: F401  (present on old setuptools: nothing to repair)
    except ImportError:
        shim = types.ModuleType("pkg_resources")
        shim.resource_filename = _resource_filename
        sys.modules["pkg_resources"] = shim
    try:
        import imagecorruptions
        import imagecorruptions.corruptions as corruptions
    except ImportError as e:
        raise RobustBenchError(
            f"imagecorruptions is not importable ({e}); install it without its dependencies: "
            f"pip install --no-deps imagecorruptions=={SUPPORTED_VERSION}  (`make setup` does this)"
        ) from e
    finally:
        if shim is not None and sys.modules.get("pkg_resources") is shim:
            del sys.modules["pkg_resources"]

    import skimage
    import skimage.filters

    corruptions.np = _NumpyWithFloat("numpy")
    corruptions.gaussian = _gaussian_accepting_multichannel(skimage.filters.gaussian)
    corruptions.sk = _SkimageSeededFromNumpy(skimage)
    return imagecorruptions


def version() -> str:
    from importlib.metadata import version as dist_version

    return dist_version("imagecorruptions")
