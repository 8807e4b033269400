"""Training: determinism, resume, divergence, caching, mixup and the log."""

from __future__ import annotations

import math

import pytest
import torch

from robustbench_norm.errors import RobustBenchError
from robustbench_norm.training import TrainSpec, load_trained, mixup_loss, train

#: small enough for seconds on 2 cores: ResNet-20 at width 2 (stages of 2, 4, 8 channels: what is
#: tested here is the loop, not the network), 10 steps of 500 images per epoch
TINY = dict(model="resnet20", width=2, batch_size=500, lr=0.05, log_every=2)


def weights_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_same_spec_gives_bit_identical_weights_and_logs(tmp_path):
    spec = TrainSpec(**TINY, norm="gnplus", norm_options={"groups": 2}, steps=6, dropout=0.1,
                     mixup_alpha=0.4, perturbation={"mode": "time_varying"})  # fmt: skip
    one = train(spec, tmp_path / "a", quiet=True)
    two = train(spec, tmp_path / "b", quiet=True)
    assert not one.cached and not two.cached
    w1 = torch.load(one.checkpoint, weights_only=False)["model"]
    w2 = torch.load(two.checkpoint, weights_only=False)["model"]
    assert weights_equal(w1, w2)
    assert one.log == two.log
    assert one.meta["seed"] == 0 and one.meta["deterministic_algorithms"] is True


def test_different_seed_gives_different_weights(tmp_path):
    a = train(TrainSpec(**TINY, steps=2, seed=0), tmp_path, quiet=True)
    b = train(TrainSpec(**TINY, steps=2, seed=1), tmp_path, quiet=True)
    wa = torch.load(a.checkpoint, weights_only=False)["model"]
    wb = torch.load(b.checkpoint, weights_only=False)["model"]
    assert not weights_equal(wa, wb)


def test_interrupted_run_resumes_to_the_uninterrupted_result(tmp_path):
    spec = TrainSpec(**TINY, norm="bn", epochs=2, dropout=0.2, mixup_alpha=0.2,
                     perturbation={"mode": "time_varying"})  # fmt: skip
    stopped = train(spec, tmp_path / "resumed", quiet=True, stop_after_epoch=1)
    assert stopped.status == "interrupted" and stopped.steps == 10
    assert stopped.checkpoint.name == "last.pt" and stopped.checkpoint.exists()
    resumed = train(spec, tmp_path / "resumed", quiet=True)
    straight = train(spec, tmp_path / "straight", quiet=True)
    assert resumed.status == straight.status == "done" and resumed.steps == 20
    w_resumed = torch.load(resumed.checkpoint, weights_only=False)["model"]
    w_straight = torch.load(straight.checkpoint, weights_only=False)["model"]
    assert weights_equal(w_resumed, w_straight)
    assert resumed.log == straight.log
    assert not stopped.checkpoint.exists()  # last.pt is gone once final.pt is written


def test_finished_spec_is_reused_not_retrained(tmp_path):
    spec = TrainSpec(**TINY, steps=2)
    first = train(spec, tmp_path, quiet=True)
    again = train(spec, tmp_path, quiet=True)
    assert again.cached and again.checkpoint == first.checkpoint
    assert again.log == first.log


def test_absurd_learning_rate_is_recorded_as_diverged(tmp_path):
    spec = TrainSpec(**{**TINY, "lr": 1e8}, norm="none", steps=20)
    result = train(spec, tmp_path, quiet=True)
    assert result.status == "diverged"
    assert result.diverged_step is not None and result.diverged_step < 20
    assert train(spec, tmp_path, quiet=True).status == "diverged"  # cached as a result


def test_log_records_lr_schedule_gradients_and_gnplus_lambdas(tmp_path):
    spec = TrainSpec(**TINY, norm="gnplus", norm_options={"groups": 2}, steps=8)
    log = train(spec, tmp_path, quiet=True).log
    assert log["step"] == [0, 2, 4, 6, 7]
    assert log["lr"][0] == pytest.approx(0.05)  # cosine starts at the base lr
    assert log["lr"][-1] == pytest.approx(0.05 * 0.5 * (1 + math.cos(math.pi * 7 / 8)))
    assert all(g > 0 for g in log["grad_norm"])
    assert len(log["lambdas"][0]) == 19  # one λ per GN+ layer of ResNet-20
    assert log["lambdas"][0] != log["lambdas"][-1]  # λ is learned
    assert log["last_layer_grad_change"][0] is None and log["last_layer_grad_change"][1] > 0


