"""What every hardware study evaluates: test data, the pretrained and fine-tuned models, analog copies.

Driver side (cheap, validates user input before any compute):

* :func:`resolve_source` turns ``--dataset``, ``--data-root``, ``--models-root``, ``--limit``,
  ``--batch-size`` into a :class:`Source`: it checks the data folder exists (telling the user how to
  provide it) and finds the weights.
* :func:`resolve_checkpoint` decides which fine-tuned checkpoint the hashed model with a given k uses
  (``--checkpoint``). The digits benchmark gets its checkpoints from a few-second deterministic
  fine-tune, cached on disk (:func:`digits_checkpoint`).
* :func:`config_columns` flattens a :class:`~aimc_lsh.hardware.HardwareConfig` (with the device's
  defaults resolved) into CSV columns.

Worker side (cached per process, so a worker loads data and weights once for all its points):

* :func:`eval_batches`, :func:`pretrained_model`, :func:`analog_model` (hashed from the checkpoint, or
  conventional from the pretrained weights, on the given hardware) and :func:`accuracy_row`.
* Layers that need data before they run (product-quantization codebooks) are calibrated inside
  :func:`analog_model` on the first :data:`CALIBRATION_IMAGES` images of the *training* split
  (:func:`calibration_batches`, never the test split), deterministically and once per process and
  kernel setting, so studies need no special case and resumed or parallel sweeps give the same rows.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import os
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from aimc_lsh.data import CALIBRATION_IMAGES, Checksum, load_cifar_arrays, verify_checksum
from aimc_lsh.kernels import HASH_FIELDS

__all__ = [
    "BACKBONES",
    "CHECKPOINT_CHOICES",
    "Source",
    "resolve_source",
    "check_cifar_files",
    "resolve_checkpoint",
    "digits_checkpoint",
    "checkpoint_hash_fields",
    "config_columns",
    "resolved_config",
    "eval_batches",
    "calibration_batches",
    "bn_calibration_images",
    "pretrained_model",
    "analog_model",
    "checkpoint_kind",
    "accuracy_row",
]

BACKBONES = {"cifar10": "cifar10_resnet20", "digits": "digits_cnn"}
"""Backbone evaluated for each ``--dataset``."""

CHECKPOINT_CHOICES = ("auto", "default", "none")
"""Special ``--checkpoint`` values besides a file path (see :func:`resolve_source`)."""

DIGITS_HASH_LENGTH = 256
"""Default k of the digits benchmark's fine-tuned hashed model."""

DIGITS_EPOCHS = 10.0
"""Fine-tuning epochs of the digits benchmark's hashed model (about 5 s on one thread)."""

_DROPPED_COLUMNS = (
    "device.description",
    "device.source",
    "device.sense_amp",
    "device.adc",
    "device.drift_compensation",
)
"""Config entries left out of the CSV: free text, and device defaults superseded by resolved values."""


@dataclass(frozen=True)
class Source:
    """The data and models a study evaluates (resolved and validated in the driver)."""

    dataset: str
    """``cifar10`` or ``digits``."""
    backbone: str
    """Backbone name (``aimc_lsh.models.get_backbone``)."""
    data_root: str | None
    """Folder holding the CIFAR batches (None for digits)."""
    models_root: str | None
    """Weights file/folder of the backbone (None: ``$AIMC_LSH_MODELS``, cache, download)."""
    limit: int | None
    """Evaluate the first ``limit`` test images only."""
    batch_size: int
    """Images per forward pass."""

    def params(self) -> dict[str, Any]:
        """The point parameters identifying the data and models (CSV columns)."""
        return {
            "dataset": self.dataset,
            "backbone": self.backbone,
            "n_images_limit": self.limit,
            "batch_size": self.batch_size,
        }

    def context(self) -> dict[str, Any]:
        """Paths the workers need (not part of the point keys)."""
        return {
            "dataset": self.dataset,
            "backbone": self.backbone,
            "data_root": self.data_root,
            "models_root": self.models_root,
            "limit": self.limit,
            "batch_size": self.batch_size,
        }


def _warn(message: str) -> None:
    print(f"note: {message}", file=sys.stderr)


