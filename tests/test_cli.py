"""The console script: commands wire through, user errors exit 2 without a traceback."""

from __future__ import annotations

import subprocess
import sys

from robustbench_norm.cli import main


def test_list_norms(capsys):
    assert main(["list", "norms"]) == 0
    out = capsys.readouterr().out
    assert "gnplus" in out and "Continual Norm" in out


def test_train_prints_real_accuracy_per_norm(tmp_path, capsys):
    args = "train --norm bn gnplus --norm-option groups=2 --width 4 --steps 3 --batch-size 64"
    args = [*args.split(), "--workdir", str(tmp_path), "--quiet"]
    assert main(args) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line.split() for line in out.splitlines()[1:3]}
    assert set(lines) == {"bn", "gnplus"}
    for row in lines.values():
        assert row[1] == "done" and row[2] == "3"
        assert 0.0 <= float(row[4]) <= 1.0
    assert (tmp_path / "checkpoints").is_dir()


def test_user_error_exits_2_with_a_message_and_no_traceback():
    proc = subprocess.run(
        [sys.executable, "-m", "robustbench_norm.cli", "train", "--norm", "batchnorm", "--quiet"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "unknown norm 'batchnorm'" in proc.stderr and "gnplus" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_option_no_selected_norm_accepts_is_an_error(capsys):
    assert main(["train", "--norm", "bn", "--norm-option", "groups=4", "--quiet"]) == 2
    assert "no selected norm (bn) has option 'groups'" in capsys.readouterr().err


def test_public_api_resolves_every_exported_name():
    import robustbench_norm as rbn

    for name in rbn.__all__:
        assert getattr(rbn, name) is not None, name
