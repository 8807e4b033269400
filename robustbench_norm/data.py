"""Datasets as uint8 NHWC arrays + int64 labels, 32×32, with one registry and clear errors.

Images stay uint8 in [0, 255] until the model: corruptions and attacks act on pixels, and the
model owns its mean/std normalization. 28×28 digits and clothes are zero-padded to 32×32 so that
imagecorruptions (which needs ≥ 32 pixels) and the CIFAR-style models apply unchanged; grayscale
stays one channel.

Where data comes from:
* ``fashion-mnist-mini`` is shipped inside the package (5,000 train / 1,000 test, stratified):
  it works with no network at all and is the default everywhere.
* ``fashion-mnist`` reads the four official files from ``data_root``, else from Debian's
  ``dataset-fashion-mnist`` package (/usr/share/datasets/fashion-mnist), else downloads them
  with torchvision when asked (``download=True``).
* ``mnist``, ``cifar10``, ``cifar100``, ``svhn`` use torchvision, from ``data_root`` or the
  cache directory; they download only when asked.
"""

from __future__ import annotations

import gzip
import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from robustbench_norm.errors import RobustBenchError

IMAGE_SIZE = 32
SPLITS = ("train", "test")
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
EMBEDDED_FILE = "fashion_mnist_mini.npz"

FASHION_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
DIGITS = tuple(str(i) for i in range(10))
CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip


def default_cache_dir() -> Path:
    """``$ROBUSTBENCH_NORM_CACHE``, else ``~/.cache/robustbench_norm``."""
    env = os.environ.get("ROBUSTBENCH_NORM_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "robustbench_norm"


@dataclass(frozen=True)
class DatasetInfo:
    """What a model needs to know about a dataset."""

    name: str
    num_classes: int
    in_channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    #: horizontal flips are label-preserving (not for digits)
    flip: bool
    description: str
    class_names: tuple[str, ...] = field(repr=False, default=())
    #: training and test images, known without loading them (for `plan` and validation)
    train_size: int = 0
    test_size: int = 0


@dataclass(frozen=True, eq=False)
class Split:
    """One split of a dataset: uint8 images (N, 32, 32, C) and int64 labels (N,)."""

    info: DatasetInfo
    split: str
    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    @cached_property
    def fingerprint(self) -> str:
        """sha256 of images and labels: caches derived from this split are keyed by it."""
        h = hashlib.sha256()
        h.update(np.ascontiguousarray(self.images).tobytes())
        h.update(np.ascontiguousarray(self.labels).tobytes())
        return h.hexdigest()

    def subset(self, count: int | None) -> Split:
        """The first ``count`` examples (the test order is part of the benchmark's identity).

        ``count`` must be positive: Python's slicing would read -900 as "all but the first 900"
        and 0 as no images at all, both silently."""
        if count is not None and (isinstance(count, bool) or count < 1):
            raise RobustBenchError(f"limit={count!r} must be a positive number of images")
        if count is None or count >= len(self):
            return self
        return Split(self.info, self.split, self.images[:count], self.labels[:count])

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Float images (N, C, 32, 32) in [0, 1] and int64 labels."""
        return to_float_nchw(self.images), torch.from_numpy(self.labels)

    def loader(self, batch_size: int, shuffle: bool = False, seed: int = 0):
        """A ``torch.utils.data.DataLoader`` of float [0, 1] images, for users' own loops."""
        images, labels = self.tensors()
        dataset = torch.utils.data.TensorDataset(images, labels)
        gen = torch.Generator().manual_seed(seed)
        return torch.utils.data.DataLoader(
            dataset, batch_size=batch_size, shuffle=shuffle, generator=gen
        )


def to_float_nchw(images: np.ndarray) -> torch.Tensor:
    """uint8 NHWC → float32 NCHW in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255.0)


def pad_to_32(images: np.ndarray) -> np.ndarray:
    """(N, 28, 28) or (N, 28, 28, C) → (N, 32, 32, C) by zero padding; 32×32 passes through."""
    if images.ndim == 3:
        images = images[..., None]
    h, w = images.shape[1:3]
    if (h, w) == (IMAGE_SIZE, IMAGE_SIZE):
        return np.ascontiguousarray(images)
    top, left = (IMAGE_SIZE - h) // 2, (IMAGE_SIZE - w) // 2
    pads = ((0, 0), (top, IMAGE_SIZE - h - top), (left, IMAGE_SIZE - w - left), (0, 0))
    return np.pad(images, pads)


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (the MNIST format), gzipped or not."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


# -- loaders -----------------------------------------------------------------------------------

Loader = Callable[[str, Path | None, bool, Path], tuple[np.ndarray, np.ndarray]]


def embedded_file(name: str) -> Path:
    """A file shipped in the package's ``embedded/`` folder (the subset, its manifest, license)."""
    with resources.as_file(resources.files("robustbench_norm") / "embedded" / name) as path:
        return Path(path)


def _load_embedded(split, data_root, download, cache_dir):
    with np.load(embedded_file(EMBEDDED_FILE)) as z:
        return z[f"{split}_images"], z[f"{split}_labels"].astype(np.int64)


def _fashion_mnist_dirs(data_root: Path | None, cache_dir: Path) -> list[Path]:
    dirs = []
    if data_root is not None:
        dirs += [data_root, data_root / "FashionMNIST" / "raw"]
    dirs += [DEBIAN_FASHION_MNIST, cache_dir / "FashionMNIST" / "raw"]
    return dirs


def _load_fashion_mnist(split, data_root, download, cache_dir):
    image_file, label_file = FASHION_MNIST_FILES[split]
    dirs = _fashion_mnist_dirs(data_root, cache_dir)
    for d in dirs:
        if (d / image_file).exists() and (d / label_file).exists():
            return read_idx(d / image_file), read_idx(d / label_file).astype(np.int64)
    if download:
        _torchvision("FashionMNIST", cache_dir, download=True, train=split == "train")
        return _load_fashion_mnist(split, None, False, cache_dir)
    looked = ", ".join(str(d) for d in dirs)
    raise RobustBenchError(
        f"dataset 'fashion-mnist': {image_file} not found (looked in {looked}). Get it with "
        "`sudo apt-get install dataset-fashion-mnist`, or pass --data-root DIR holding the four "
        "official .gz files, or --download to fetch them (needs network)."
    )


def _torchvision(cls_name: str, root: Path, download: bool, **kwargs):
    import torchvision

    try:
        return getattr(torchvision.datasets, cls_name)(str(root), download=download, **kwargs)
    except RuntimeError as e:  # torchvision: "Dataset not found or corrupted."
        raise FileNotFoundError(str(e)) from e
    except OSError as e:  # URLError and friends: offline, DNS failure
        raise RobustBenchError(
            f"downloading {cls_name} into {root} failed ({e}); check the network, or copy the "
            f"dataset there and drop --download"
        ) from e


def _torchvision_loader(cls_name: str, dataset: str, split_kw: Callable[[str], dict]) -> Loader:
    def load(split, data_root, download, cache_dir):
        roots = [data_root] if data_root is not None else [cache_dir]
        for root in roots:
            try:
                ds = _torchvision(cls_name, root, download, **split_kw(split))
            except FileNotFoundError:
                continue
            images = np.asarray(ds.data)
            if cls_name == "SVHN":  # stored (N, C, H, W)
                images = images.transpose(0, 2, 3, 1)
            labels = np.asarray(getattr(ds, "targets", getattr(ds, "labels", None)))
            return images, labels.astype(np.int64)
        raise RobustBenchError(
            f"dataset {dataset!r} ({split}) not found in {roots[0]}; pass --download to fetch it "
            f"with torchvision (needs network), or --data-root DIR where torchvision's "
            f"{cls_name} files already are"
        )

    return load


def _train_flag(split: str) -> dict:
    return {"train": split == "train"}


def _svhn_split(split: str) -> dict:
    return {"split": split}


def _info(name, classes, channels, mean, std, flip, description, names, sizes) -> DatasetInfo:
    return DatasetInfo(name, classes, channels, mean, std, flip, description, names, *sizes)


_FASHION = (10, 1, (0.2190,), (0.3318,), True)
_CIFAR10_STATS = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
_CIFAR100_STATS = ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762))
_SVHN_STATS = ((0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970))