def digits_checkpoint(hash_length: int = DIGITS_HASH_LENGTH, *, train: bool = True) -> Path | None:
    """The digits benchmark's fine-tuned hashed model for ``hash_length``, trained and cached if absent.

    ``digits_cnn`` with every layer hashed (random projections, k = ``hash_length``), recovered by
    :func:`aimc_lsh.train.fine_tune` with layer-wise calibration and distillation for
    :data:`DIGITS_EPOCHS` epochs on the digits training split (seconds on one thread, deterministic).
    Stored under ``$AIMC_LSH_CACHE/checkpoints`` (or ``~/.cache/aimc_lsh/checkpoints``) with a name that
    encodes the settings; a file counts once its training finished, and sweep workers that need it at
    the same time train it once (the others wait on ``<file>.lock``).

    Args:
        hash_length: k of every layer.
        train: Train when missing; if False, return None instead.

    """
    from aimc_lsh.data import default_cache_dir
    from aimc_lsh.train import TrainConfig

    config = TrainConfig.for_recipe(
        "calib_kd", epochs=DIGITS_EPOCHS, augment=False, progress=False, eval_every=0, seed=0
    )
    tag = hashlib.sha256(json.dumps(config.result_settings(), sort_keys=True).encode()).hexdigest()[:10]
    path = default_cache_dir("checkpoints") / f"digits_cnn_random_projection_k{hash_length}_calib_kd_{tag}.pt"
    from aimc_lsh.train import train_once, training_finished

    finished = training_finished(path)
    if finished or not train:
        return path if finished else None
    train_once(path, lambda: _train_digits(path, hash_length, config))  # sweep workers: one trains
    return path


def _train_digits(path: Path, hash_length: int, config: Any) -> None:
    from aimc_lsh.data import load_dataset
    from aimc_lsh.kernels import HashConfig
    from aimc_lsh.models import get_backbone
    from aimc_lsh.nn import patch_model
    from aimc_lsh.train import fine_tune

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        teacher = get_backbone("digits_cnn")
        student = patch_model(teacher, HashConfig(hash_length=hash_length))
        fine_tune(
            student,
            load_dataset("digits", train=True),
            config,
            teacher=teacher,
            val_set=load_dataset("digits", train=False),
            checkpoint=path,
            backbone="digits_cnn",
            meta={"source": "aimc_lsh.studies.workload.digits_checkpoint"},
        )
    finally:
        torch.set_num_threads(previous)


def resolve_source(
    dataset: str,
    *,
    data_root: str | None = None,
    models_root: str | None = None,
    limit: int | None = None,
    batch_size: int = 128,
    download: bool = True,
) -> Source:
    """Validate the data and weights options: the CIFAR folder and the backbone weights must exist.

    With no ``data_root`` and ``$AIMC_LSH_DATA`` unset, CIFAR-10 comes from the cache, downloaded with
    checksums when missing (:func:`aimc_lsh.data.resolve_cifar_dir`); the weights likewise
    (:func:`aimc_lsh.models.find_weights`). ``download=False`` (``--no-download``) forbids both downloads.
    The test batch is read and the weights' checksum verified here, so that a corrupt file stops the
    study before any point runs (:func:`check_cifar_files`).

    Raises:
        ValueError: For an unknown dataset; :class:`aimc_lsh.data.CifarFormatError` for a truncated or
            corrupt test batch; :class:`aimc_lsh.data.ChecksumError` for weights whose digest differs.
        FileNotFoundError: If the CIFAR data or the weights are missing (the message says how to
            provide them).

    """
    if dataset not in BACKBONES:
        raise ValueError(f"unknown dataset {dataset!r}; allowed: {', '.join(BACKBONES)}")
    backbone = BACKBONES[dataset]
    root: str | None = None
    if dataset == "cifar10":
        from aimc_lsh.data import resolve_cifar_dir
        from aimc_lsh.models import backbone_spec, find_weights

        try:
            root = str(resolve_cifar_dir(data_root, "cifar10", download=download))
        except FileNotFoundError as err:
            raise FileNotFoundError(
                f"{err}. For this study: --data-root <folder containing cifar-10-batches-py/> or "
                "AIMC_LSH_DATA=<folder>, or --dataset digits (embedded, no files needed)"
            ) from None
        spec = backbone_spec(backbone)
        models_root = str(find_weights(spec, path=models_root, download=download))
        check_cifar_files(root, models_root, spec.checksum)
    return Source(
        dataset=dataset,
        backbone=backbone,
        data_root=root,
        models_root=models_root,
        limit=limit,
        batch_size=batch_size,
    )


def check_cifar_files(data_root: str, weights: str, checksum: Checksum | None) -> None:
    """Read the CIFAR-10 test batch under ``data_root`` and verify the weights file against ``checksum``.

    Both are cheap next to one evaluation (a few MB read once), and they turn a corrupt file into a
    one-line error before any point runs instead of a failure inside every point.

    Raises:
        aimc_lsh.data.CifarFormatError: If the test batch is truncated, corrupt or malformed.
        aimc_lsh.data.ChecksumError: If the weights' digest differs (names file, expected and actual).

    """
    load_cifar_arrays(data_root, "cifar10", train=False)
    if checksum is not None:
        verify_checksum(weights, checksum)


