"""Stability measures against a quadratic whose Hessian we know."""

from __future__ import annotations

import pytest
import torch

from robustbench_norm.training.models import build_model
from robustbench_norm.training.stability import gradient_path_measures, loss_band, model_stability

A = torch.diag(torch.tensor([10.0, 1.0, 0.1], dtype=torch.float64))


def quadratic(w):
    return lambda: 0.5 * w @ A @ w


def test_beta_smoothness_recovers_the_largest_hessian_eigenvalue():
    w = torch.tensor([1.0, 1.0, 1.0], dtype=torch.float64, requires_grad=True)
    m = gradient_path_measures([w], quadratic(w), etas=[0.01, 0.05, 0.1])
    # for L = ½wᵀAw the ratio is ‖A g‖ / ‖g‖ with g = A w: 9.95 here, at most λ_max = 10
    assert m["beta_smoothness"] == pytest.approx(10.0, rel=0.01)
    assert m["beta_smoothness"] <= 10.0 + 1e-9
    # along the top eigenvector it is exact
    v = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64, requires_grad=True)
    assert gradient_path_measures([v], quadratic(v), [0.01])["beta_smoothness"] == pytest.approx(
        10.0
    )


def test_landscape_and_predictiveness_equal_the_closed_form():
    w = torch.tensor([1.0, -2.0, 3.0], dtype=torch.float64, requires_grad=True)
    etas = [0.01, 0.05, 0.1]
    m = gradient_path_measures([w], quadratic(w), etas)
    w0 = w.detach().clone()
    g = A @ w0
    losses = [float(0.5 * (w0 - e * g) @ A @ (w0 - e * g)) for e in etas]
    changes = [float((e * A @ g).norm()) for e in etas]
    assert m["landscape_min"] == pytest.approx(min(losses))
    assert m["landscape_max"] == pytest.approx(max(losses))
    assert m["landscape_range"] == pytest.approx(max(losses) - min(losses))
    # per unit of the longest step's length, η_max·‖g‖: comparable across gradient sizes
    per_length = (max(losses) - min(losses)) / (max(etas) * float(g.norm()))
    assert m["landscape_range_per_length"] == pytest.approx(per_length)
    assert m["grad_change_max"] == pytest.approx(max(changes))
    assert m["grad_change_min"] == pytest.approx(min(changes))
    assert torch.equal(w.detach(), w0)  # parameters restored


def test_model_stability_leaves_weights_buffers_and_rng_untouched():
    model = build_model("resnet20", "bn", 10, 1, width=4, dropout=0.3).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = torch.rand(8, 1, 32, 32), torch.randint(0, 10, (8,))
    rng = torch.get_rng_state()
    m = model_stability(
        model, lambda out: torch.nn.functional.cross_entropy(out, y), x, [0.1, 0.2], seed=0
    )
    assert m["beta_smoothness"] > 0 and m["landscape_range"] >= 0
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert torch.equal(torch.get_rng_state(), rng)


def test_loss_band_is_the_per_step_min_and_max():
    lows, highs = loss_band([[3.0, 2.0, 1.0], [2.5, 2.5, 0.5, 0.1]])
    assert lows == [2.5, 2.0, 0.5] and highs == [3.0, 2.5, 1.0]
