"""The nightly workflow file: valid GitHub Actions syntax (check-jsonschema's vendored schema of
workflows, offline), and the commands it runs exist with the flags it passes."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from robustbench_norm.cli.parser import build_parser

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / ".github" / "workflows" / "nightly.yml"
VALIDATOR = Path(sys.executable).parent / "check-jsonschema"


def validate(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(VALIDATOR), "--builtin-schema", "vendor.github-workflows", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_workflow_is_a_valid_github_actions_workflow(tmp_path):
    result = validate(WORKFLOW)
    assert result.returncode == 0, result.stdout + result.stderr
    # the validator bites: the same file with a job that names no runner is refused
    broken = tmp_path / "broken.yml"
    broken.write_text(re.sub(r"\n    runs-on: .*\n", "\n", WORKFLOW.read_text(), count=1))
    assert validate(broken).returncode != 0


def test_the_workflow_runs_nightly_with_flags_the_cli_has():
    text = WORKFLOW.read_text()
    assert re.search(r'cron: "\d+ \d+ \* \* \*"', text)  # once a night
    assert "vars.NIGHTLY_GPU_RUNNER" in text and "inputs.runner" in text  # the GPU label
    command = re.search(r"robustbench-norm nightly (.*)", text).group(1)
    assert "--out" in command and "--json" in command
    for suite in re.findall(r"SUITE=(suites/\S+?\.toml)", text):
        assert (ROOT / suite).is_file()
        args = build_parser().parse_args(
            ["nightly", suite, "--out", "b", "--json", "n.json", "--device", "cuda",
             "--accept-changes"]
        )  # fmt: skip
        assert args.func.__name__ == "_cmd_nightly"
    assert "make setup" in text  # the runner installs what `make test` would
