"""scripts/resume_points.py: what a fresh machine needs to continue the jobs in flight."""

from __future__ import annotations

import importlib.util
import sqlite3
import tarfile
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "resume_points.py"


def test_it_packs_training_and_evaluating_jobs_but_not_finished_ones(tmp_path):
    spec = importlib.util.spec_from_file_location("resume_points", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    work = tmp_path / "results"
    files = {
        "training": work / "checkpoints/aaa/cpu-1threads/last.pt",
        "evaluating": work / "checkpoints/bbb/cpu-1threads/final.pt",
        "finished": work / "checkpoints/ccc/cpu-1threads/final.pt",
    }
    for name, f in files.items():
        f.parent.mkdir(parents=True)
        f.write_text(name)
    store = tmp_path / "store.sqlite"
    with sqlite3.connect(store) as conn:
        conn.execute("CREATE TABLE jobs (status TEXT, checkpoint TEXT)")
        conn.executemany(
            "INSERT INTO jobs VALUES (?, ?)",
            [("done", str(files["finished"])), ("running", None), ("pending", None)],
        )
    conn.close()
    out = tmp_path / "resume.tar"
    module.main([str(work), str(out), "--stores", str(store)])
    with tarfile.open(out) as tar:
        packed = {m.name: tar.extractfile(m).read().decode() for m in tar.getmembers()}
    assert packed == {
        "checkpoints/aaa/cpu-1threads/last.pt": "training",
        "checkpoints/bbb/cpu-1threads/final.pt": "evaluating",
    }
