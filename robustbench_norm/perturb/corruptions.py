"""Common corruptions (Hendrycks & Dietterich 2019) through the real imagecorruptions library,
generated once and cached on disk for every model and every later run.

Each (split, corruption, severity, seed) becomes one uint8 ``.npy`` plus a JSON sidecar with the
imagecorruptions version, the seed, the sha256 of the source images and that of the array. A
later call whose sidecar matches loads the file; nothing on disk is ever generated twice. The
array's own hash is checked once per process before use: a file replaced, truncated or damaged
on disk is regenerated, never evaluated. Generation runs over
all cores in worker processes, with a progress bar.

Reproducibility: image i of (corruption c, severity s) is corrupted right after
``np.random.seed(SeedSequence([seed, c, s, i]))``. imagecorruptions draws from numpy's global
generator, except ``impulse_noise``, which uses scikit-image's generator; the compatibility
layer seeds that one from numpy too, so every corruption is a pure function of the seed.

Grayscale: imagecorruptions stacks a 1-channel image to 3 channels and returns 3 channels, with
an independent noise draw per channel for the noise corruptions (gaussian, shot, impulse,
speckle) and colored overlays for frost and spatter. One channel of the result is kept (the
first): a single draw at the stated strength. Averaging the three (luma) would average three
independent draws and weaken the noise by a third (σ × 0.67: Gaussian noise at severity 1
measured 0.054 against the nominal 0.08). A channel-preserving corruption has three equal
channels, so either rule gives the same image; ``saturate`` is a no-op on grayscale data (there
is no saturation to change). The sidecar names the rule, and a cache entry made under another
rule is regenerated.

Two severity tables. ``imagenet-c`` (the default) is imagecorruptions itself, with ImageNet-C's
constants, which are harsh on 32×32 images (Gaussian noise σ 0.08–0.38, fog that leaves every
model at chance). ``cifar-10-c`` is :mod:`cifar_c`: the same corruptions with the constants
CIFAR-10-C was made with (σ 0.04–0.10). The table is part of every cache entry's name and
sidecar. For the published CIFAR-10-C/-100-C arrays themselves use :func:`load_precomputed`.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from robustbench_norm.data import Split
from robustbench_norm.errors import RobustBenchError, StorageError
from robustbench_norm.perturb import cifar_c, compat
from robustbench_norm.progress import progress_bar

COMMON = (
    "gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur",
    "motion_blur", "zoom_blur", "snow", "frost", "fog", "brightness", "contrast",
    "elastic_transform", "pixelate", "jpeg_compression",
)  # fmt: skip
VALIDATION = ("speckle_noise", "gaussian_blur", "spatter", "saturate")
ALL = COMMON + VALIDATION
SEVERITIES = (1, 2, 3, 4, 5)
#: severity tables: imagecorruptions' (ImageNet-C's constants) and CIFAR-10-C's (:mod:`cifar_c`)
TABLES = ("imagenet-c", "cifar-10-c")
LUMA = np.array([0.299, 0.587, 0.114])
#: how a 3-channel result becomes a 1-channel image (in every sidecar; another rule = regenerate)
GRAY_RULE = "first-channel"
#: how a float result becomes 8 bits: truncation, as CIFAR-10-C is stored (entries made when
#: results were rounded carry no such field and are regenerated)
QUANTIZE = "truncate"
#: below this many images per task, generate in-process (a worker's start-up costs seconds)
_POOL_MIN_IMAGES = 256


def check_names(names: Iterable[str], where: str = "corruptions") -> None:
    for name in names:
        if name not in ALL:
            raise RobustBenchError(
                f"{where}: unknown corruption {name!r}; valid names: {', '.join(ALL)}"
            )


def check_severities(severities: Iterable[int], where: str = "severities") -> None:
    for s in severities:
        if s not in SEVERITIES:
            raise RobustBenchError(f"{where}: severity {s!r} must be one of 1, 2, 3, 4, 5")


def check_table(table: str, where: str = "table") -> None:
    if table not in TABLES:
        raise RobustBenchError(
            f"{where}: unknown severity table {table!r}; use 'imagenet-c' (imagecorruptions' "
            "constants) or 'cifar-10-c' (CIFAR-10-C's, for 32×32 images)"
        )


def to_gray(rgb: np.ndarray) -> np.ndarray:
    """(…, 3) uint8 → (…, 1) uint8 by ITU-R 601-2 luma, rounded (for color data shown in gray;
    corrupted grayscale images use :func:`one_channel`)."""
    return np.round(rgb.astype(np.float64) @ LUMA).clip(0, 255).astype(np.uint8)[..., None]


def one_channel(rgb: np.ndarray) -> np.ndarray:
    """(…, 3) → (…, 1): the first channel, one noise draw at the corruption's stated strength."""
    return np.ascontiguousarray(rgb[..., :1])


def image_seed(seed: int, corruption: str, severity: int, index: int) -> int:
    state = np.random.SeedSequence([seed, ALL.index(corruption), severity, index])
    return int(state.generate_state(1)[0])