def resolve_checkpoint(
    source: Source, choice: str, hash_length: int, kernel: str = "random_projection"
) -> str | None:
    """Which fine-tuned checkpoint the hashed model with k = ``hash_length`` uses.

    ``choice`` (see :data:`CHECKPOINT_CHOICES`): ``auto`` takes the cached default fine-tuned model for
    this kernel and k if it exists and its training finished (CIFAR-10:
    :func:`aimc_lsh.train.default_checkpoint_path`, which ``studies/finetune.py`` /
    :func:`aimc_lsh.train.default_checkpoint` produce; digits:
    :func:`digits_checkpoint`, trained in seconds when missing, for ``random_projection`` only), otherwise
    None (the un-fine-tuned model) with a note on stderr; ``default`` trains the CIFAR-10 default when
    missing (~30 min once); ``none`` gives None; anything else is a checkpoint file, checked to load and
    fit the backbone. A default checkpoint is never one of another kernel.

    Raises:
        FileNotFoundError: If a given checkpoint file does not exist.
        ValueError: If it is not an aimc_lsh checkpoint or is for another backbone.

    """
    if choice == "none":
        return None
    if choice in ("auto", "default"):
        if source.dataset == "digits":
            if kernel == "random_projection":
                return str(digits_checkpoint(hash_length))
            _warn(
                f"the digits benchmark has no fine-tuned checkpoint for kernel {kernel!r} (k={hash_length}): "
                "evaluating the UN-fine-tuned model (calibrated where the kernel needs data); "
                "--checkpoint PATH uses one"
            )
            return None
        from aimc_lsh.train import default_checkpoint, default_checkpoint_path, training_progress

        path = default_checkpoint_path(kernel=kernel, hash_length=hash_length)
        progress = training_progress(path)
        if progress is not None and progress[0]:
            return str(path)
        state = "no" if progress is None else f"only an unfinished (step {progress[1]} of {progress[2]})"
        if choice == "default":
            _warn(
                f"{state} default fine-tuned checkpoint at {path}: training it (about 30 minutes, once; "
                "another process already training it is waited for)"
            )
            return str(
                default_checkpoint(
                    kernel=kernel,
                    hash_length=hash_length,
                    data_root=source.data_root,
                    weights=source.models_root,
                )
            )
        _warn(
            f"{state} fine-tuned checkpoint for {kernel} k={hash_length} cached at {path}: evaluating the "
            "UN-fine-tuned model, which scores only ~10-18% on CIFAR-10. Create it with --checkpoint default "
            "(trains ~30 min once) or studies/finetune.py, or pass --checkpoint PATH"
        )
        return None
    path = Path(choice).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"checkpoint {path} not found; pass a file written by studies/finetune.py, "
            "or 'auto', 'default' or 'none'"
        )
    backbone = _checkpoint(str(path)).get("backbone")  # raises ValueError for a foreign file
    if backbone not in (None, source.backbone):
        raise ValueError(f"checkpoint {path} is for backbone {backbone!r}, not {source.backbone!r}")
    return str(path)


# ---------------------------------------------------------------------------------------------- configs
def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, name + "."))
        elif isinstance(value, list | tuple):
            out[name] = json.dumps(value)
        else:
            out[name] = value
    return out


def resolved_config(config: Any) -> Any:
    """A copy of a HardwareConfig with the device defaults it uses written out explicitly."""
    return replace(
        config,
        sense_amp=config.effective_sense_amp,
        adc=config.effective_adc,
        drift_compensation=config.effective_drift_compensation,
        analog_projection=config.projection_is_analog if config.placement != "conventional" else None,
    )


def config_columns(config: Any) -> dict[str, Any]:
    """CSV columns of a hardware config: every field, nested ones as ``sense_amp.offset_std`` etc.

    The device's default sense amplifier/ADC/compensation are resolved into the top-level fields; free
    text (device description and source) is left out. Hash fields are None for the conventional
    placement, which does not hash.
    """
    flat = _flatten(resolved_config(config).to_dict())
    columns = {
        k: v for k, v in flat.items() if not any(k == d or k.startswith(d + ".") for d in _DROPPED_COLUMNS)
    }
    if config.placement == "conventional":
        columns.update(dict.fromkeys(HASH_FIELDS))
    return columns