def test_linear_lr_scaling_and_weight_decay_exemption():
    spec = TrainSpec(batch_size=32, lr=0.1, lr_scaling="linear")
    assert spec.effective_lr == pytest.approx(0.1 * 32 / 128)
    from robustbench_norm.training import make_optimizer

    model = TrainSpec(norm="gnplus", norm_options={"groups": 4}).build_model()
    groups = make_optimizer(TrainSpec(), model).param_groups
    no_decay = {id(p) for p in groups[1]["params"]}
    lambda_params = [p for n, p in model.named_parameters() if n.endswith("lambda_logit")]
    assert lambda_params and all(id(p) in no_decay for p in lambda_params)
    assert groups[1]["weight_decay"] == 0.0 and groups[0]["weight_decay"] == 5e-4


def test_mixup_loss_equals_hand_computed_value():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 1.0]])
    y_a, y_b, lam = torch.tensor([0, 2]), torch.tensor([1, 0]), 0.3

    def ce(row, k):
        return -(row[k] - math.log(sum(math.exp(v) for v in row)))

    rows = logits.tolist()
    expected = (
        sum(
            lam * ce(r, a) + (1 - lam) * ce(r, b)
            for r, a, b in zip(rows, y_a.tolist(), y_b.tolist(), strict=True)
        )
        / 2
    )
    assert float(mixup_loss(logits, y_a, y_b, lam)) == pytest.approx(expected, rel=1e-6)


def test_stability_measures_do_not_change_the_training_trajectory(tmp_path):
    plain = train(TrainSpec(**TINY, norm="bn", steps=6, dropout=0.1), tmp_path, quiet=True)
    measured = train(
        TrainSpec(**TINY, norm="bn", steps=6, dropout=0.1, stability={"every": 2}),
        tmp_path,
        quiet=True,
    )
    assert [r["step"] for r in measured.stability] == [0, 2, 4]
    assert all(r["landscape_range"] >= 0 and r["beta_smoothness"] > 0 for r in measured.stability)
    w1 = torch.load(plain.checkpoint, weights_only=False)["model"]
    w2 = torch.load(measured.checkpoint, weights_only=False)["model"]
    assert weights_equal(w1, w2)


def test_load_trained_rebuilds_the_model_in_eval_mode(tmp_path):
    result = train(TrainSpec(**TINY, steps=2), tmp_path, quiet=True)
    model, payload = load_trained(result.checkpoint)
    assert not model.training and payload["status"] == "done"
    with pytest.raises(RobustBenchError, match="does not exist"):
        load_trained(tmp_path / "missing.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(RobustBenchError, match="not a robustbench-norm checkpoint"):
        load_trained(bad)


@pytest.mark.parametrize(
    "field, value",
    [("optimizer", "lbfgs"), ("schedule", "linear"), ("batch_size", 0), ("lr", -1.0),
     ("dropout", 1.0), ("precision", "fp8"), ("lr_scaling", "sqrt")],
)  # fmt: skip
def test_bad_spec_values_name_the_field(field, value):
    with pytest.raises(RobustBenchError, match=f"train.{field}="):
        TrainSpec(**{field: value})


@pytest.mark.parametrize(
    "field, value, message",
    [("norm", "batchnorm", "unknown norm 'batchnorm'"), ("model", "resnet50", "unknown model"),
     ("dataset", "imagenet", "unknown dataset 'imagenet'")],
)  # fmt: skip
def test_unknown_names_fail_when_the_spec_is_made(field, value, message):
    with pytest.raises(RobustBenchError, match=message):
        TrainSpec(**{field: value})


@pytest.mark.slow
def test_compiled_training_follows_the_eager_trajectory(tmp_path):
    """``compile = true`` trains the same model through torch.compile (inductor on CPU): the
    kernels round differently, so the losses agree closely, not bitwise."""
    base = {**TINY, "norm": "gnplus", "norm_options": {"groups": 2}, "steps": 4, "log_every": 1}
    eager = train(TrainSpec(**base), tmp_path / "e", quiet=True)
    compiled = train(TrainSpec(**base, compile=True), tmp_path / "c", quiet=True)
    assert compiled.status == "done" and compiled.spec.key != eager.spec.key
    assert compiled.log["loss"] == pytest.approx(eager.log["loss"], rel=1e-3)
