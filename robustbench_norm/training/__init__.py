"""Training: a frozen :class:`TrainSpec` in, a checkpoint and a compact training log out.

* ``spec.py``: the spec and the result; ``TRAIN_CODE``, the source every training key hashes
* ``loop.py``: :func:`train` (resumable, seeded, diverged runs reported) and the run in progress
* ``batches.py`` and ``optim.py``: the data and the optimizer side of a step
* ``checkpoints.py``: devices, checkpoint paths, whole-or-nothing writes, :func:`load_trained`
* ``models.py``: ResNet-18/20 and VGG-11 with the norm injected by name
* ``stability.py``: Santurkar et al.'s loss-landscape measures, taken during training
* ``activation_noise.py``: the training-time activation perturbation of the regularization sweep
"""

from robustbench_norm.training.batches import augment_batch, batches, epoch_generator, mixup_loss
from robustbench_norm.training.checkpoints import (
    checkpoint_dir,
    compute_tag,
    load_trained,
    resolve_device,
)
from robustbench_norm.training.loop import accuracy, train
from robustbench_norm.training.optim import lr_factor, make_optimizer, param_groups
from robustbench_norm.training.spec import TRAIN_CODE, TrainResult, TrainSpec

__all__ = [
    "TRAIN_CODE",
    "TrainResult",
    "TrainSpec",
    "accuracy",
    "augment_batch",
    "batches",
    "checkpoint_dir",
    "compute_tag",
    "epoch_generator",
    "load_trained",
    "lr_factor",
    "make_optimizer",
    "mixup_loss",
    "param_groups",
    "resolve_device",
    "train",
]