def checkpoint_hash_fields(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Kernel settings (kernel, k, seed, tiling, ...) shared by the hashed layers of a checkpoint.

    A setting that differs between layers (e.g. a per-layer k) is reported as None.
    """
    configs = [entry["config"] for entry in _checkpoint(str(path))["layers"].values()]
    out: dict[str, Any] = {}
    for name in HASH_FIELDS:
        values = {json.dumps(c.get(name), sort_keys=True) for c in configs}
        out[name] = configs[0].get(name) if len(values) == 1 and configs else None
    return out


# ---------------------------------------------------------------------------------------------- workers
@functools.lru_cache(maxsize=4)
def _batches(
    dataset: str, data_root: str | None, limit: int | None, batch_size: int
) -> tuple[tuple[torch.Tensor, torch.Tensor], ...]:
    from aimc_lsh.data import make_loader

    loader = make_loader(dataset, root=data_root, train=False, batch_size=batch_size, limit=limit)
    return tuple((images, labels) for images, labels in loader)


def eval_batches(context: dict[str, Any]) -> tuple[tuple[torch.Tensor, torch.Tensor], ...]:
    """The test split as a tuple of ``(images, labels)`` batches (loaded once per process)."""
    return _batches(context["dataset"], context["data_root"], context["limit"], context["batch_size"])


@functools.lru_cache(maxsize=2)
def _train_batches(
    dataset: str, data_root: str | None, batch_size: int
) -> tuple[tuple[torch.Tensor, torch.Tensor], ...]:
    from aimc_lsh.data import make_loader

    loader = make_loader(
        dataset,
        root=data_root,
        train=True,
        batch_size=batch_size,
        limit=CALIBRATION_IMAGES,
        shuffle=False,
        augment=False,
    )
    return tuple((images, labels) for images, labels in loader)


def bn_calibration_images(context: dict[str, Any], count: int, *, seed: int = 0) -> torch.Tensor:
    """The first ``count`` training images, crop+flip augmented as in training (cached per process).

    Args:
        context: The sweep context (data location).
        count: Number of images.
        seed: Seed of the augmentation (the hardware studies use 0).

    Raises:
        ValueError: If ``count`` is outside [1, training images].

    """
    return _bn_images(context["dataset"], context["data_root"], int(count), int(seed))


@functools.lru_cache(maxsize=2)
def _bn_images(dataset: str, data_root: str | None, count: int, seed: int) -> torch.Tensor:
    from aimc_lsh.data import calibration_images

    return calibration_images(dataset, count=count, root=data_root, seed=seed)


def calibration_batches(context: dict[str, Any]) -> tuple[tuple[torch.Tensor, torch.Tensor], ...]:
    """The first :data:`CALIBRATION_IMAGES` training images, in order and unaugmented (cached per process)."""
    return _train_batches(context["dataset"], context["data_root"], context["batch_size"])


@functools.lru_cache(maxsize=4)
def _calibrated_state(
    backbone: str, models_root: str | None, dataset: str, data_root: str | None, batch_size: int, hashing: str
) -> dict[str, torch.Tensor]:
    """State of the pretrained backbone patched with the hash settings ``hashing`` (JSON) and calibrated."""
    from aimc_lsh.kernels import HashConfig
    from aimc_lsh.nn import patch_model, prepare_model

    model = patch_model(
        copy.deepcopy(_pretrained(backbone, models_root)), HashConfig.from_dict(json.loads(hashing))
    )
    prepare_model(model, _train_batches(dataset, data_root, batch_size))
    return {k: v.clone() for k, v in model.state_dict().items()}


def _calibrate(model: nn.Module, context: dict[str, Any], config: Any, *, pretrained: bool) -> nn.Module:
    """Calibrate the layers of ``model`` that need data (none for SimHash models): no special case.

    For the pretrained backbone patched with ``config`` (``pretrained``) the result depends only on the
    kernel settings of ``config``, the backbone and the training images, so it is computed once per
    process for each setting and loaded into every model built with it; other models (from checkpoints)
    are calibrated as they are.
    """
    from aimc_lsh.nn import needs_data, prepare_model

    if not needs_data(model):
        return model
    if not pretrained:
        return prepare_model(model, calibration_batches(context))
    hashing = json.dumps({k: v for k, v in config.to_dict().items() if k in HASH_FIELDS}, sort_keys=True)
    state = _calibrated_state(
        context["backbone"],
        context["models_root"],
        context["dataset"],
        context["data_root"],
        context["batch_size"],
        hashing,
    )
    model.load_state_dict(state, strict=False)
    if needs_data(model):  # a layer whose state differs between digital and hardware configs
        prepare_model(model, calibration_batches(context))
    return model


@functools.lru_cache(maxsize=2)
def _pretrained(backbone: str, models_root: str | None) -> nn.Module:
    from aimc_lsh.models import get_backbone

    if backbone == "digits_cnn":
        return get_backbone(backbone)
    return get_backbone(backbone, path=models_root, download=models_root is None)


def pretrained_model(context: dict[str, Any]) -> nn.Module:
    """A fresh copy of the pretrained digital backbone (loaded once per process)."""
    return copy.deepcopy(_pretrained(context["backbone"], context["models_root"]))


@functools.lru_cache(maxsize=2)
def _checkpoint(path: str) -> dict[str, Any]:
    from aimc_lsh.train import load_checkpoint

    return load_checkpoint(path)


def checkpoint_kind(path: str | os.PathLike[str]) -> str:
    """``"hashed"`` (a fine-tuned hashed/PQ model) or ``"weights"`` (a real-valued network, e.g. merged).

    See :func:`aimc_lsh.train.checkpoint_kind`.
    """
    from aimc_lsh.train import checkpoint_kind as kind

    return kind(_checkpoint(str(path)))


def analog_model(context: dict[str, Any], config: Any, checkpoint: str | None = None) -> nn.Module:
    """The model of ``context`` on the hardware of ``config`` (a HardwareConfig or its dict), unprogrammed.

    Args:
        context: The sweep context (data and weights locations).
        config: The hardware configuration.
        checkpoint: A checkpoint (:func:`checkpoint_kind`), or None.

    * No checkpoint: the pretrained backbone patched with ``config`` (converted to conventional AIMC for
      ``placement="conventional"``, hashed otherwise).
    * A ``weights`` checkpoint (a real-valued network, e.g. merged by ``studies/merge_neurons.py``, whose
      layers may be narrower than the backbone's): that network replaces the pretrained backbone and is
      patched with ``config`` -- conventional AIMC, or hashed with the kernel settings of ``config``.
    * A ``hashed`` checkpoint: for hashed placements every layer hashed in the checkpoint gets the
      checkpoint's kernel settings (kernel, k, seed, tiling) combined with the hardware fields of
      ``config``, and the fine-tuned weights (and learned projections) are loaded into the backbone
      resized to the checkpoint's widths; the ``conventional`` baseline uses the pretrained backbone.

    Layers that need data (PQ codebooks without a calibrated checkpoint) are calibrated on
    :func:`calibration_batches` before the model is returned.
    """
    from aimc_lsh.hardware import HardwareConfig
    from aimc_lsh.nn import patch_model
    from aimc_lsh.train import checkpoint_kind as kind
    from aimc_lsh.train import digital_network

    if isinstance(config, dict):
        config = HardwareConfig.from_dict(config)
    model = pretrained_model(context)
    state = _checkpoint(checkpoint) if checkpoint is not None else None
    if state is not None and kind(state) == "weights":
        network = patch_model(digital_network(state, model), config, inplace=True)
        return _calibrate(network, context, config, pretrained=False).eval()
    if config.placement == "conventional" or state is None:
        return _calibrate(patch_model(model, config, inplace=True), context, config, pretrained=True).eval()
    from aimc_lsh.nn.widths import resize_to_widths
    from aimc_lsh.train import patch_like

    hash_fields = set(HASH_FIELDS)
    hardware = {k: v for k, v in resolved_config(config).to_dict().items() if k not in hash_fields}
    layers = {
        path: {
            "config_class": "aimc_lsh.hardware.config:HardwareConfig",
            "config": {**{k: v for k, v in entry["config"].items() if k in hash_fields}, **hardware},
        }
        for path, entry in state["layers"].items()
    }
    model = patch_like(resize_to_widths(model, state.get("widths", {}), inplace=True), layers, inplace=True)
    missing, unexpected = model.load_state_dict(state["model_state"], strict=False)
    foreign = [k for k in missing if ".stages." not in k]
    if unexpected or foreign:
        raise ValueError(
            f"checkpoint {checkpoint} does not fit the hardware model: "
            f"missing {foreign[:5]}, unexpected {unexpected[:5]}"
        )
    return _calibrate(model, context, config, pretrained=False).eval()


def accuracy_row(model: nn.Module, context: dict[str, Any]) -> dict[str, Any]:
    """Evaluate ``model`` on the test batches: ``{"accuracy", "n_correct", "n_images"}``."""
    from aimc_lsh.eval import evaluate

    result = evaluate(model, eval_batches(context), progress=False)
    return {"accuracy": result.accuracy, "n_correct": result.n_correct, "n_images": result.n_images}
