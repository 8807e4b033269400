"""The data side of a training step: seeding, each epoch's order and augmentation as a
function of (seed, epoch), full batches, and mixup's loss."""

from __future__ import annotations

import random
from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from robustbench_norm.data import Split, dataset_info
from robustbench_norm.training.spec import TrainSpec


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_generator(seed: int, epoch: int, device: torch.device) -> torch.Generator:
    """Data order and augmentation of one epoch: a function of (seed, epoch) only, so a run
    resumed at an epoch boundary sees exactly the batches an uninterrupted run would."""
    return torch.Generator(device=device).manual_seed(seed * 1_000_003 + epoch)


def augment_batch(x: Tensor, flip: bool, gen: torch.Generator, pad: int = 4) -> Tensor:
    """Random crop with zero padding ``pad`` and (optionally) horizontal flip, per sample."""
    n, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen, device=x.device)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen, device=x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    chan = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
    out = padded[batch, chan, rows, cols]
    if flip:
        mask = torch.rand(n, generator=gen, device=x.device) < 0.5
        out = torch.where(mask[:, None, None, None], out.flip(3), out)
    return out


def mixup_loss(logits: Tensor, y_a: Tensor, y_b: Tensor, lam: float) -> Tensor:
    """Zhang et al. (2018): the soft-target cross entropy λ·CE(y_a) + (1 − λ)·CE(y_b)."""
    return lam * F.cross_entropy(logits, y_a) + (1 - lam) * F.cross_entropy(logits, y_b)


def batches(
    images: Tensor, labels: Tensor, batch_size: int, gen: torch.Generator
) -> Iterator[tuple[Tensor, Tensor]]:
    """Shuffled full batches of one epoch (the ragged tail is dropped: batch size is a variable
    under study, so every step sees exactly ``batch_size`` samples)."""
    order = torch.randperm(len(labels), generator=gen, device=gen.device)
    for i in range(len(labels) // batch_size):
        idx = order[i * batch_size : (i + 1) * batch_size]
        yield images[idx], labels[idx]


def device_tensors(split: Split, dev: torch.device) -> tuple[Tensor, Tensor]:
    """uint8 NCHW images and labels on the training device (converted to float per batch)."""
    images = torch.from_numpy(np.ascontiguousarray(split.images)).permute(0, 3, 1, 2).contiguous()
    return images.to(dev), torch.from_numpy(split.labels).to(dev)


def epoch_batches(
    spec: TrainSpec, images: Tensor, labels: Tensor, epoch: int
) -> Iterator[tuple[Tensor, Tensor, Tensor, float]]:
    """One epoch's training batches as float images in [0, 1]: the order, augmentation and
    mixup draws that (seed, epoch) fix, whatever happened before. Yields (x, y, mixup partner
    labels, mixup λ); without mixup the partner labels are y and λ is 1."""
    dev = images.device
    flip = dataset_info(spec.dataset).flip
    gen = epoch_generator(spec.seed, epoch, dev)
    mix_rng = np.random.default_rng([spec.seed, epoch])
    for x_u8, y in batches(images, labels, spec.batch_size, gen):
        x = x_u8.float().div_(255.0)
        if spec.augment:
            x = augment_batch(x, flip, gen)
        if spec.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        lam, y_b = 1.0, y
        if spec.mixup_alpha > 0:
            lam = float(mix_rng.beta(spec.mixup_alpha, spec.mixup_alpha))
            perm = torch.randperm(len(y), generator=gen, device=dev)
            x, y_b = lam * x + (1 - lam) * x[perm], y[perm]
        yield x, y, y_b, lam
