"""Accuracy of a trained model under sampled device noise (to compare HWA with plain fine-tuning).

Hashed layers get :class:`~aimc_lsh.train.noise.NoisyTrainingStages` active in eval mode (fresh noise
every batch); conventional (real-weight) layers get :class:`~aimc_lsh.train.noise.WeightNoise` drawn once
per pass over the test set, like one programming of the array. This is a statistical proxy built from
the same aihwkit noise levels used in training. :func:`hardware_accuracy` instead rebuilds a checkpoint
with :class:`aimc_lsh.hardware.HardwareConfig` and runs the programmed-tile pipeline
(``program`` + ``drift``) of :mod:`aimc_lsh.hardware`.
"""

from __future__ import annotations

import copy
import statistics
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from aimc_lsh.data import ImageTensorDataset
from aimc_lsh.eval import dataset_accuracy
from aimc_lsh.train.calibration import batchnorm_layers, recalibrate_bn
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
    weight_noise = WeightNoise.from_spec(spec, in_eval=True)
    accs = []
    with torch.random.fork_rng(devices=[]):
        for r in range(repeats):
            torch.manual_seed(seed + r)
            with weight_noise.perturbed(noisy):
                accs.append(dataset_accuracy(noisy, data))
    return NoisyAccuracy(
        mean=statistics.fmean(accs), std=statistics.stdev(accs) if len(accs) > 1 else 0.0, repeats=repeats
    )


def hardware_model(
    checkpoint: dict[str, Any],
    digital: nn.Module,
    *,
    device: str = "pcm",
    placement: str = "codes_on_array",
    drift_reference: str | None = None,
) -> nn.Module:
    """Rebuild a trained checkpoint on simulated hardware (:class:`aimc_lsh.hardware.HardwareConfig`).

    Hashed layers keep every hashing setting (kernel, k, seed, tiling, PQ settings) and get ``device`` /
    ``placement``; a checkpoint
    without hashed layers (a conventional baseline) is converted with ``placement="conventional"``.
    ``drift_reference`` is the drift-compensation read-out (``HardwareConfig.drift_reference``; None: the
    default). The model still has to be programmed (:func:`aimc_lsh.hardware.program`).

    Raises:
        ValueError: If the checkpoint's weights do not fit the rebuilt model.

    """
    from aimc_lsh.hardware import HardwareConfig
    from aimc_lsh.nn import patch_model

    layers = checkpoint["layers"]
    if layers:
        configs = {
            path: HardwareConfig.from_hash_config(
                entry["config"], device=device, placement=placement, drift_reference=drift_reference
            )
            for path, entry in layers.items()
        }
        first = next(iter(configs.values()))
        model = patch_model(digital, first, overrides=configs, filter_fn=lambda p, _m: p in configs)
    else:
        config = HardwareConfig(device=device, placement="conventional", drift_reference=drift_reference)
        model = patch_model(digital, config)
    result = model.load_state_dict(checkpoint["model_state"], strict=False)
    if result.unexpected_keys:
        raise ValueError(f"checkpoint weights do not fit the hardware model: {result.unexpected_keys[:5]}")
    return model.eval()


def hardware_accuracy(
    checkpoint: dict[str, Any],
    digital: nn.Module,
    data: ImageTensorDataset,
    *,
    device: str = "pcm",
    placement: str = "codes_on_array",
    t_inference: float = 86_400.0,
    seeds: tuple[int, ...] = (0,),
    bn_images: torch.Tensor | None = None,
) -> NoisyAccuracy:
    """Accuracy of a trained checkpoint programmed on ``device`` and drifted to ``t_inference`` seconds.

    Uses :func:`aimc_lsh.hardware.program` / :func:`aimc_lsh.hardware.drift`; one programming per seed.

    Args:
        checkpoint: A loaded training checkpoint (:func:`aimc_lsh.train.load_checkpoint`).
        digital: A fresh digital backbone of the checkpoint's architecture.
        data: Test images.
        device: Device profile name.
        placement: Hashed placement (ignored for a checkpoint without hashed layers: ``conventional``).
        t_inference: Seconds after programming.
        seeds: One programming per seed.
        bn_images: Training images: after drifting, re-estimate every BatchNorm layer's statistics on
            them through the programmed arrays (:func:`aimc_lsh.train.recalibrate_bn`, AdaBS) before
            evaluating. None: the stored statistics.

    Raises:
        ValueError: If ``bn_images`` is given for a model without BatchNorm layers.

    """
    from aimc_lsh.hardware import drift, program

    model = hardware_model(checkpoint, digital, device=device, placement=placement)
    if bn_images is not None and not batchnorm_layers(model):
        raise ValueError("bn_images given, but the model has no BatchNorm layers to re-estimate")
    accs = []
    for seed in seeds:
        program(model, seed=seed)
        drift(model, t_inference)
        if bn_images is not None:
            recalibrate_bn(model, bn_images)  # resets the statistics first: each seed starts afresh
        accs.append(dataset_accuracy(model, data))
    return NoisyAccuracy(
        mean=statistics.fmean(accs), std=statistics.stdev(accs) if len(accs) > 1 else 0.0, repeats=len(accs)
    )
