"""The README's runnable sections, executed verbatim: a file block is written under its name,
a command block is run line by line through the CLI, in a fresh folder."""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

from robustbench_norm.cli import main
from robustbench_norm.norms import registry

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCK = re.compile(
    r"<!-- readme-test: (file (\S+)|commands|python-here) -->\n```\w*\n(.*?)```", re.S
)
PYTHON = re.compile(r"<!-- readme-test: python -->\n```python\n(.*?)```", re.S)


def readme_blocks() -> list[tuple[str, str | None, str]]:
    """(kind, file name, block text), in README order; kind is file, commands or
    python-here (Python run in the section's folder)."""
    return [
        (m.group(1).split()[0], m.group(2), m.group(3)) for m in BLOCK.finditer(README.read_text())
    ]


def test_the_reading_a_leaderboard_block_runs_as_printed(capsys, monkeypatch):
    blocks = PYTHON.findall(README.read_text())
    assert blocks
    monkeypatch.chdir(README.parent)
    for code in blocks:
        exec(compile(code, "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert "GN+ beats GN at every batch size" in out and "supported" in out
    assert any(line.split()[1:2] == ["gnplus"] for line in out.splitlines() if line.strip())


def test_the_own_layer_and_own_model_sections_run_as_printed(tmp_path, monkeypatch, capsys):
    blocks = readme_blocks()
    assert [kind for kind, _, _ in blocks] == ["file", "file", "commands", "python-here"]
    monkeypatch.chdir(tmp_path)
    try:
        for kind, name, text in blocks:
            if kind == "file":
                (tmp_path / name).write_text(text)
            elif kind == "python-here":
                exec(compile(text, "README.md", "exec"), {})
            else:
                for line in text.strip().splitlines():
                    argv = shlex.split(line)
                    assert argv[0] == "robustbench-norm"
                    assert main(argv[1:]) == 0, line
        out = capsys.readouterr().out
        assert "rmsnorm" in out  # planned, run, in the headline
        assert "resnet18-tv (external) clean accuracy" in out
        board = (tmp_path / "mine-leaderboard" / "README.md").read_text()
        assert "rmsnorm" in board and "bn" in board
        assert main(["report", "--store", "mine.sqlite", "--out", "with-model"]) == 0
        assert "resnet18-tv (external)" in (tmp_path / "with-model" / "README.md").read_text()
    finally:
        registry._REGISTRY.pop("rmsnorm", None)
        for module in [m for m in sys.modules if m.startswith("robustbench_norm_plugin_")]:
            del sys.modules[module]
