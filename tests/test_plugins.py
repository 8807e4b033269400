"""Your own layer from the CLI: a plugin module registers it, suites and --plugin load it, its
source is part of every cache key (an edit reruns its jobs), its checkpoints evaluate when the
plugin is given and say which plugin is missing when it is not. Installed packages register
through the ``robustbench_norm.norms`` entry-point group."""

from __future__ import annotations

import sys

import pytest

from robustbench_norm.cli import main
from robustbench_norm.norms import make_norm, registry
from robustbench_norm.suites.store import Store

PLUGIN = '''
import torch
from torch import nn
from robustbench_norm import register_norm


@register_norm("{name}")
class MyNorm(nn.Module):
    """RMS norm over each sample's channels and pixels, with a per-channel gain."""

    def __init__(self, num_channels, eps=1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.eps = eps

    def forward(self, x):
        rms = x.pow(2).mean((1, 2, 3), keepdim=True).add(self.eps).sqrt()
        return x / rms * self.weight.view(1, -1, 1, 1){tail}
'''

SUITE = """
name = "mine"
plugins = ["{plugin}"]
width = 4
batch_sizes = [64]
seeds = [0]
test_limit = 50
[[norms]]
name = "bn"
[[norms]]
name = "{name}"
[train]
steps = 3
"""


@pytest.fixture
def plugin(tmp_path, request):
    """A plugin file registering a layer under a name unique to this test."""
    name = "mynorm_" + request.node.name.split("[")[0][-20:].replace("-", "_")
    path = tmp_path / "my_norms.py"
    path.write_text(PLUGIN.format(name=name, tail=""))
    yield name, path
    registry._REGISTRY.pop(name, None)
    for module in [m for m in sys.modules if m.startswith("robustbench_norm_plugin_")]:
        del sys.modules[module]
    registry._source_hash.cache_clear()


def _reimport(name):
    for module in [m for m in sys.modules if m.startswith("robustbench_norm_plugin_")]:
        del sys.modules[module]  # a new process would import the edited file
    registry._REGISTRY.pop(name, None)
    registry._source_hash.cache_clear()


def test_without_the_plugin_the_name_is_unknown_and_the_message_says_how(tmp_path, capsys):
    suite = tmp_path / "s.toml"
    text = SUITE.format(plugin="x", name="unheard_of").replace('plugins = ["x"]\n', "")
    suite.write_text(text)
    assert main(["plan", str(suite)]) == 2
    err = capsys.readouterr().err
    assert "unknown norm 'unheard_of'" in err and "--plugin MODULE" in err


def test_a_plugin_layer_runs_from_the_cli_and_an_edit_reruns_its_jobs(tmp_path, plugin, capsys):
    name, path = plugin
    suite = tmp_path / "mine.toml"
    suite.write_text(SUITE.format(plugin="my_norms.py", name=name))
    store = tmp_path / "store.sqlite"
    argv = ["run", str(suite), "--store", str(store), "--workdir", str(tmp_path / "w"),
            "--threads", "1", "--quiet"]  # fmt: skip
    assert main(["plan", str(suite)]) == 0
    assert main(argv) == 0
    assert "2 executed" in capsys.readouterr().out
    assert main(argv) == 0
    assert "2 reused, 0 executed" in capsys.readouterr().out

    path.write_text(PLUGIN.format(name=name, tail=" * 0.5"))  # another layer, same name
    _reimport(name)
    assert main(argv) == 0
    assert "1 reused, 1 executed" in capsys.readouterr().out  # bn reused, the edited layer not

    with Store.open(store, read_only=True) as s:
        ckpt = next(j["checkpoint"] for j in s.jobs_of_run(s.runs()[-1]["id"]) if j["norm"] == name)
        assert s.run(s.runs()[-1]["id"])["provenance"]["plugins"] == [str(path.resolve())]
    assert main(["eval", ckpt, "--limit", "20", "--plugin", str(path)]) == 0
    assert "accuracy" in capsys.readouterr().out
    registry._REGISTRY.pop(name)
    assert main(["eval", ckpt, "--limit", "20"]) == 2
    err = capsys.readouterr().err
    assert f"trained with norm {name!r}" in err and "--plugin MODULE" in err and "my_norms" in err


def test_worker_processes_load_the_suites_plugins(tmp_path, plugin, capsys):
    name, _ = plugin
    suite = tmp_path / "mine.toml"
    suite.write_text(
        SUITE.format(plugin="my_norms.py", name=name).replace("seeds = [0]", "seeds = [0, 1]")
    )
    argv = ["run", str(suite), "--store", str(tmp_path / "s.sqlite"), "--jobs", "2",
            "--workdir", str(tmp_path / "w"), "--quiet"]  # fmt: skip
    assert main(argv) == 0
    assert "4 executed, 0 diverged, 0 failed" in capsys.readouterr().out


