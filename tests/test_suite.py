"""Suites: the shipped ones parse; every kind of mistake names the file, key path and fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from robustbench_norm.errors import RobustBenchError
from robustbench_norm.suites.plan import describe_plan
from robustbench_norm.suites.suite import load_suite

SUITES = Path(__file__).parents[1] / "suites"

MINIMAL = """
name = "t"
models = ["resnet20"]
width = 8
seeds = [0, 1]
batch_sizes = [64, 128]
[[norms]]
name = "bn"
[[norms]]
name = "gnplus"
options = { groups = 4 }
[evaluate.noise]
sigmas = [0.1]
"""


def write(tmp_path, text: str) -> Path:
    path = tmp_path / "suite.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "name, jobs",
    [("smoke", 6), ("nightly", 162), ("paper", 1260), ("standard", 56), ("standard-gpu", 216)],
)
def test_shipped_suites_parse_and_plan(name, jobs):
    suite = load_suite(SUITES / f"{name}.toml")
    assert suite.name == name and len(suite.jobs) == jobs
    assert f"{jobs} jobs" in describe_plan(suite)
    assert len({j.key for j in suite.jobs}) == jobs  # every job is distinct


def test_matrix_is_models_x_norms_x_batch_sizes_x_seeds(tmp_path):
    suite = load_suite(write(tmp_path, MINIMAL))
    assert len(suite.jobs) == 2 * 2 * 2
    combos = {(j.label, j.train.batch_size, j.train.seed) for j in suite.jobs}
    assert len(combos) == 8
    assert suite.jobs[0].train.width == 8 and suite.reference == "bn"


def test_regularization_sweep_multiplies_the_matrix(tmp_path):
    text = MINIMAL + "[regularization]\ndropout = [0.0, 0.3]\nmixup = [0.0, 1.0]\n"
    suite = load_suite(write(tmp_path, text))
    assert len(suite.jobs) == 8 * 3  # none, dropout 0.3, mixup 1.0
    assert {j.regularizer for j in suite.jobs} == {"none", "dropout=0.3", "mixup=1"}


def test_job_key_changes_with_the_spec_not_with_the_file_name(tmp_path):
    a = load_suite(write(tmp_path, MINIMAL)).jobs[0].key
    b = load_suite(write(tmp_path, MINIMAL.replace("width = 8", "width = 4"))).jobs[0].key
    (tmp_path / "other.toml").write_text(MINIMAL)
    c = load_suite(tmp_path / "other.toml").jobs[0].key
    assert a != b and a == c


@pytest.mark.parametrize(
    "edit, match",
    [
        (("width = 8", "widht = 8"), r"suite.toml: widht: unknown key; allowed keys here: .*width"),
        (("sigmas = [0.1]", "sigmas = [0.1]\nsigma = 0.1"), r"evaluate.noise.sigma: unknown key; allowed keys here: limit, seed, sigmas"),
        (("width = 8", 'width = "8"'), r"width: expected an integer, got '8' \(str\)"),
        (("seeds = [0, 1]", 'seeds = [0, "one"]'), r"seeds\[1\]: expected an integer"),
        (('name = "bn"', 'name = "batchnorm"'), r"norms\[0\].name: unknown norm 'batchnorm'; valid names: .*gnplus"),
        (('models = ["resnet20"]', 'models = ["resnet50"]'), r"unknown model 'resnet50'.*resnet18, resnet20, vgg11"),
        (('name = "t"', 'name = "t"\ndataset = "imagenet"'), r"dataset: unknown dataset 'imagenet'.*cifar10"),
        (("seeds = [0, 1]", "seeds = []"), r"seeds: is empty: the job matrix needs at least one value"),
        (("groups = 4", "groups = 3"), r"norms\[1\] \(gnplus\) with models = 'resnet20'.*num_channels=8 is not divisible by groups=3"),
        (("sigmas = [0.1]", "sigmas = [-0.1]"), r"evaluate.noise: noise.sigmas"),
        (('name = "gnplus"', 'name = "gnplus"\nlabel = "bn"'), r"norms: labels must be unique; repeated: \['bn'\]"),
        (('name = "t"', 'name = "t"\nreference = "gn"'), r"reference: 'gn' is not a norm label"),
        (("[evaluate.noise]", '[train]\nlr = "fast"\n[evaluate.noise]'), r"train.lr: expected a number, got 'fast'"),
        (("[evaluate.noise]", '[train]\noptimizer = "lbfgs"\n[evaluate.noise]'), r"train: train.optimizer='lbfgs' must be one of sgd, adam"),
        (("[evaluate.noise]", "[stability]\nevery = 5\netas = [0.05, 0.2]\n[evaluate.noise]"), r"stability.etas: has 2 distinct step sizes; .* at least 4"),
        (("[evaluate.noise]", "[check]\nalpha = 1.5\n[evaluate.noise]"), r"check.alpha: must lie in \(0, 1\)"),
        (("[evaluate.noise]", "[check]\ntolerance = nan\n[evaluate.noise]"), r"check.tolerance: must be a finite number"),
        (("[evaluate.noise]", "[check]\ntolerance = 0.05\ndetect = 0.01\n[evaluate.noise]"), r"check.detect: must be finite and larger than the tolerance"),
        (("[evaluate.noise]", "[check]\nprimary = []\n[evaluate.noise]"), r"check.primary: is empty"),
        (("[evaluate.noise]", '[evaluate.noise_sequence]\nframes = 31\nsigma_step = 0.02\n[evaluate.noise]'), r"evaluate.noise_sequence.sigma_step: unknown key.*sigma"),
    ],
)  # fmt: skip
def test_each_mistake_names_file_key_path_and_allowed_values(tmp_path, edit, match):
    old, new = edit
    assert old in MINIMAL
    with pytest.raises(RobustBenchError, match=match):
        load_suite(write(tmp_path, MINIMAL.replace(old, new, 1)))


def test_attack_and_corruption_names_are_checked(tmp_path):
    bad_attack = MINIMAL + '[[evaluate.attacks]]\nname = "pgd"\n'
    with pytest.raises(
        RobustBenchError, match=r"evaluate.attacks\[0\]: unknown attack 'pgd'.*fgsm"
    ):
        load_suite(write(tmp_path, bad_attack))
    bad_corruption = MINIMAL + '[evaluate.corruptions]\nnames = ["rain"]\n'
    with pytest.raises(
        RobustBenchError, match=r"evaluate.corruptions: .*unknown corruption 'rain'"
    ):
        load_suite(write(tmp_path, bad_corruption))
    no_name = MINIMAL + "[[evaluate.attacks]]\nsteps = 3\n"
    with pytest.raises(RobustBenchError, match=r"evaluate.attacks\[0\].name: is required"):
        load_suite(write(tmp_path, no_name))


def test_missing_norms_missing_file_and_bad_toml(tmp_path):
    with pytest.raises(RobustBenchError, match="norms: is required"):
        load_suite(write(tmp_path, 'name = "t"\n'))
    with pytest.raises(
        RobustBenchError, match="not found; shipped suites: nightly.toml, paper.toml, smoke.toml"
    ):
        load_suite(tmp_path / "nope.toml")
    with pytest.raises(RobustBenchError, match="not valid TOML"):
        load_suite(write(tmp_path, "name = \n"))


def test_the_regularization_sweep_can_be_restricted_to_norms_and_batch_sizes(tmp_path):
    text = MINIMAL.replace("[evaluate.noise]", "[regularization]\nnorms = [\"bn\"]\n"
                           "dropout = [0.0, 0.3]\n[evaluate.noise]")  # fmt: skip
    suite = load_suite(write(tmp_path, text))
    swept = {(j.label, j.regularizer) for j in suite.jobs}
    assert ("bn", "dropout=0.3") in swept and ("gnplus", "dropout=0.3") not in swept
    bad = text.replace('norms = ["bn"]', 'norms = ["bm"]')
    with pytest.raises(RobustBenchError, match=r"regularization.norms: \['bm'\] not in"):
        load_suite(write(tmp_path, bad))


def test_the_corruption_severity_table_is_a_suite_option(tmp_path):
    text = (
        MINIMAL
        + '[evaluate.corruptions]\nnames = ["fog"]\nseverities = [1]\ntable = "cifar-10-c"\n'
    )
    suite = load_suite(write(tmp_path, text))
    ((spec, _),) = suite.corruption_conditions()
    assert spec.table == "cifar-10-c" and "(cifar-10-c table)" in describe_plan(suite)
    default = load_suite(write(tmp_path, text.replace('table = "cifar-10-c"\n', "")))
    assert default.corruption_conditions()[0][0].table == "imagenet-c"
    assert {j.key for j in suite.jobs}.isdisjoint(j.key for j in default.jobs)  # another job
    with pytest.raises(RobustBenchError, match=r"evaluate.corruptions.*'cifar10'"):
        load_suite(write(tmp_path, text.replace('"cifar-10-c"', '"cifar10"')))
