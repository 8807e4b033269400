"""Worker process for corruption generation: ``python -m robustbench_norm.perturb.corruption_worker
IMAGES.npy TASKS.json OUT_DIR``.

A plain subprocess rather than a multiprocessing pool: a fork would inherit the caller's running
OpenCV/BLAS thread pools (and can deadlock), and a spawn re-imports the caller's ``__main__``
(which breaks scripts without an ``if __name__ == "__main__"`` guard). Each finished task is
written to ``OUT_DIR/<id>.npy`` and announced as one line on stdout for the progress bar.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np


def main(images_path: str, tasks_path: str, out_dir: str) -> None:
    import cv2

    from robustbench_norm.perturb.corruptions import corrupt_images

    cv2.setNumThreads(1)  # one process per core already
    images = np.load(images_path, mmap_mode="r")
    for task in json.loads(Path(tasks_path).read_text()):
        start, stop = task["start"], task["stop"]
        out = corrupt_images(
            np.asarray(images[start:stop]),
            task["corruption"],
            task["severity"],
            task["seed"],
            start,
            task["table"],
        )
        tmp = Path(out_dir) / f"{task['id']}.tmp.npy"
        np.save(tmp, out)
        tmp.rename(Path(out_dir) / f"{task['id']}.npy")
        print(task["id"], stop - start, flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:4])
