"""Build robustbench_norm/embedded/fashion_mnist_mini.npz from the official Fashion-MNIST files.

A stratified subset (500 train + 100 test images per class), chosen with a fixed seed and
written byte-for-byte reproducibly (fixed zip timestamps), with a manifest recording the source
files' sha256, the seed and the output's sha256. Running it again on the same source files must
reproduce the shipped file exactly; the test suite checks that when the sources are present.

    python scripts/make_embedded_data.py [--source /usr/share/datasets/fashion-mnist] [--out DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import zipfile
from pathlib import Path

import numpy as np

from robustbench_norm.data import (
    DEBIAN_FASHION_MNIST,
    EMBEDDED_FILE,
    FASHION_MNIST_FILES,
    read_idx,
)

SEED = 20220705  # arXiv 2207.01972 was posted in July 2022
PER_CLASS = {"train": 500, "test": 100}
OUT_DIR = Path(__file__).resolve().parents[1] / "robustbench_norm" / "embedded"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def stratified(labels: np.ndarray, per_class: int, rng: np.random.Generator) -> np.ndarray:
    """per_class indices of each class, drawn without replacement, then shuffled together."""
    picked = [
        rng.choice(np.flatnonzero(labels == c), size=per_class, replace=False)
        for c in range(int(labels.max()) + 1)
    ]
    return rng.permutation(np.concatenate(picked))


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Like np.savez_compressed, but with fixed timestamps so the bytes are reproducible."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, array in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(array), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, buf.getvalue(), compresslevel=9)


def build(source: Path, out_dir: Path) -> dict:
    rng = np.random.default_rng(SEED)
    arrays, sources, counts = {}, {}, {}
    for split in ("train", "test"):
        image_file, label_file = FASHION_MNIST_FILES[split]
        images, labels = read_idx(source / image_file), read_idx(source / label_file)
        idx = stratified(labels, PER_CLASS[split], rng)
        arrays[f"{split}_images"] = images[idx]  # 28×28, padded to 32×32 at load time
        arrays[f"{split}_labels"] = labels[idx].astype(np.uint8)
        counts[split] = np.bincount(labels[idx], minlength=10).tolist()
        sources[image_file] = sha256(source / image_file)
        sources[label_file] = sha256(source / label_file)
    out_dir.mkdir(parents=True, exist_ok=True)
    npz = out_dir / EMBEDDED_FILE
    write_npz(npz, arrays)
    manifest = {
        "file": EMBEDDED_FILE,
        "sha256": sha256(npz),
        "seed": SEED,
        "per_class": PER_CLASS,
        "class_counts": counts,
        "image_shape_stored": [28, 28],
        "source": "Fashion-MNIST (Xiao, Rasul, Vollgraf 2017), https://github.com/zalandoresearch/fashion-mnist",
        "source_sha256": sources,
        "license": "MIT (see FASHION_MNIST_LICENSE)",
        "built_by": "scripts/make_embedded_data.py",
    }
    (out_dir / "fashion_mnist_mini.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--source", type=Path, default=DEBIAN_FASHION_MNIST)
    p.add_argument("--out", type=Path, default=OUT_DIR)
    args = p.parse_args()
    manifest = build(args.source, args.out)
    print(json.dumps(manifest, indent=2))


if __name__ == "__main__":
    main()
