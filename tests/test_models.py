"""Models: every model with every layer builds, trains two steps, and carries its norm."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from robustbench_norm.data import dataset_info, load_split, to_float_nchw
from robustbench_norm.errors import RobustBenchError
from robustbench_norm.norms import available, norm_name
from robustbench_norm.training.models import available_models, build_model

#: norm layers per model: stem + 2 per block + projection shortcuts (ResNet-18), 8 convs (VGG-11)
NORM_COUNT = {"resnet18": 1 + 8 * 2 + 3, "resnet20": 1 + 9 * 2, "vgg11": 8}
GROUPED = {"gn", "gnplus", "bgn", "cn", "evonorm_s0"}


@pytest.fixture(scope="module")
def batch():
    split = load_split("fashion-mnist-mini", "train")
    return to_float_nchw(split.images[:16]), torch.from_numpy(split.labels[:16])


@pytest.mark.parametrize("model_name", sorted(NORM_COUNT))
@pytest.mark.parametrize("norm", available())
def test_every_model_trains_two_steps_with_every_norm(model_name, norm, batch):
    x, y = batch
    info = dataset_info("fashion-mnist-mini")
    options = {"groups": "auto"} if norm in GROUPED else {}
    model = build_model(model_name, norm, info.num_classes, info.in_channels, width=4, **options)
    injected = [m for m in model.modules() if norm_name(m) == norm]
    assert len(injected) == NORM_COUNT[model_name]
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    for _ in range(2):
        opt.zero_grad()
        logits = model(x)
        assert logits.shape == (16, 10)
        F.cross_entropy(logits, y).backward()
        opt.step()
    assert torch.isfinite(model(x)).all()


def test_the_model_owns_its_input_normalization():
    info = dataset_info("fashion-mnist-mini")
    model = build_model("resnet20", "bn", 10, 1, mean=info.mean, std=info.std)
    assert torch.allclose(model.normalize.mean.flatten(), torch.tensor(info.mean))
    assert "normalize.mean" in model.state_dict()  # travels with the checkpoint
    x = torch.rand(2, 1, 32, 32)
    expected = (x - info.mean[0]) / info.std[0]
    torch.testing.assert_close(model.normalize(x), expected)


@pytest.mark.parametrize("model_name", available_models())
def test_dropout_is_active_in_training_and_off_in_eval(model_name):
    model = build_model(model_name, "gn", 10, 3, width=4, dropout=0.5, groups="auto")
    x = torch.rand(4, 3, 32, 32)
    model.eval()
    torch.testing.assert_close(model(x), model(x))
    model.train()
    assert not torch.allclose(model(x), model(x))


def test_resnet18_has_the_cifar_stem_and_expected_size():
    model = build_model("resnet18", "bn", 10, 3)
    stem_conv = model.stem[0]
    assert stem_conv.kernel_size == (3, 3) and stem_conv.stride == (1, 1)
    assert not any(isinstance(m, torch.nn.MaxPool2d) for m in model.modules())
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(11.17e6, rel=0.01)


def test_resnet20_is_he_et_al_size():
    model = build_model("resnet20", "bn", 10, 3)
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(0.27e6, rel=0.02)


def test_unknown_model_lists_names():
    with pytest.raises(
        RobustBenchError, match="unknown model 'resnet50'.*resnet18, resnet20, vgg11"
    ):
        build_model("resnet50", "bn", 10, 3)


def test_groups_not_dividing_a_stage_width_is_caught_at_build_time():
    with pytest.raises(RobustBenchError, match="num_channels=16 is not divisible by groups=32"):
        build_model("resnet20", "gn", 10, 1)  # width 16, default 32 groups
