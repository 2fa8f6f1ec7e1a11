"""``default_checkpoint``: a fine-tuned hashed ResNet-20, trained once and cached for studies.

The sweep runner (``aimc_lsh.studies``) uses the path this returns as its default model. The cache file
is ``<cache>/checkpoints/<backbone>_<kernel>_k<k>_<recipe>_<tag>.pt`` where ``<cache>`` is
``$AIMC_LSH_CACHE`` or ``~/.cache/aimc_lsh`` and ``<tag>`` is a short hash of every setting that changes
the result, so a different configuration never reuses a stale file. Load the model with
:func:`aimc_lsh.train.model_from_checkpoint`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import torch

from aimc_lsh.data.calibration import CALIBRATION_IMAGES
from aimc_lsh.train.checkpoint import train_once, training_finished, training_progress
from aimc_lsh.train.config import DEFAULT_RECIPE, TrainConfig

_log = logging.getLogger(__name__)

DEFAULT_FIT_ENERGY = 0.9
"""Share of the input second moment the default checkpoints' projection rows are drawn in (see
:func:`default_checkpoint`); measured at 0.9 with orthogonal rows (docs/training.md)."""


def _projection_settings(kernel: str, fit_energy: float | None) -> dict[str, float | bool | str]:
    """The projection start that changes the result: only for kernels with a fittable ``P``."""
    from aimc_lsh.kernels.subspace import check_energy
    from aimc_lsh.nn.projection_fit import FITTABLE_KERNELS

    if fit_energy is None:
        return {}
    check_energy(fit_energy, "fit_energy")
    if kernel not in FITTABLE_KERNELS:
        return {}
    # "uniform": the rows the fit is checked on are drawn at random (before 2026-12-02 every s-th row, which
    # took only the left-border patches of the 32 x 32 layers and kept one more layer unfitted)
    return {"fit_energy": float(fit_energy), "fit_only_where_better": True, "fit_check_rows": "uniform"}


def _cache_root(cache_dir: str | os.PathLike[str] | None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get("AIMC_LSH_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "aimc_lsh"


def default_checkpoint_path(
    *,
    backbone: str = "cifar10_resnet20",
    kernel: str = "random_projection",
    hash_length: int = 256,
    recipe: str = DEFAULT_RECIPE,
    config: TrainConfig | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    fit_energy: float | None = DEFAULT_FIT_ENERGY,
) -> Path:
    """Where :func:`default_checkpoint` keeps the checkpoint of these settings (need not exist).

    Raises:
        ValueError: For a ``fit_energy`` outside (0, 1].

    """
    config = config or TrainConfig.for_recipe(recipe, time_budget_s=1800.0, epochs=30.0)
    settings = {
        "backbone": backbone,
        "kernel": kernel,
        "k": hash_length,
        "recipe": recipe,
        "train": config.result_settings(),
        **_projection_settings(kernel, fit_energy),
    }
    tag = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:10]
    return _cache_root(cache_dir) / "checkpoints" / f"{backbone}_{kernel}_k{hash_length}_{recipe}_{tag}.pt"


def default_checkpoint(
    *,
    backbone: str = "cifar10_resnet20",
    kernel: str = "random_projection",
    hash_length: int = 256,
    recipe: str = DEFAULT_RECIPE,
    config: TrainConfig | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    data_root: str | os.PathLike[str] | None = None,
    weights: str | os.PathLike[str] | None = None,
    train: bool = True,
    fit_energy: float | None = DEFAULT_FIT_ENERGY,
) -> Path:
    """Return the path of a fine-tuned hashed backbone, training and caching it first if absent.

    Every convolution and the classifier are hashed with ``HashConfig(kernel, hash_length)`` (and
    calibrated on the first :data:`aimc_lsh.data.CALIBRATION_IMAGES` training images where the kernel
    needs data, e.g. product quantization's codebooks; ``hash_length`` is then K). For kernels with a
    projection ``P`` (``random_projection``, ``learned_projection``) the rows are orthonormal and drawn
    inside each layer's input subspace holding ``fit_energy`` of the inputs' second moment, fitted on those
    same images, in the layers where that estimates better (:func:`aimc_lsh.nn.fit_projections` with
    ``only_where_better=True``; measured against Gaussian rows in docs/training.md).
    Training uses the CIFAR-10 training split under ``data_root`` (or ``$AIMC_LSH_DATA``) and validates on
    its test split; with the default config it takes about 30 minutes on one CPU thread.

    A checkpoint counts only once its training finished: an unfinished file (an interrupted run, or one
    another process is writing) is resumed with ``train=True``; a second process asking for the same
    checkpoint waits for the first (an exclusive lock on ``<checkpoint>.lock``) and then returns the
    finished file.

    Args:
        backbone: ``aimc_lsh.models`` backbone name.
        kernel: Kernel name.
        hash_length: k for every layer.
        recipe: Training recipe (:data:`aimc_lsh.train.RECIPES`).
        config: Full training config (default: the recipe with a 30-minute budget).
        cache_dir: Cache root (default ``$AIMC_LSH_CACHE`` or ``~/.cache/aimc_lsh``).
        data_root: CIFAR data root.
        weights: Pretrained weights file for the backbone (else the models package searches).
        train: Train when missing; if False, raise instead.
        fit_energy: Share in (0, 1] of the inputs' second moment the projection rows are drawn in;
            None: Gaussian rows over all dimensions (the default checkpoints before 2026-12-02, whose
            cache names this reproduces). Ignored by kernels without a projection ``P``.

    Raises:
        FileNotFoundError: If the checkpoint is missing or unfinished and ``train`` is False.
        ValueError: For a ``fit_energy`` outside (0, 1].

    """
    config = config or TrainConfig.for_recipe(recipe, time_budget_s=1800.0, epochs=30.0)
    path = default_checkpoint_path(
        backbone=backbone,
        kernel=kernel,
        hash_length=hash_length,
        recipe=recipe,
        config=config,
        cache_dir=cache_dir,
        fit_energy=fit_energy,
    )
    if training_finished(path):
        return path
    if not train:
        raise FileNotFoundError(_not_ready(path))
    # one trainer per checkpoint: a second process (another sweep) waits, then finds it finished
    train_once(
        path,
        lambda: _train(path, backbone, kernel, hash_length, config, data_root, weights, fit_energy),
        on_wait=_say_waiting,
    )
    return path


def _not_ready(path: Path) -> str:
    progress = training_progress(path)
    if progress is None:
        return f"no cached checkpoint at {path}; run studies/finetune.py or pass train=True"
    _, step, planned = progress
    return (
        f"the cached checkpoint {path} is unfinished (step {step} of {planned}: training was interrupted or "
        "is running in another process); default_checkpoint(train=True) finishes it"
    )


def _say_waiting(lock: Path) -> None:
    _log.warning("waiting for another process that is training %s (lock %s)", lock.stem, lock)


def _train(
    path: Path,
    backbone: str,
    kernel: str,
    hash_length: int,
    config: TrainConfig,
    data_root: str | os.PathLike[str] | None,
    weights: str | os.PathLike[str] | None,
    fit_energy: float | None,
) -> None:
    """Train (or resume, from the unfinished file at ``path``) the default checkpoint into ``path``."""
    from aimc_lsh.data import load_dataset, make_loader
    from aimc_lsh.kernels import HashConfig
    from aimc_lsh.models import get_backbone
    from aimc_lsh.nn import fit_projections, patch_model, prepare_model
    from aimc_lsh.train.trainer import fine_tune

    fitted = bool(_projection_settings(kernel, fit_energy))
    teacher = get_backbone(backbone, path=weights)
    student = patch_model(teacher, HashConfig(kernel=kernel, hash_length=hash_length, orthogonal=fitted))
    dataset = "cifar100" if backbone.startswith("cifar100") else "cifar10"
    if backbone.startswith("digits"):
        dataset = "digits"
    train_set = load_dataset(dataset, root=data_root, train=True)
    # layers that need data before they run (product-quantization codebooks): the first training images
    first = [
        images
        for images, _ in make_loader(
            train_set, batch_size=128, limit=CALIBRATION_IMAGES, shuffle=False, augment=False
        )
    ]
    prepare_model(student, first)
    if fitted:  # rows inside each layer's input subspace (before training: P is fixed for random projections)
        fit_projections(student, torch.cat(first), energy=float(fit_energy), only_where_better=True)
    fine_tune(
        student,
        train_set,
        config,
        teacher=teacher,
        val_set=load_dataset(dataset, root=data_root, train=False),
        checkpoint=path,
        resume=True,
        backbone=backbone,
        meta={"source": "aimc_lsh.train.default_checkpoint"},
    )
