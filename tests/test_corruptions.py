"""Common corruptions through the real imagecorruptions, the compatibility layer, and the cache."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from robustbench_norm.data import load_split
from robustbench_norm.errors import RobustBenchError
from robustbench_norm.perturb import compat
from robustbench_norm.perturb.corruptions import (
    ALL,
    COMMON,
    VALIDATION,
    CorruptionCache,
    corrupt_images,
    load_precomputed,
    to_gray,
)


@pytest.fixture(scope="module")
def test_split():
    return load_split("fashion-mnist-mini", "test")


def test_the_nineteen_names():
    assert len(COMMON) == 15 and len(VALIDATION) == 4 and len(set(ALL)) == 19
    assert set(ALL) == set(compat.load().get_corruption_names("all"))


@pytest.mark.parametrize("name", ALL)
def test_every_corruption_and_severity_runs_on_a_real_image(name, test_split):
    image = test_split.images[:1]  # a real 32×32 Fashion-MNIST image, one channel
    for severity in range(1, 6):
        out = corrupt_images(image, name, severity, seed=0)
        assert out.dtype == np.uint8 and out.shape == image.shape
        if name == "saturate":
            # a gray image has no saturation to scale; the saturation 4-5 add has hue 0 (red),
            # which keeps the first channel at the value: a no-op on grayscale data
            assert np.array_equal(out, image)
        else:
            assert not np.array_equal(out, image), (name, severity)


@pytest.mark.parametrize("name", ["impulse_noise", "glass_blur", "frost", "gaussian_noise"])
def test_same_seed_same_pixels_including_impulse_noise(name, test_split):
    images = test_split.images[:4]
    a = corrupt_images(images, name, 3, seed=7)
    b = corrupt_images(images, name, 3, seed=7)
    c = corrupt_images(images, name, 3, seed=8)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_luma_rule_by_hand():
    rgb = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [10, 10, 10]]], dtype=np.uint8)
    assert to_gray(rgb)[..., 0].tolist() == [[76, 150, 29, 10]]  # round(0.299·255) etc.
    gray = np.random.default_rng(0).integers(0, 256, (5, 5), dtype=np.uint8)
    assert np.array_equal(to_gray(np.repeat(gray[..., None], 3, -1))[..., 0], gray)


@pytest.mark.parametrize(("name", "sigma"), [("gaussian_noise", 0.08), ("gaussian_noise", 0.12)])
def test_grayscale_noise_has_its_stated_strength(name, sigma):
    """ImageNet-C's Gaussian noise is σ = 0.08, 0.12, … at severities 1, 2, …; a mid-gray image
    (no clipping) must come back with that σ, not the luma of three draws (σ × 0.67)."""
    severity = {0.08: 1, 0.12: 2}[sigma]
    flat = np.full((40, 32, 32, 1), 128, dtype=np.uint8)
    noisy = corrupt_images(flat, name, severity, seed=0).astype(float) / 255
    assert noisy.std() == pytest.approx(sigma, rel=0.03)


def test_grayscale_keeps_deterministic_corruptions_exact():
    """A channel-preserving corruption returns three equal channels: one channel is the image."""
    images = np.random.default_rng(1).integers(0, 256, (3, 32, 32, 1), dtype=np.uint8)
    ic = compat.load()
    for name in ("contrast", "defocus_blur", "brightness"):
        ours = corrupt_images(images, name, 3, seed=0)
        for i, image in enumerate(images):
            theirs = np.asarray(ic.corrupt(image, severity=3, corruption_name=name))
            assert np.array_equal(ours[i, ..., 0], theirs[..., 0])
            assert np.array_equal(theirs[..., 0], theirs[..., 1])


# -- the compatibility layer: each breakage reproduced on the real library, then repaired ------


def test_breakage_1_plain_import_fails_without_pkg_resources_and_compat_repairs_it():
    probe = "import importlib.util, sys; print(importlib.util.find_spec('pkg_resources') is None)"
    missing = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    if missing.stdout.strip() != "True":
        pytest.skip("this setuptools still ships pkg_resources: nothing to repair")
    plain = subprocess.run(
        [sys.executable, "-c", "import imagecorruptions"], capture_output=True, text=True
    )
    assert plain.returncode != 0 and "pkg_resources" in plain.stderr
    fixed = subprocess.run(
        [sys.executable, "-c",
         "from robustbench_norm.perturb import compat; import sys; ic = compat.load(); "
         "print('pkg_resources' in sys.modules, len(ic.get_corruption_names('all')))"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert fixed.returncode == 0, fixed.stderr
    assert fixed.stdout.split() == ["False", "19"]  # the stand-in does not outlive the import


def test_breakage_2_gaussian_multichannel_keyword(test_split):
    import skimage.filters

    image = np.repeat(test_split.images[0], 3, -1) / 255.0
    with pytest.raises(TypeError, match="multichannel"):
        skimage.filters.gaussian(image, sigma=1, multichannel=True)
    ic = compat.load()
    wrapped = ic.corruptions.gaussian(image, sigma=1, multichannel=True)
    np.testing.assert_array_equal(
        wrapped, skimage.filters.gaussian(image, sigma=1, channel_axis=-1)
    )
    for name in ("gaussian_blur", "glass_blur"):
        assert corrupt_images(test_split.images[:1], name, 2, seed=0).shape == (1, 32, 32, 1)


def test_breakage_3_numpy_float_alias(test_split):
    with pytest.raises(AttributeError):
        np.float_
    ic = compat.load()
    assert ic.corruptions.np.float_ is np.float64
    assert not hasattr(np, "float_")  # numpy itself is left alone
    assert corrupt_images(test_split.images[:1], "fog", 3, seed=0).shape == (1, 32, 32, 1)


# -- the cache -------------------------------------------------------------------------------


def test_cache_generates_once_and_returns_the_identical_file(tmp_path, test_split):
    split = test_split.subset(20)
    cache = CorruptionCache(tmp_path)
    paths = cache.ensure(split, [("contrast", 2), ("shot_noise", 4)], seed=3, quiet=True)
    first = {k: np.load(p) for k, p in paths.items()}
    mtimes = {k: p.stat().st_mtime_ns for k, p in paths.items()}
    again = cache.ensure(split, [("contrast", 2), ("shot_noise", 4)], seed=3, quiet=True)
    assert {k: p.stat().st_mtime_ns for k, p in again.items()} == mtimes  # not regenerated
    for key, array in first.items():
        assert np.array_equal(cache.load(split, *key, seed=3), array)
        assert np.array_equal(array, corrupt_images(split.images, *key, seed=3))
    meta = json.loads(paths[("contrast", 2)].with_suffix(".json").read_text())
    assert meta["imagecorruptions"] == "1.1.2" and meta["seed"] == 3
    assert meta["source_sha256"] == split.fingerprint
    # asking for one more condition generates only that one
    cache.ensure(split, [("contrast", 2), ("fog", 1)], seed=3, quiet=True)
    assert paths[("contrast", 2)].stat().st_mtime_ns == mtimes[("contrast", 2)]
    assert cache.load(split, "fog", 1, seed=3) is not None
    # a different source array gets its own files
    other = test_split.subset(21)
    assert cache.path(other, "contrast", 2, 3) != paths[("contrast", 2)]


def test_worker_processes_output_equals_in_process_output(tmp_path, test_split):
    split = test_split.subset(300)
    pooled = CorruptionCache(tmp_path).ensure(split, [("brightness", 3)], workers=2, quiet=True)
    in_process = corrupt_images(split.images, "brightness", 3, seed=0)
    assert np.array_equal(np.load(pooled[("brightness", 3)]), in_process)


def test_unknown_corruption_and_severity_are_named(tmp_path, test_split):
    cache = CorruptionCache(tmp_path)
    with pytest.raises(RobustBenchError, match="unknown corruption 'rain'.*gaussian_noise"):
        cache.ensure(test_split, [("rain", 1)])
    with pytest.raises(RobustBenchError, match="severity 6"):
        cache.ensure(test_split, [("fog", 6)])


def test_precomputed_cifar_c_style_folder(tmp_path, test_split):
    split = test_split.subset(10)
    stacked = np.concatenate([corrupt_images(split.images, "fog", s, 0) for s in range(1, 6)])
    np.save(tmp_path / "fog.npy", stacked)
    np.save(tmp_path / "labels.npy", np.tile(split.labels, 5))
    assert np.array_equal(load_precomputed(tmp_path, "fog", 4, split), stacked[30:40])
    with pytest.raises(RobustBenchError, match="snow.npy not found"):
        load_precomputed(tmp_path, "snow", 1, split)
    np.save(tmp_path / "labels.npy", np.tile(split.labels[::-1], 5))
    with pytest.raises(RobustBenchError, match="does not match the labels"):
        load_precomputed(tmp_path, "fog", 1, split)
