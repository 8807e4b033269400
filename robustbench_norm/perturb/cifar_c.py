"""The 19 common corruptions at CIFAR-10-C's severities, for 32×32 images.

imagecorruptions hard-codes ImageNet-C's constants, made for 224-pixel images. On 32×32 images
they are far harsher than the published CIFAR-10-C (Gaussian noise σ 0.08–0.38 against
0.04–0.10, a Gaussian blur of σ 1–6 pixels against 0.4–1, fog that leaves every model at
chance), so a leaderboard on small images loses most of its corruptions to chance. This module
is the other table, the one Hendrycks & Dietterich used to make CIFAR-10-C
(``make_cifar_c.py`` in their ``robustness`` repository): the same 19 transformations with the
constants below, written against numpy, OpenCV, scikit-image and PIL. The building blocks that
imagecorruptions shares with that script (the antialiased disk, the plasma fractal, the
numpy motion blur that stands in for ImageMagick's, the frost photographs) are taken from the
installed imagecorruptions, repaired by :mod:`compat`.

Every function takes an (H, W, 3) uint8 image and returns floats in [0, 255]; randomness comes
from numpy's global generator, which the caller seeds per image (scikit-image's impulse noise is
fed a generator drawn from it). Where the published script behaves in a way one would not
design, it is kept so that the images match CIFAR-10-C's statistics, and said so: glass blur's
"swap" of two pixels copies one onto the other (numpy views), and motion blur uses the numpy
re-implementation, not ImageMagick itself.
"""

from __future__ import annotations

import math
from functools import cache
from io import BytesIO
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from scipy.ndimage import map_coordinates
from scipy.ndimage import zoom as scipy_zoom
from skimage.color import hsv2rgb, rgb2hsv
from skimage.filters import gaussian
from skimage.util import random_noise

from robustbench_norm.errors import RobustBenchError
from robustbench_norm.perturb import compat

#: the image side the constants were made for
SIDE = 32

