"""Real faults for tests: a full disk and a read-only file system, without root on the host.

``confined(argv, mounts)`` runs a command in a private mount namespace (``unshare -rm``) where
each folder of ``mounts`` is either a tiny tmpfs (``("full", path, size)``: a disk that fills
up) or a read-only bind of itself (``("ro", path)``). The host sees none of it. Where user
namespaces are not allowed, the test that needs one is skipped with the reason.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def namespaces_work() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        ["unshare", "-rm", "sh", "-c", "mount -t tmpfs none /mnt 2>/dev/null || exit 1"],
        capture_output=True,
    )
    return probe.returncode == 0


def confined(
    argv: list[str],
    mounts: list[tuple],
    timeout: float = 300,
    cwd: Path | None = None,
    after: str | None = None,
) -> subprocess.CompletedProcess:
    """Run ``argv`` with ``mounts`` in place; ``after`` (a shell command) runs next, inside the
    namespace, to look at what the command left there; the exit code stays the command's."""
    if not namespaces_work():
        pytest.skip("needs unshare -rm (a user + mount namespace) for a real full/read-only disk")
    setup = []
    for mount in mounts:
        if mount[0] == "full":
            _, path, size = mount
            setup.append(f"mount -t tmpfs -o size={size} none {shlex.quote(str(path))}")
        else:
            _, path = mount
            q = shlex.quote(str(path))
            setup.append(f"mount --bind {q} {q} && mount -o remount,ro,bind {q}")
    command = shlex.join(argv)
    if after:
        command = f"{command}; rc=$?; {after}; exit $rc"
    script = " && ".join([*setup, f"{{ {command}; }}"])
    return subprocess.run(
        ["unshare", "-rm", "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
    )


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "robustbench_norm.cli", *args]
