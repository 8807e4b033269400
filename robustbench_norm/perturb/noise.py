"""Gaussian pixel noise and noise sequences, drawn once per (split, σ, seed) for every model.

Noise is added in [0, 1] pixel space, clipped, and quantized back to uint8 like any stored image.
The generator is seeded from (seed, σ, the split's content hash), never from the model or the
batch, so every model of a suite, at any batch size, sees exactly the same noisy pixels.
"""

from __future__ import annotations

import numpy as np

from robustbench_norm.data import Split

DEFAULT_SIGMAS = (0.02, 0.05, 0.1, 0.2)


def _rng(split: Split, seed: int, *tags: int) -> np.random.Generator:
    return np.random.default_rng([seed, int(split.fingerprint[:15], 16), *tags])


def _quantize(x: np.ndarray) -> np.ndarray:
    return np.round(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)


def _truncate(x: np.ndarray) -> np.ndarray:
    """To 8 bits as CIFAR-10-P's make_cifar_p.py stores its frames: np.uint8(255 · clip(x))."""
    return (np.clip(x, 0.0, 1.0) * np.float32(255.0)).astype(np.uint8)


def gaussian_noise_images(split: Split, sigma: float, seed: int = 0) -> np.ndarray:
    """The split's images plus N(0, σ²) per pixel (in [0, 1] units), clipped, as uint8."""
    if sigma == 0:
        return split.images
    rng = _rng(split, seed, round(sigma * 1_000_000))
    x = split.images.astype(np.float32) / 255.0
    return _quantize(x + rng.standard_normal(x.shape, dtype=np.float32) * np.float32(sigma))


def noise_sequence_images(split: Split, frames: int, sigma: float, seed: int = 0) -> np.ndarray:
    """CIFAR-10-P-style sequences: (frames, N, H, W, C) uint8, frame 0 clean, every later frame
    with fresh N(0, σ²) noise of the same σ, truncated to 8 bits as CIFAR-10-P's frames are."""
    rng = _rng(split, seed, frames, round(sigma * 1_000_000), 2)
    x = split.images.astype(np.float32) / 255.0
    out = np.empty((frames, *split.images.shape), dtype=np.uint8)
    out[0] = split.images
    for k in range(1, frames):
        noise = rng.standard_normal(x.shape, dtype=np.float32) * np.float32(sigma)
        out[k] = _truncate(x + noise)
    return out
