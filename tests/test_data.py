"""Datasets: the embedded subset is what its build script says, and missing data fails clearly."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from robustbench_norm import data
from robustbench_norm.data import DEBIAN_FASHION_MNIST, dataset_info, embedded_file, load_split
from robustbench_norm.errors import RobustBenchError

MANIFEST = json.loads(embedded_file("fashion_mnist_mini.json").read_text())
HAVE_SOURCE = (DEBIAN_FASHION_MNIST / "train-images-idx3-ubyte.gz").exists()


@pytest.mark.parametrize("split, per_class", [("train", 500), ("test", 100)])
def test_embedded_split_shape_dtype_and_class_balance(split, per_class):
    s = load_split("fashion-mnist-mini", split)
    assert s.images.shape == (10 * per_class, 32, 32, 1)
    assert s.images.dtype == np.uint8 and s.labels.dtype == np.int64
    assert np.bincount(s.labels, minlength=10).tolist() == [per_class] * 10
    # 28×28 centred in 32×32: a two-pixel zero border on every side
    assert not s.images[:, :2].any() and not s.images[:, -2:].any()
    assert not s.images[:, :, :2].any() and not s.images[:, :, -2:].any()
    assert s.images[:, 2:-2, 2:-2].mean() > 50  # real clothes, not zeros


@pytest.mark.parametrize("name", ["fashion-mnist-mini", "fashion-mnist"])
def test_the_sizes_suites_are_validated_against_are_the_loaded_splits(name):
    if name == "fashion-mnist" and not HAVE_SOURCE:
        pytest.skip("needs Debian's dataset-fashion-mnist")
    info = dataset_info(name)
    assert len(load_split(name, "train")) == info.train_size
    assert len(load_split(name, "test")) == info.test_size


def test_shipped_file_matches_the_manifest_of_its_build_script():
    digest = hashlib.sha256(embedded_file(data.EMBEDDED_FILE).read_bytes()).hexdigest()
    assert digest == MANIFEST["sha256"]
    assert MANIFEST["seed"] == 20220705
    assert embedded_file("FASHION_MNIST_LICENSE").read_text().startswith("fashion_mnist_mini.npz")


@pytest.mark.skipif(not HAVE_SOURCE, reason="needs Debian's dataset-fashion-mnist")
def test_build_script_reproduces_the_shipped_file_byte_for_byte(tmp_path):
    import importlib.util
    from pathlib import Path

    script = Path(__file__).parents[1] / "scripts" / "make_embedded_data.py"
    spec = importlib.util.spec_from_file_location("make_embedded_data", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    manifest = module.build(DEBIAN_FASHION_MNIST, tmp_path)
    assert manifest["sha256"] == MANIFEST["sha256"]
    assert manifest["source_sha256"] == MANIFEST["source_sha256"]


@pytest.mark.skipif(not HAVE_SOURCE, reason="needs Debian's dataset-fashion-mnist")
def test_full_fashion_mnist_from_the_debian_package():
    s = load_split("fashion-mnist", "test")
    assert s.images.shape == (10000, 32, 32, 1)
    assert np.bincount(s.labels).tolist() == [1000] * 10


def test_missing_fashion_mnist_names_where_it_looked_and_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST", tmp_path / "nowhere")
    with pytest.raises(RobustBenchError) as e:
        load_split("fashion-mnist", "train", data_root=tmp_path, cache_dir=tmp_path / "cache")
    msg = str(e.value)
    assert "fashion-mnist" in msg and str(tmp_path) in msg
    assert "apt-get install dataset-fashion-mnist" in msg and "--download" in msg


@pytest.mark.parametrize("name", ["cifar10", "cifar100", "mnist", "svhn"])
def test_missing_torchvision_dataset_fails_at_once_without_download(name, tmp_path):
    with pytest.raises(RobustBenchError, match=f"{name!r}.*not found in {tmp_path}.*--download"):
        load_split(name, "test", data_root=tmp_path)


def test_fashion_mnist_reads_official_files_from_data_root(tmp_path, monkeypatch):
    """--data-root with the four official .gz files (written here in the IDX format)."""
    import gzip

    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST", tmp_path / "nowhere")
    images = np.random.default_rng(0).integers(0, 256, (7, 28, 28), dtype=np.uint8)
    labels = np.arange(7, dtype=np.uint8)
    for img_file, lbl_file in data.FASHION_MNIST_FILES.values():
        with gzip.open(tmp_path / img_file, "wb") as f:
            f.write(b"\x00\x00\x08\x03" + b"".join(d.to_bytes(4, "big") for d in images.shape))
            f.write(images.tobytes())
        with gzip.open(tmp_path / lbl_file, "wb") as f:
            f.write(b"\x00\x00\x08\x01" + (7).to_bytes(4, "big") + labels.tobytes())
    s = load_split("fashion-mnist", "test", data_root=tmp_path)
    assert np.array_equal(s.images[:, 2:30, 2:30, 0], images)
    assert s.labels.tolist() == list(range(7))


def test_unknown_dataset_and_split_are_named():
    with pytest.raises(RobustBenchError, match="unknown dataset 'imagenet'.*cifar10"):
        dataset_info("imagenet")
    with pytest.raises(RobustBenchError, match="split='val'"):
        load_split("fashion-mnist-mini", "val")


def test_torch_dataloader_on_demand():
    s = load_split("fashion-mnist-mini", "test")
    x, y = next(iter(s.loader(batch_size=32)))
    assert x.shape == (32, 1, 32, 32) and x.dtype.is_floating_point
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    assert y.tolist() == s.labels[:32].tolist()
    assert len(s.fingerprint) == 64