#: name → (info, loader). Mean/std are of the 32×32 (padded) training images.
DATASETS: dict[str, tuple[DatasetInfo, Loader]] = {
    "fashion-mnist-mini": (
        _info(
            "fashion-mnist-mini",
            *_FASHION,
            "Fashion-MNIST, stratified 5,000/1,000 subset shipped in the package",
            FASHION_CLASSES,
            (5000, 1000),
        ),
        _load_embedded,
    ),
    "fashion-mnist": (
        _info(
            "fashion-mnist",
            *_FASHION,
            "Fashion-MNIST, 60,000/10,000",
            FASHION_CLASSES,
            (60000, 10000),
        ),
        _load_fashion_mnist,
    ),
    "mnist": (
        _info(
            "mnist",
            10,
            1,
            (0.1001,),
            (0.2752,),
            False,
            "MNIST, 60,000/10,000",
            DIGITS,
            (60000, 10000),
        ),
        _torchvision_loader("MNIST", "mnist", _train_flag),
    ),
    "cifar10": (
        _info(
            "cifar10",
            10,
            3,
            *_CIFAR10_STATS,
            True,
            "CIFAR-10, 50,000/10,000",
            CIFAR10_CLASSES,
            (50000, 10000),
        ),
        _torchvision_loader("CIFAR10", "cifar10", _train_flag),
    ),
    "cifar100": (
        _info(
            "cifar100",
            100,
            3,
            *_CIFAR100_STATS,
            True,
            "CIFAR-100, 50,000/10,000",
            tuple(f"class_{i}" for i in range(100)),
            (50000, 10000),
        ),
        _torchvision_loader("CIFAR100", "cifar100", _train_flag),
    ),
    "svhn": (
        _info(
            "svhn",
            10,
            3,
            *_SVHN_STATS,
            False,
            "SVHN house numbers, 73,257/26,032",
            DIGITS,
            (73257, 26032),
        ),
        _torchvision_loader("SVHN", "svhn", _svhn_split),
    ),
}


def available_datasets() -> list[str]:
    return sorted(DATASETS)


def dataset_info(name: str) -> DatasetInfo:
    try:
        return DATASETS[name][0]
    except KeyError:
        raise RobustBenchError(
            f"unknown dataset {name!r}; valid names: {', '.join(available_datasets())}"
        ) from None


def load_split(
    name: str,
    split: str,
    data_root: str | Path | None = None,
    download: bool = False,
    cache_dir: str | Path | None = None,
) -> Split:
    """Load ``split`` ('train' or 'test') of dataset ``name`` as 32×32 uint8 NHWC arrays."""
    info = dataset_info(name)
    if split not in SPLITS:
        raise RobustBenchError(f"split={split!r} must be one of {', '.join(SPLITS)}")
    root = Path(data_root).expanduser() if data_root is not None else None
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    images, labels = DATASETS[name][1](split, root, download, cache)
    return Split(info, split, pad_to_32(np.asarray(images, dtype=np.uint8)), labels)
