"""Accuracy of a trained model under sampled device noise (to compare HWA with plain fine-tuning).

Hashed layers get :class:`~aimc_lsh.train.noise.NoisyTrainingStages` active in eval mode (fresh noise
every batch); conventional (real-weight) layers get :class:`~aimc_lsh.train.noise.WeightNoise` drawn once
per pass over the test set, like one programming of the array. This is a statistical proxy built from
the same aihwkit noise levels used in training, not the programmed-tile pipeline of
:mod:`aimc_lsh.hardware`.
"""

from __future__ import annotations

import copy
import statistics
from dataclasses import dataclass

import torch
from torch import nn

from aimc_lsh.data import ImageTensorDataset, make_loader
from aimc_lsh.eval import evaluate
from aimc_lsh.train.noise import NoiseSpec, WeightNoise, inject_training_noise


@dataclass(frozen=True)
class NoisyAccuracy:
    """Accuracy over repeated noise draws."""

    mean: float
    """Mean accuracy (fraction)."""
    std: float
    """Standard deviation over repeats (0 for one repeat)."""
    repeats: int
    """Number of draws."""


def accuracy_under_noise(
    model: nn.Module, data: ImageTensorDataset, spec: NoiseSpec, *, repeats: int = 3, seed: int = 0
) -> NoisyAccuracy:
    """Evaluate a copy of ``model`` under ``spec`` ``repeats`` times (seeds ``seed``, ``seed + 1``, ...)."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    noisy = copy.deepcopy(model).eval()
    inject_training_noise(noisy, spec, in_eval=True)
    weight_noise = WeightNoise(spec.weight_std, in_eval=True)
    loader = make_loader(data, batch_size=256, augment=False, shuffle=False)
    accs = []
    with torch.random.fork_rng(devices=[]):
        for r in range(repeats):
            torch.manual_seed(seed + r)
            with weight_noise.perturbed(noisy):
                accs.append(evaluate(noisy, loader, progress=False).accuracy)
    return NoisyAccuracy(
        mean=statistics.fmean(accs), std=statistics.stdev(accs) if len(accs) > 1 else 0.0, repeats=repeats
    )
