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
import os
from pathlib import Path

from aimc_lsh.train.config import DEFAULT_RECIPE, TrainConfig


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
) -> Path:
    """Where :func:`default_checkpoint` keeps the checkpoint of these settings (need not exist)."""
    config = config or TrainConfig.for_recipe(recipe, time_budget_s=1800.0, epochs=30.0)
    settings = {
        "backbone": backbone,
        "kernel": kernel,
        "k": hash_length,
        "recipe": recipe,
        "train": config.result_settings(),
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
) -> Path:
    """Return the path of a fine-tuned hashed backbone, training and caching it first if absent.

    Every convolution and the classifier are hashed with ``HashConfig(kernel, hash_length)`` (and
    calibrated on the first 512 training images where the kernel needs data, e.g. product quantization's
    codebooks; ``hash_length`` is then K). Training
    uses the CIFAR-10 training split under ``data_root`` (or ``$AIMC_LSH_DATA``) and validates on its
    test split; with the default config it takes about 30 minutes on one CPU thread.

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

    Raises:
        FileNotFoundError: If the checkpoint is missing and ``train`` is False.

    """
    config = config or TrainConfig.for_recipe(recipe, time_budget_s=1800.0, epochs=30.0)
    path = default_checkpoint_path(
        backbone=backbone,
        kernel=kernel,
        hash_length=hash_length,
        recipe=recipe,
        config=config,
        cache_dir=cache_dir,
    )
    if path.is_file():
        return path
    if not train:
        raise FileNotFoundError(f"no cached checkpoint at {path}; run studies/finetune.py or pass train=True")
    from aimc_lsh.data import load_dataset, make_loader
    from aimc_lsh.kernels import HashConfig
    from aimc_lsh.models import get_backbone
    from aimc_lsh.nn import patch_model, prepare_model
    from aimc_lsh.train.trainer import fine_tune

    teacher = get_backbone(backbone, path=weights)
    student = patch_model(teacher, HashConfig(kernel=kernel, hash_length=hash_length))
    dataset = "cifar100" if backbone.startswith("cifar100") else "cifar10"
    if backbone.startswith("digits"):
        dataset = "digits"
    train_set = load_dataset(dataset, root=data_root, train=True)
    # layers that need data before they run (product-quantization codebooks): the first 512 training images
    prepare_model(student, make_loader(train_set, batch_size=128, limit=512, shuffle=False, augment=False))
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
    return path