#: corruption → the five severities' constants, as in make_cifar_c.py
CONSTANTS: dict[str, list] = {
    "gaussian_noise": [0.04, 0.06, 0.08, 0.09, 0.10],  # σ of additive noise
    "shot_noise": [500, 250, 100, 75, 50],  # Poisson photon count at full intensity
    "impulse_noise": [0.01, 0.02, 0.03, 0.05, 0.07],  # share of salt-and-pepper pixels
    "speckle_noise": [0.06, 0.10, 0.12, 0.16, 0.20],  # σ of multiplicative noise
    "gaussian_blur": [0.4, 0.6, 0.7, 0.8, 1.0],  # σ in pixels
    # (σ, largest displacement, passes)
    "glass_blur": [(0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)],
    # (disk radius, antialiasing σ)
    "defocus_blur": [(0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)],
    "motion_blur": [(6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)],  # (radius, σ)
    "zoom_blur": [1.06, 1.11, 1.16, 1.21, 1.26],  # zooms 1, 1.01, … below this
    # (mean, sd, zoom, threshold, blur radius, blur σ, share of the image kept)
    "snow": [
        (0.1, 0.2, 1, 0.6, 8, 3, 0.95),
        (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
        (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
        (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
        (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8),
    ],
    "frost": [(1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45)],  # (image, frost)
    "fog": [(0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)],  # (strength, decay)
    "brightness": [0.05, 0.1, 0.15, 0.2, 0.3],  # added to HSV value
    "contrast": [0.75, 0.5, 0.4, 0.3, 0.15],  # factor on the deviation from the mean
    # (α, σ, affine shift), in pixels of a 32-pixel image
    "elastic_transform": [
        (0.0, 0.0, 2.56),
        (1.6, 6.4, 2.24),
        (2.56, 1.92, 1.92),
        (3.2, 1.28, 1.6),
        (3.2, 0.96, 0.96),
    ],
    "pixelate": [0.95, 0.9, 0.85, 0.75, 0.65],  # down-sampling factor
    "jpeg_compression": [80, 65, 58, 50, 40],  # JPEG quality
    # (mean, sd, blur σ, threshold, strength, mud?)
    "spatter": [
        (0.62, 0.1, 0.7, 0.7, 0.5, 0),
        (0.65, 0.1, 0.8, 0.7, 0.5, 0),
        (0.65, 0.3, 1, 0.69, 0.5, 0),
        (0.65, 0.1, 0.7, 0.69, 0.6, 1),
        (0.65, 0.1, 0.5, 0.68, 0.6, 1),
    ],
    "saturate": [(0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2)],  # (factor, offset)
}


def corrupt(image: np.ndarray, name: str, severity: int) -> np.ndarray:
    """``name`` at CIFAR-10-C's ``severity`` on one (32, 32, 3) uint8 image → floats in [0, 255]."""
    if image.shape != (SIDE, SIDE, 3):
        raise RobustBenchError(
            f"corruptions.table = 'cifar-10-c' is made for {SIDE}×{SIDE} images, got "
            f"{image.shape[:2]}; use table = 'imagenet-c' for other sizes"
        )
    c = CONSTANTS[name][severity - 1]
    return np.clip(_FUNCTIONS[name](image, c), 0, 255)


# -- noise ------------------------------------------------------------------------------------


def _gaussian_noise(x, sigma):
    x = x / 255.0
    return np.clip(x + np.random.normal(size=x.shape, scale=sigma), 0, 1) * 255


def _shot_noise(x, photons):
    x = x / 255.0
    return np.clip(np.random.poisson(x * photons) / photons, 0, 1) * 255


def _impulse_noise(x, amount):
    rng = np.random.default_rng(np.random.randint(0, 2**31 - 1))
    return np.clip(random_noise(x / 255.0, mode="s&p", amount=amount, rng=rng), 0, 1) * 255


def _speckle_noise(x, sigma):
    x = x / 255.0
    return np.clip(x + x * np.random.normal(size=x.shape, scale=sigma), 0, 1) * 255


# -- blur -------------------------------------------------------------------------------------


def _blur(x01, sigma):
    return gaussian(x01, sigma=sigma, channel_axis=-1)


def _gaussian_blur(x, sigma):
    return np.clip(_blur(x / 255.0, sigma), 0, 1) * 255


def _glass_blur(x, c):
    sigma, delta, passes = c
    x = np.uint8(_blur(x / 255.0, sigma) * 255)
    h, w = x.shape[:2]
    for _ in range(passes):
        for i in range(h - delta, delta, -1):
            for j in range(w - delta, delta, -1):
                dx, dy = np.random.randint(-delta, delta, size=(2,))
                # the published script's tuple "swap" of numpy views: both pixels end up with
                # the neighbour's value (kept, so the images match CIFAR-10-C)
                x[i, j] = x[i + dy, j + dx]
    return np.clip(_blur(x / 255.0, sigma), 0, 1) * 255


def _defocus_blur(x, c):
    radius, alias = c
    kernel = compat.load().corruptions.disk(radius=radius, alias_blur=alias)
    x = x / 255.0
    channels = [cv2.filter2D(x[:, :, d], -1, kernel) for d in range(3)]
    return np.clip(np.stack(channels, axis=-1), 0, 1) * 255


def _motion_blur(x, c):
    radius, sigma = c
    blur = compat.load().corruptions._motion_blur
    return blur(x.astype(np.float64), radius, sigma, np.random.uniform(-45, 45))


def _zoom(image, factor):
    """Zoom the centre of ``image`` by ``factor`` and crop the centre back to its size."""
    h = image.shape[0]
    side = math.ceil(h / factor)
    top = (h - side) // 2
    zoomed = scipy_zoom(image[top : top + side, top : top + side], (factor, factor, 1), order=1)
    trim = (zoomed.shape[0] - h) // 2
    return zoomed[trim : trim + h, trim : trim + h]


def _zoom_blur(x, stop):
    x = (x / 255.0).astype(np.float32)
    factors = np.arange(1, stop, 0.01)
    out = x + sum(_zoom(x, f) for f in factors)
    return np.clip(out / (len(factors) + 1), 0, 1) * 255


# -- weather ----------------------------------------------------------------------------------


def _snow(x, c):
    mean, sd, zoom, threshold, radius, sigma, keep = c
    x = x.astype(np.float32) / 255.0
    layer = np.random.normal(size=x.shape[:2], loc=mean, scale=sd)
    layer = _zoom(layer[..., None], zoom)
    layer[layer < threshold] = 0
    layer = (np.clip(layer.squeeze(-1), 0, 1) * 255).astype(np.uint8)  # an 8-bit PNG, blurred
    angle = np.random.uniform(-135, -45)
    layer = compat.load().corruptions._motion_blur(layer.astype(np.float64), radius, sigma, angle)
    layer = (np.clip(np.round(layer), 0, 255) / 255.0)[..., None]
    gray = cv2.cvtColor(x, cv2.COLOR_RGB2GRAY)[..., None]
    x = keep * x + (1 - keep) * np.maximum(x, gray * 1.5 + 0.5)
    return np.clip(x + layer + np.rot90(layer, k=2), 0, 1) * 255


@cache
def _frost_image(index: int) -> np.ndarray:
    """imagecorruptions' frost photograph ``index`` (the script draws from the first 5), at the
    script's scale of 0.2 (BGR, as OpenCV reads it)."""
    names = ("frost1.png", "frost2.png", "frost3.png", "frost4.jpg", "frost5.jpg")
    path = Path(compat.load().__file__).parent / "frost" / names[index]
    image = cv2.resize(cv2.imread(str(path)), (0, 0), fx=0.2, fy=0.2)
    image.setflags(write=False)
    return image


def _frost(x, c):
    image_share, frost_share = c
    frost = _frost_image(np.random.randint(5))
    top = np.random.randint(0, frost.shape[0] - SIDE)
    left = np.random.randint(0, frost.shape[1] - SIDE)
    frost = frost[top : top + SIDE, left : left + SIDE][..., [2, 1, 0]]  # BGR → RGB
    return np.clip(image_share * x.astype(np.float64) + frost_share * frost, 0, 255)


def _fog(x, c):
    strength, decay = c
    x = x / 255.0
    peak = x.max()
    plasma = compat.load().corruptions.plasma_fractal(mapsize=SIDE, wibbledecay=decay)
    x = x + strength * plasma[:SIDE, :SIDE][..., None]
    return np.clip(x * peak / (peak + strength), 0, 1) * 255


def _spatter(x, c):
    mean, sd, sigma, threshold, strength, mud = c
    x = x.astype(np.float32) / 255.0
    liquid = gaussian(np.random.normal(size=x.shape[:2], loc=mean, scale=sd), sigma=sigma)
    liquid[liquid < threshold] = 0
    if not mud:  # water: pale drops with darker rims, from the edges of the liquid layer
        liquid8 = (liquid * 255).astype(np.uint8)
        dist = cv2.distanceTransform(255 - cv2.Canny(liquid8, 50, 150), cv2.DIST_L2, 5)
        _, dist = cv2.threshold(dist, 20, 20, cv2.THRESH_TRUNC)
        dist = cv2.equalizeHist(cv2.blur(dist, (3, 3)).astype(np.uint8))
        emboss = np.array([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]])
        dist = cv2.blur(cv2.filter2D(dist, cv2.CV_8U, emboss), (3, 3)).astype(np.float32)
        m = liquid8 * dist
        m = m / m.max() * strength if m.max() > 0 else m
        color = np.array([175, 238, 238]) / 255.0  # in the script's channel order
        return np.clip(x + m[..., None] * color, 0, 1) * 255
    m = gaussian(np.where(liquid > threshold, 1.0, 0.0).astype(np.float32), sigma=strength)
    m[m < 0.8] = 0
    color = np.array([63, 42, 20]) / 255.0 * m[..., None]  # mud brown
    return np.clip(x * (1 - m[..., None]) + color, 0, 1) * 255


# -- digital ----------------------------------------------------------------------------------


def _brightness(x, shift):
    hsv = rgb2hsv(x / 255.0)
    hsv[:, :, 2] = np.clip(hsv[:, :, 2] + shift, 0, 1)
    return np.clip(hsv2rgb(hsv), 0, 1) * 255


def _contrast(x, factor):
    x = x / 255.0
    means = x.mean(axis=(0, 1), keepdims=True)
    return np.clip((x - means) * factor + means, 0, 1) * 255


def _saturate(x, c):
    factor, offset = c
    hsv = rgb2hsv(x / 255.0)
    hsv[:, :, 1] = np.clip(hsv[:, :, 1] * factor + offset, 0, 1)
    return np.clip(hsv2rgb(hsv), 0, 1) * 255


def _jpeg_compression(x, quality):
    buffer = BytesIO()
    Image.fromarray(x).save(buffer, "JPEG", quality=quality)
    return np.asarray(Image.open(buffer), dtype=np.float64)


def _pixelate(x, factor):
    small = int(SIDE * factor)
    image = Image.fromarray(x).resize((small, small), Image.BOX)
    return np.asarray(image.resize((SIDE, SIDE), Image.BOX), dtype=np.float64)


def _elastic_transform(x, c):
    alpha, sigma, shift = c
    x = x.astype(np.float32) / 255.0
    size = np.float32(x.shape[:2])
    centre, square = size // 2, min(x.shape[:2]) // 3
    source = np.float32(
        [centre + square, [centre[0] + square, centre[1] - square], centre - square]
    )
    target = source + np.random.uniform(-shift, shift, size=source.shape).astype(np.float32)
    affine = cv2.getAffineTransform(source, target)
    x = cv2.warpAffine(x, affine, x.shape[1::-1], borderMode=cv2.BORDER_REFLECT_101)
    field = [
        (gaussian(np.random.uniform(-1, 1, size=x.shape[:2]), sigma, mode="reflect", truncate=3)
         * alpha).astype(np.float32)[..., None]
        for _ in range(2)
    ]  # fmt: skip
    dx, dy = field
    cols, rows, chans = np.meshgrid(*(np.arange(n) for n in (x.shape[1], x.shape[0], 3)))
    coords = (rows + dy).reshape(-1), (cols + dx).reshape(-1), chans.reshape(-1)
    warped = map_coordinates(x, coords, order=1, mode="reflect").reshape(x.shape)
    return np.clip(warped, 0, 1) * 255


_FUNCTIONS = {
    "gaussian_noise": _gaussian_noise,
    "shot_noise": _shot_noise,
    "impulse_noise": _impulse_noise,
    "speckle_noise": _speckle_noise,
    "gaussian_blur": _gaussian_blur,
    "glass_blur": _glass_blur,
    "defocus_blur": _defocus_blur,
    "motion_blur": _motion_blur,
    "zoom_blur": _zoom_blur,
    "snow": _snow,
    "frost": _frost,
    "fog": _fog,
    "spatter": _spatter,
    "brightness": _brightness,
    "contrast": _contrast,
    "saturate": _saturate,
    "jpeg_compression": _jpeg_compression,
    "pixelate": _pixelate,
    "elastic_transform": _elastic_transform,
}
