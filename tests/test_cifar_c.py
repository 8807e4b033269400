"""The CIFAR-10-C severity table: against the real imagecorruptions wherever the two tables share a
constant, strengths measured on flat gray images against the stated constants, and the table
carried through the cache, the suite and the evaluation."""

from __future__ import annotations

import json

import numpy as np
import pytest

from robustbench_norm.data import load_split
from robustbench_norm.errors import RobustBenchError
from robustbench_norm.evaluation import CorruptionSpec
from robustbench_norm.perturb import cifar_c, compat
from robustbench_norm.perturb.corruptions import ALL, CorruptionCache, corrupt_images, image_seed

CIFAR = "cifar-10-c"


@pytest.fixture(scope="module")
def test_split():
    return load_split("fashion-mnist-mini", "test")


@pytest.fixture(scope="module")
def rgb_images():
    return np.random.default_rng(5).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)


def test_the_table_has_five_severities_of_every_corruption():
    assert set(cifar_c.CONSTANTS) == set(ALL)
    assert all(len(c) == 5 for c in cifar_c.CONSTANTS.values())
    # spot checks against the constants CIFAR-10-C was made with
    assert cifar_c.CONSTANTS["gaussian_noise"] == [0.04, 0.06, 0.08, 0.09, 0.10]
    assert cifar_c.CONSTANTS["jpeg_compression"] == [80, 65, 58, 50, 40]
    assert cifar_c.CONSTANTS["elastic_transform"][1] == pytest.approx(
        (32 * 0.05, 32 * 0.2, 32 * 0.07)
    )


# (corruption, CIFAR-10-C severity, imagecorruptions severity) with the same constant
SHARED = [
    ("gaussian_noise", 3, 1),  # σ 0.08
    ("impulse_noise", 3, 1),  # amount 0.03
    ("speckle_noise", 5, 2),  # σ 0.2
    ("gaussian_blur", 5, 1),  # σ 1
    ("contrast", 3, 1),  # 0.4
    ("contrast", 4, 2),  # 0.3
    ("brightness", 2, 1),  # +0.1
    ("brightness", 5, 3),  # +0.3
    ("saturate", 1, 1),  # (0.3, 0)
    ("saturate", 2, 2),  # (0.1, 0)
]


@pytest.mark.parametrize(("name", "ours", "theirs"), SHARED)
def test_where_the_tables_share_a_constant_the_pixels_equal_imagecorruptions(
    name, ours, theirs, rgb_images
):
    """The same seed through our function and the real library's gives the same image: the
    transformation is the library's, only the constant table differs."""
    ic = compat.load()
    for k, image in enumerate(rgb_images):
        np.random.seed(image_seed(3, name, ours, k))
        expected = ic.corrupt(image, severity=theirs, corruption_name=name)  # truncated to uint8
        # through the path a suite takes: corrupt_images seeds, corrupts and stores 8 bits
        got = corrupt_images(image[None], name, ours, seed=3, start=k, table="cifar-10-c")[0]
        assert np.array_equal(got, expected)


@pytest.mark.parametrize("severity", [1, 2, 3, 4, 5])
def test_gaussian_and_speckle_noise_have_the_stated_sigma_on_gray(severity):
    """Mid-gray (no clipping), one channel kept: the draw's σ is the table's constant."""
    flat = np.full((40, 32, 32, 1), 128, dtype=np.uint8)
    noisy = corrupt_images(flat, "gaussian_noise", severity, seed=0, table=CIFAR) / 255
    assert noisy.std() == pytest.approx(cifar_c.CONSTANTS["gaussian_noise"][severity - 1], rel=0.05)
    speckle = corrupt_images(flat, "speckle_noise", severity, seed=0, table=CIFAR) / 255
    expected = cifar_c.CONSTANTS["speckle_noise"][severity - 1] * 128 / 255  # x + x·ε
    assert speckle.std() == pytest.approx(expected, rel=0.05)


def test_shot_and_impulse_noise_at_their_stated_strength():
    x = 0.5
    flat = np.full((40, 32, 32, 1), round(255 * x), dtype=np.uint8)
    for severity, photons in enumerate(cifar_c.CONSTANTS["shot_noise"], start=1):
        shot = corrupt_images(flat, "shot_noise", severity, seed=1, table=CIFAR) / 255
        # Poisson(x·c)/c has variance x/c (then rounded to 8 bits: add 1/12 of a level²)
        expected = (0.502 / photons + 1 / 12 / 255**2) ** 0.5
        assert shot.std() == pytest.approx(expected, rel=0.05)
    for severity, amount in enumerate(cifar_c.CONSTANTS["impulse_noise"], start=1):
        salted = corrupt_images(flat, "impulse_noise", severity, seed=1, table=CIFAR)
        changed = np.mean(salted != flat)  # salt or pepper, never the mid-gray
        assert changed == pytest.approx(amount, rel=0.1)