def corrupt_images(
    images: np.ndarray,
    corruption: str,
    severity: int,
    seed: int,
    start: int = 0,
    table: str = "imagenet-c",
) -> np.ndarray:
    """Corrupt ``images`` (N, H, W, C uint8) whose first has index ``start`` in the split."""
    ic = compat.load()
    out = np.empty_like(images)
    for offset, image in enumerate(images):
        np.random.seed(image_seed(seed, corruption, severity, start + offset))
        if table == "cifar-10-c":  # imagecorruptions' own rule: gray is stacked to 3 channels
            rgb = np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image
            result = cifar_c.corrupt(rgb, corruption, severity)
        else:
            result = np.asarray(ic.corrupt(image, severity=severity, corruption_name=corruption))
        if images.shape[-1] == 1:
            result = one_channel(result) if result.ndim == 3 else result[..., None]
        # truncated, as CIFAR-10-C's make_cifar_c.py stores them (np.uint8(x)) and as
        # imagecorruptions returns them: rounding made 14–63 % of pixels one level brighter
        out[offset] = np.clip(result, 0, 255).astype(np.uint8)
    return out


#: (path, size, mtime) of cached arrays whose sha256 matched their sidecar in this process
_VERIFIED: set[tuple[str, int, int]] = set()


class CorruptionCache:
    """Corrupted copies of one split, on disk under ``root``."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def folder(self, split: Split) -> Path:
        return (
            self.root / "corruptions" / f"{split.info.name}-{split.split}-{split.fingerprint[:16]}"
        )

    def path(
        self, split: Split, corruption: str, severity: int, seed: int, table: str = "imagenet-c"
    ) -> Path:
        tag = "" if table == "imagenet-c" else f"-{table}"
        return self.folder(split) / f"{corruption}{tag}-s{severity}-seed{seed}.npy"

    def _valid(self, split: Split, path: Path, table: str = "imagenet-c") -> bool:
        """Whether ``path`` holds this split's corruption as its sidecar describes it: made from
        these images, by this imagecorruptions, table, gray rule and 8-bit rule, with the
        array's hash intact."""
        sidecar = path.with_suffix(".json")
        if not (path.exists() and sidecar.exists()):
            return False
        try:
            meta = json.loads(sidecar.read_text())
        except (ValueError, UnicodeDecodeError):
            return False
        if not (
            isinstance(meta, dict)
            and meta.get("source_sha256") == split.fingerprint
            and meta.get("imagecorruptions") == compat.version()
            and meta.get("gray_rule", "luma") == GRAY_RULE
            and meta.get("quantize", "round") == QUANTIZE
            and meta.get("table", "imagenet-c") == table
        ):
            return False
        return self._intact(path, meta.get("sha256"))

    def _intact(self, path: Path, sha256: str | None) -> bool:
        stat = path.stat()
        token = (str(path), stat.st_size, stat.st_mtime_ns)
        if token in _VERIFIED:
            return True
        try:
            ok = hashlib.sha256(np.load(path).tobytes()).hexdigest() == sha256
        except (ValueError, OSError, EOFError):  # truncated or not an .npy at all
            ok = False
        if ok:
            _VERIFIED.add(token)
        return ok

    def load(
        self, split: Split, corruption: str, severity: int, seed: int, table: str = "imagenet-c"
    ) -> np.ndarray | None:
        path = self.path(split, corruption, severity, seed, table)
        return np.load(path) if self._valid(split, path, table) else None

    def ensure(
        self,
        split: Split,
        conditions: Sequence[tuple[str, int]],
        seed: int = 0,
        workers: int | None = None,
        quiet: bool = False,
        table: str = "imagenet-c",
    ) -> dict[tuple[str, int], Path]:
        """Generate whatever of ``conditions`` is not on disk yet; return every file's path."""
        check_table(table)
        for name, severity in conditions:
            check_names([name])
            check_severities([severity])
        paths = {(c, s): self.path(split, c, s, seed, table) for c, s in conditions}
        missing = [pair for pair, path in paths.items() if not self._valid(split, path, table)]
        if missing:
            self._generate(split, missing, seed, workers, quiet, table)
        return paths

    def _generate(self, split, missing, seed, workers, quiet, table) -> None:
        """Corrupt in chunks; each (corruption, severity) is written as soon as it is whole, so
        an interrupted generation keeps what it finished."""
        workers = max(1, workers or os.cpu_count() or 1)
        total = len(missing) * len(split)
        if total < _POOL_MIN_IMAGES:
            workers = 1
        chunk = max(1, -(-len(split) // (2 * workers)))
        tasks = [
            {
                "id": i,
                "corruption": c,
                "severity": s,
                "seed": seed,
                "table": table,
                "start": a,
                "stop": min(a + chunk, len(split)),
            }
            for i, ((c, s), a) in enumerate(
                (pair, a) for pair in missing for a in range(0, len(split), chunk)
            )
        ]
        parts = {pair: np.empty_like(split.images) for pair in missing}
        remaining = {pair: len(split) for pair in missing}
        started = time.perf_counter()
        bar = progress_bar(total, "corrupting", "img", quiet)

        def finished(task: dict, out: np.ndarray) -> None:
            pair = (task["corruption"], task["severity"])
            parts[pair][task["start"] : task["stop"]] = out
            remaining[pair] -= len(out)
            bar.update(len(out))
            if remaining[pair] == 0:
                seconds = time.perf_counter() - started
                self._write(split, *pair, seed, table, parts.pop(pair), seconds)

        try:
            if workers == 1:
                for t in tasks:
                    images = split.images[t["start"] : t["stop"]]
                    out = corrupt_images(
                        images, t["corruption"], t["severity"], seed, t["start"], table
                    )
                    finished(t, out)
            else:
                _run_workers(split.images, tasks, workers, finished)
        finally:
            bar.close()

    def _write(self, split, corruption, severity, seed, table, array, seconds) -> None:
        path = self.path(split, corruption, severity, seed, table)
        meta = {
            "dataset": split.info.name,
            "split": split.split,
            "corruption": corruption,
            "severity": severity,
            "seed": seed,
            "shape": list(array.shape),
            "imagecorruptions": compat.version(),
            "gray_rule": GRAY_RULE,
            "quantize": QUANTIZE,
            "table": table,
            "source_sha256": split.fingerprint,
            "sha256": hashlib.sha256(array.tobytes()).hexdigest(),
            "seconds": round(seconds, 3),
        }
        tmp = path.with_suffix(f".tmp-{os.getpid()}.npy")  # two processes may write one entry
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            np.save(tmp, array)
            os.replace(tmp, path)
            path.with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n")
        except OSError as e:
            tmp.unlink(missing_ok=True)
            raise StorageError(
                f"could not write the corruption cache {path}: {e.strerror or e}; free space "
                "or pass --cache-dir a writable folder, then rerun the same command"
            ) from None


def _run_workers(images: np.ndarray, tasks: list[dict], workers: int, finished) -> None:
    """Run ``tasks`` in ``workers`` subprocesses (see corruption_worker), calling
    ``finished(task, array)`` as each one completes."""
    by_id = {t["id"]: t for t in tasks}
    with tempfile.TemporaryDirectory(prefix="robustbench-corrupt-") as tmp:
        tmp = Path(tmp)
        np.save(tmp / "images.npy", images)
        procs = []
        for w in range(workers):
            mine = tasks[w::workers]
            if not mine:
                continue
            (tmp / f"tasks{w}.json").write_text(json.dumps(mine))
            cmd = [
                sys.executable,
                "-m",
                "robustbench_norm.perturb.corruption_worker",
                str(tmp / "images.npy"),
                str(tmp / f"tasks{w}.json"),
                str(tmp),
            ]
            procs.append(
                subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            )
        done: queue.Queue = queue.Queue()

        def pump(proc: subprocess.Popen) -> None:
            for line in proc.stdout:
                done.put(int(line.split()[0]))
            done.put(None)

        readers = [threading.Thread(target=pump, args=(p,), daemon=True) for p in procs]
        for r in readers:
            r.start()
        try:
            open_streams = len(procs)
            while open_streams:
                task_id = done.get()
                if task_id is None:
                    open_streams -= 1
                    continue
                finished(by_id[task_id], np.load(tmp / f"{task_id}.npy"))
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                p.wait()
        failed = [p for p in procs if p.returncode != 0]
        if failed:
            err = failed[0].stderr.read()[-2000:]
            raise RobustBenchError(
                f"corruption worker failed (exit {failed[0].returncode}):\n{err}"
            )


def load_precomputed(
    folder: str | Path, corruption: str, severity: int, split: Split
) -> np.ndarray:
    """CIFAR-10-C / CIFAR-100-C: ``<folder>/<corruption>.npy`` holds severities 1–5 stacked, each
    over the test set in order; ``labels.npy`` must match the split's labels."""
    folder = Path(folder)
    check_names([corruption])
    check_severities([severity])
    path = folder / f"{corruption}.npy"
    if not path.exists():
        raise RobustBenchError(
            f"corruptions_dir: {path} not found; the folder must hold <corruption>.npy files "
            "and labels.npy as published for CIFAR-10-C/CIFAR-100-C"
        )
    arrays = np.load(path, mmap_mode="r")
    n = len(split)
    if arrays.shape[0] < 5 * n:
        raise RobustBenchError(
            f"corruptions_dir: {path} has {arrays.shape[0]} images; 5 severities × {n} expected"
        )
    labels_path = folder / "labels.npy"
    if labels_path.exists():
        labels = np.load(labels_path, mmap_mode="r")[(severity - 1) * n : severity * n]
        if not np.array_equal(np.asarray(labels, dtype=np.int64), split.labels):
            raise RobustBenchError(
                f"corruptions_dir: {labels_path} does not match the labels of "
                f"{split.info.name}/{split.split}; is it the right dataset?"
            )
    return np.ascontiguousarray(arrays[(severity - 1) * n : severity * n])
