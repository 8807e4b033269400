"""The README's runnable sections, executed verbatim: a file block is written under its name,
a command block is run line by line through the CLI, in a fresh folder."""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

import pytest

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


def test_the_reading_a_leaderboard_block_runs_as_printed_on_every_board(capsys, monkeypatch):
    """Verbatim on the standard board, and with its path swapped for the smoke board's (2 seeds
    per norm: no intervals, the case that used to raise TypeError)."""
    blocks = PYTHON.findall(README.read_text())
    assert blocks
    monkeypatch.chdir(README.parent)
    for board in ("standard", "smoke"):
        for code in blocks:
            code = code.replace("leaderboards/standard/", f"leaderboards/{board}/")
            exec(compile(code, "README.md", "exec"), {})
        out = capsys.readouterr().out
        assert "GN+ beats GN at every batch size: " in out
        assert "resnet20, batch " in out and any(
            line.split()[1:2] == ["gnplus"] for line in out.splitlines() if line.startswith("  ")
        )
        if board == "smoke":
            assert "runs 0." in out  # the 2-run cells print their runs


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
        # the walk goes on as the README says: rerun the suite, report again, check it
        run = "robustbench-norm run mine.toml --store mine.sqlite --workdir mine-work --quiet"
        assert main(shlex.split(run)[1:]) == 0
        assert main(["report", "--store", "mine.sqlite", "--out", "again"]) == 0
        page = (tmp_path / "again" / "README.md").read_text()
        assert "| resnet18-tv (external) | ResNet |" in page  # still on the board, own label
        assert "plugin layer rmsnorm: from " in page and ", code " in page  # the code hash
        check = "check --baseline mine.sqlite:previous --candidate mine.sqlite:latest"
        assert main(check.split()) in (0, 4)  # no flag beyond the README's: pass or undecided
        assert main(["detach", "resnet18-tv", "--suite", "mine", "--store", "mine.sqlite"]) == 0
    finally:
        registry._REGISTRY.pop("rmsnorm", None)
        for module in [m for m in sys.modules if m.startswith("robustbench_norm_plugin_")]:
            del sys.modules[module]


def _standard_section() -> str:
    text = README.read_text()
    return text[text.index("## What the standard suite found") : text.index("\n## ", text.index(
        "## What the standard suite found") + 5)]  # fmt: skip


def test_the_first_screens_numbers_are_the_published_leaderboards():
    """Every cell of the README's standard-suite table and every claim's verdict and final p
    are what `leaderboards/standard/results.json` says: prose copied by hand drifts (it once
    said "~2×" where the tables said 4.4–5.5×)."""
    import json

    board = json.loads((README.parent / "leaderboards/standard/results.json").read_text())
    tables = {t["id"]: {r["norm"]: r["cells"] for r in t["rows"]} for t in board["leaderboards"]}
    columns = [("clean", "bs 8 · none"), ("clean", "bs 64 · none"), ("noise", "bs 64 · none"),
               ("corruption", "bs 64 · none"), ("attack-pgd_linf", "bs 64 · none · ε=4/255"),
               ("flip", "bs 64 · none")]  # fmt: skip
    section = _standard_section()
    rows = re.findall(r"^\| ((?:bn|gn|gnplus|none)(?: · test-batch \d+)?) \|(.*)\|$", section, re.M)
    assert [norm for norm, _ in rows][:4] == ["bn", "gn", "gnplus", "none"]
    for norm, cells in rows:
        for (table, column), text in zip(columns, cells.split("|"), strict=True):
            cell = tables[table].get(norm, {}).get(column)  # a test-batch row has no attacks
            expected = "—" if cell is None else (
                f"{cell['mean']:.3f} [{cell['low']:.3f}, {cell['high']:.3f}]")  # fmt: skip
            assert text.strip().strip("*") == expected, (norm, table, column)
    claims = {c["claim"]: c for c in board["claims"]}
    found = re.findall(r"^\| (GN[^|]*?) \| \*\*([a-z ]+)\*\* \| (.*) \|$", section, re.M)
    assert len(found) == 6
    for claim, verdict, evidence in found:
        assert claims[claim]["verdict"] == verdict, claim
        p = re.search(r"p ([0-9.e-]+)\W*$", evidence)
        if p:  # the p that decides, rounded to the significant digits printed
            printed = p.group(1)
            digits = len(re.sub(r"^[0.]*", "", printed.split("e")[0]).replace(".", ""))
            true = float(f"{claims[claim]['p_value']:.{digits - 1}e}")
            assert float(printed) == pytest.approx(true), claim


def test_the_first_screens_stability_ratios_are_the_tables():
    import json

    board = json.loads((README.parent / "leaderboards/standard/results.json").read_text())
    section = _standard_section()
    m = re.search(r"landscape range per unit step ([0-9.]+)× \(bs 8\) and ([0-9.]+)× \(bs 64\) "
                  r"BN's, β-smoothness ([0-9.]+)× and ([0-9.]+)×", section)  # fmt: skip
    assert m, "the stability evidence is not in the README's claims table"
    quoted = [float(x) for x in m.groups()]
    tables = {t["id"]: {r["norm"]: r["cells"] for r in t["rows"]} for t in board["leaderboards"]}
    ratios = []
    for measure in ("landscape range / step", "β-smoothness"):
        for bs in (8, 64):
            rows = tables[f"stability-resnet20-bs{bs}"]
            ratios.append(rows["gn"][measure]["mean"] / rows["bn"][measure]["mean"])
    assert quoted == [round(r, 1) for r in ratios]


def test_the_own_layer_section_counts_what_it_shows():
    text = README.read_text()
    section = text[text.index("### Your own layer") : text.index("### Your own model")]
    words = {2: "Two", 3: "Three", 4: "Four"}
    files = section.count("<!-- readme-test: file ")
    commands = sum(
        len([line for line in block.splitlines() if line.strip() and not line.startswith("#")])
        for kind, _, block in readme_blocks()
        if kind == "commands" and block in section
    )
    assert f"{words[files]} files and {words[commands].lower()} commands" in section