def test_a_plugin_by_module_name_beside_the_suite_and_by_cli_flag(tmp_path, plugin, capsys):
    name, path = plugin
    suite = tmp_path / "mine.toml"
    suite.write_text(SUITE.format(plugin="my_norms", name=name))  # a module name, not a file
    assert main(["plan", str(suite)]) == 0
    sys.modules.pop("my_norms", None)
    registry._REGISTRY.pop(name)
    bare = tmp_path / "bare.toml"
    bare.write_text(SUITE.format(plugin="x", name=name).replace('plugins = ["x"]\n', ""))
    assert main(["plan", str(bare)]) == 2
    capsys.readouterr()
    assert main(["plan", str(bare), "--plugin", str(path)]) == 0


def test_a_broken_plugin_is_one_line_naming_it(tmp_path, capsys):
    bad = tmp_path / "broken.py"
    bad.write_text("raise ImportError('no such dependency: fancy_kernels')\n")
    suite = tmp_path / "s.toml"
    suite.write_text(SUITE.format(plugin="broken.py", name="bn"))
    assert main(["plan", str(suite)]) == 2
    err = capsys.readouterr().err
    assert "plugins" in err and "broken.py" in err and "fancy_kernels" in err


def test_installed_packages_register_through_the_entry_point_group(tmp_path, monkeypatch):
    site = tmp_path / "site"
    (site / "epnorms-0.1.dist-info").mkdir(parents=True)
    (site / "epnorms-0.1.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: epnorms\nVersion: 0.1\n"
    )
    (site / "epnorms-0.1.dist-info" / "entry_points.txt").write_text(
        "[robustbench_norm.norms]\nep_rms = epnorms_layers:RMS\n"
    )
    (site / "epnorms_layers.py").write_text(
        "from torch import nn\n\n"
        "class RMS(nn.Module):\n"
        '    """An installed layer."""\n'
        "    def __init__(self, num_channels):\n"
        "        super().__init__()\n"
        "    def forward(self, x):\n"
        "        return x / x.pow(2).mean((1, 2, 3), keepdim=True).add(1e-5).sqrt()\n"
    )
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setattr(registry, "_entry_points_loaded", False)
    try:
        layer = make_norm("ep_rms", 8)
        assert type(layer).__name__ == "RMS" and "ep_rms" in registry.available()
        assert registry.layer_identity("ep_rms")  # not built in: its source is in the key
        assert registry.layer_identity("gnplus") == ""
    finally:
        registry._REGISTRY.pop("ep_rms", None)


def test_a_comment_or_docstring_edit_keeps_the_layer_and_its_code_hash_is_on_the_page(
    tmp_path, plugin, capsys
):
    name, path = plugin
    suite = tmp_path / "mine.toml"
    suite.write_text(SUITE.format(plugin="my_norms.py", name=name))
    store = tmp_path / "store.sqlite"
    argv = ["run", str(suite), "--store", str(store), "--workdir", str(tmp_path / "w"),
            "--threads", "1", "--quiet"]  # fmt: skip
    assert main(argv) == 0
    capsys.readouterr()
    edited = (
        PLUGIN.format(name=name, tail="  # a comment")
        .replace("RMS norm over each sample's", "Root-mean-square norm over each sample's")
        .replace("        super().__init__()", "\n        super().__init__()   ")
    )
    path.write_text(edited)  # a comment, a docstring and layout: the same code
    _reimport(name)
    assert main(argv) == 0
    assert "2 reused, 0 executed" in capsys.readouterr().out
    path.write_text(PLUGIN.format(name=name, tail=" * 0.5"))  # code: another layer
    _reimport(name)
    assert main(argv) == 0
    assert "1 reused, 1 executed" in capsys.readouterr().out
    with Store.open(store, read_only=True) as s:
        runs = s.runs()
        hashes = [s.run(r["id"])["provenance"]["plugin_layers"][name]["code_sha256"] for r in runs]
    assert hashes[0] == hashes[1] != hashes[2] and len(hashes[2]) == 16
    assert main(["report", "--store", str(store), "--out", str(tmp_path / "lb")]) == 0
    page = (tmp_path / "lb" / "README.md").read_text()
    assert f"plugin layer {name}: from " in page and f"code {hashes[2]}" in page