def test_digital_corruptions_by_hand():
    image = np.random.default_rng(2).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    x = image / 255
    # contrast: (x − mean) · c + mean, per channel
    c = cifar_c.CONSTANTS["contrast"][0]
    mean = x.mean(axis=(0, 1), keepdims=True)
    np.testing.assert_allclose(
        cifar_c.corrupt(image, "contrast", 1), np.clip((x - mean) * c + mean, 0, 1) * 255
    )
    # pixelate: a constant image is a fixed point of a box down- and up-sampling
    flat = np.full((32, 32, 3), 77, dtype=np.uint8)
    assert np.array_equal(cifar_c.corrupt(flat, "pixelate", 5), flat)
    # brightness on gray pixels: V = the gray value, so + c
    gray = np.repeat(np.arange(0, 256, 8, dtype=np.uint8).reshape(1, 32, 1), 32, axis=0)
    got = cifar_c.corrupt(np.repeat(gray, 3, axis=-1), "brightness", 3)[..., 0]
    np.testing.assert_allclose(got, np.clip(gray[..., 0] / 255 + 0.15, 0, 1) * 255, atol=1e-9)


@pytest.mark.parametrize(
    "name",
    ["gaussian_noise", "gaussian_blur", "defocus_blur", "zoom_blur", "contrast", "pixelate", "fog"],
)
def test_severity_strengthens_and_stays_milder_than_imagenet_c(name, test_split):
    """Distance from the clean images grows with severity, and the harshest CIFAR-10-C level is
    milder than ImageNet-C's harshest on 32×32 images (the reason the table exists)."""
    images = test_split.images[:16]
    clean = images.astype(float)

    def distance(severity, table):
        out = corrupt_images(images, name, severity, seed=0, table=table).astype(float)
        return np.abs(out - clean).mean()

    ours = [distance(s, CIFAR) for s in (1, 3, 5)]
    assert ours[0] <= ours[1] <= ours[2] and ours[0] < ours[2]
    assert ours[2] < distance(5, "imagenet-c")


@pytest.mark.parametrize("name", ALL)
def test_every_corruption_is_reproducible_and_changes_the_image(name, test_split):
    images = test_split.images[:2]
    a = corrupt_images(images, name, 4, seed=3, table=CIFAR)
    assert np.array_equal(a, corrupt_images(images, name, 4, seed=3, table=CIFAR))
    assert a.dtype == np.uint8 and a.shape == images.shape
    if name != "saturate":  # a gray image has no saturation to change
        assert not np.array_equal(a, images), name


def test_the_cache_keeps_the_tables_apart(tmp_path, test_split):
    split = test_split.subset(12)
    cache = CorruptionCache(tmp_path)
    ours = cache.ensure(split, [("fog", 2)], seed=0, quiet=True, table=CIFAR)[("fog", 2)]
    theirs = cache.ensure(split, [("fog", 2)], seed=0, quiet=True)[("fog", 2)]
    assert ours != theirs and "cifar-10-c" in ours.name
    assert json.loads(ours.with_suffix(".json").read_text())["table"] == CIFAR
    assert np.array_equal(np.load(ours), corrupt_images(split.images, "fog", 2, 0, table=CIFAR))
    assert not np.array_equal(np.load(ours), np.load(theirs))
    # an entry whose sidecar names the other table is not taken for this one
    meta = json.loads(ours.with_suffix(".json").read_text())
    ours.with_suffix(".json").write_text(json.dumps(meta | {"table": "imagenet-c"}))
    assert cache.load(split, "fog", 2, 0, table=CIFAR) is None
    # nor one made when results were rounded to 8 bits (its sidecar has no "quantize")
    old = {k: v for k, v in meta.items() if k != "quantize"}
    assert meta["quantize"] == "truncate"
    ours.with_suffix(".json").write_text(json.dumps(old))
    assert cache.load(split, "fog", 2, 0, table=CIFAR) is None


def test_bad_tables_and_sizes_are_named():
    with pytest.raises(
        RobustBenchError, match=r"corruptions.table: unknown severity table 'cifar'"
    ):
        CorruptionSpec(table="cifar")
    with pytest.raises(RobustBenchError, match="drop one of the two"):
        CorruptionSpec(table=CIFAR, corruptions_dir="somewhere")
    with pytest.raises(RobustBenchError, match="made for 32×32 images.*imagenet-c"):
        cifar_c.corrupt(np.zeros((64, 64, 3), np.uint8), "fog", 1)
