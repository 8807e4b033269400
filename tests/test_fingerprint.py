"""Layer fingerprints: stable where the math is unchanged (recomputation, thread counts, a JSON
round trip), and "changed" — with the place — for a planted regression or another config."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from robustbench_norm.norms import gnplus
from robustbench_norm.norms.fingerprint import (
    RTOL,
    _relative_difference,
    compare_fingerprints,
    fingerprint,
    signature,
)

CONFIGS = {
    "bn": ("bn", {}),
    "gn": ("gn", {"groups": 4}),
    "gnplus": ("gnplus", {"groups": 4}),
    "gnplus-gn_first": ("gnplus", {"groups": 4, "variant": "gn_first"}),
    "none": ("none", {}),
}


@pytest.fixture(scope="module")
def prints():
    return {label: fingerprint(name, options) for label, (name, options) in CONFIGS.items()}


def test_fingerprint_covers_outputs_gradients_buffers_and_the_canary(prints):
    entries = prints["gnplus"]["entries"]
    case = "N2·C8·3x4"
    for what in ("train/output", "grad/input", "grad/weight", "grad/bias", "grad/lambda_logit"):
        assert f"{case}/{what}" in entries
    for what in ("buffer/running_mean", "buffer/running_var", "eval/output"):
        assert f"{case}/{what}" in entries
    assert {"N1·C8·4x4/train/output", "N2·C8·3x4·channels_last/train/output"} <= set(entries)
    assert {"N2·C8·3x4·groups=1/grad/input", "N2·C8·3x4·groups=8/grad/input"} <= set(entries)
    losses = [float(v) for v in entries["canary/loss"]["values"]]
    assert len(losses) == 3 and losses[2] < losses[0]  # three SGD steps that learn
    assert "error" not in json.dumps(prints)
    # BN keeps running statistics after 4 training calls: num_batches_tracked says so
    assert prints["bn"]["entries"][f"{case}/buffer/num_batches_tracked"]["values"] == [4.0]
    assert signature(prints["gnplus"]).count("→") == 2


def test_channels_last_and_contiguous_cases_agree(prints):
    """The same input in two layouts must give the same numbers (a layout bug would not)."""
    for label in ("bn", "gn", "gnplus"):
        e = prints[label]["entries"]
        for what in ("train/output", "grad/input"):
            a = np.array(e[f"N2·C8·3x4/{what}"]["values"], dtype=float)
            b = np.array(e[f"N2·C8·3x4·channels_last/{what}"]["values"], dtype=float)
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_recomputing_and_other_thread_counts_are_unchanged(prints):
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        again = {label: fingerprint(name, opts) for label, (name, opts) in CONFIGS.items()}
    finally:
        torch.set_num_threads(threads)
    diffs = compare_fingerprints(prints, again)
    assert [d.status for d in diffs] == ["unchanged"] * len(CONFIGS)
    assert all(d.max_rel_diff <= RTOL for d in diffs)


def test_a_json_round_trip_is_unchanged(prints):
    restored = json.loads(json.dumps(prints))
    assert all(d.status == "unchanged" for d in compare_fingerprints(prints, restored))


def test_the_planted_regression_is_changed_with_where(prints, monkeypatch):
    """GN+ with λ frozen at 1 (plain GN): outputs move a few %, the input gradient ~all.
    Planted in the code of both eager paths (the one-pass path's extra parameters and the
    kernel path's arguments), so the default path carries it whichever that is."""
    kernel_args = gnplus.GNPlus._kernel_args

    def at_one(self):
        return torch.full_like(self.lambda_logit, math.inf)

    def frozen_args(self, x, momentum):
        args = list(kernel_args(self, x, momentum))
        args[3] = at_one(self)  # θ = +inf: λ = 1
        return tuple(args)

    monkeypatch.setattr(gnplus.GNPlus, "_extra_params", lambda self: (at_one(self),))
    monkeypatch.setattr(gnplus.GNPlus, "_kernel_args", frozen_args)
    planted = {"gnplus": fingerprint("gnplus", {"groups": 4})}
    (diff,) = compare_fingerprints({"gnplus": prints["gnplus"]}, planted)
    assert diff.status == "changed"
    assert "N2·C8·3x4/grad/input" in diff.changed_entries
    assert "canary/loss" in diff.changed_entries
    assert diff.max_rel_diff > 0.1 and "/" in diff.where
    a = np.array(prints["gnplus"]["entries"]["N2·C8·3x4/grad/input"]["values"], dtype=float)
    b = np.array(planted["gnplus"]["entries"]["N2·C8·3x4/grad/input"]["values"], dtype=float)
    assert np.abs(a - b).max() / np.abs(a).max() > 0.1
    assert "CHANGED" in diff.describe()


def test_another_configuration_or_a_missing_label_is_reported(prints):
    other = {"gn": fingerprint("gn", {"groups": 2})}
    (diff,) = compare_fingerprints({"gn": prints["gn"]}, other)
    assert diff.status == "changed" and "configuration" in diff.note
    diffs = compare_fingerprints({"bn": prints["bn"]}, {"gn": prints["gn"]})
    assert [(d.label, d.status) for d in diffs] == [("bn", "missing"), ("gn", "new")]


def test_relative_difference_by_hand():
    a = np.array([1.0, -4.0, 2.0])
    b = np.array([1.0, -4.0, 2.5])
    assert _relative_difference(a, b) == (0.5 / 4.0, 2)
    nan = np.array([math.nan, 1.0])
    assert _relative_difference(nan, nan.copy())[0] == 0.0
    assert _relative_difference(nan, np.array([0.0, 1.0]))[0] == math.inf
    assert _relative_difference(np.array([math.inf]), np.array([math.inf]))[0] == 0.0
