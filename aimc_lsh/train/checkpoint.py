"""One-file training checkpoints: weights, per-layer configs, FP32 accuracy, resumption state.

A checkpoint holds the weights, the full per-layer kernel/hardware config, the FP32 accuracy the run
started from, and (for resumption) optimiser, scheduler and RNG state.

Format (a ``torch.save`` dict, loadable with ``weights_only=True``)::

    format        "aimc_lsh.train/1"
    model_state   state_dict of the model (training-noise wrappers removed)
    backbone      backbone name for aimc_lsh.models.get_backbone, or None
    layers        {module path: {"config_class": "module:Class", "config": config.to_dict()}}
    widths        {module path: {"in": ..., "out": ...}} of every layer (aimc_lsh.nn.widths): a merged
                  network's narrower layers; absent in older checkpoints (backbone widths)
    fp32_accuracy accuracy (fraction) of the FP32 model the run started from, or None
    train_config  TrainConfig.to_dict(); noise: NoiseSpec.to_dict() or None
    step, epoch   optimiser steps done, epochs completed (float)
    optimizer, scheduler, rng   resumption state
    weight_average  WeightAverage.state_dict() of a run with ema_decay > 0 (its model_state is the
                  average once the run has finished), else None
    history       list of CSV-log rows; meta: free-form dict (command line, timings, ...)

Files are written atomically (temporary file + rename), so an interrupted save never leaves a torn file.
"""

from __future__ import annotations

import importlib
import os
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from aimc_lsh.kernels import HashConfig
from aimc_lsh.models.checkpoints import LOAD_ERRORS, CheckpointError, load_error_message
from aimc_lsh.nn.digital import set_submodule
from aimc_lsh.nn.widths import layer_widths, resize_to_widths
from aimc_lsh.utils import atomic_path, exclusive_lock

FORMAT = "aimc_lsh.train/1"


def _config_class_name(config: HashConfig) -> str:
    cls = type(config)
    return f"{cls.__module__}:{cls.__qualname__}"


def _config_class(name: str) -> type[HashConfig]:
    module_name, _, qualname = name.partition(":")
    if not module_name.startswith("aimc_lsh.") or not qualname:
        raise ValueError(f"checkpoint names config class {name!r}; only aimc_lsh config classes are allowed")
    cls = getattr(importlib.import_module(module_name), qualname)
    if not (isinstance(cls, type) and issubclass(cls, HashConfig)):
        raise ValueError(f"{name!r} is not a HashConfig subclass")
    return cls


def layer_configs(model: nn.Module) -> dict[str, dict[str, Any]]:
    """Config of every layer that carries one (hashed, PQ or conventional analog layers), by module path.

    Only the outermost module carrying a config counts: the parts of a layer that hold its config too
    (analog stages, tile arrays) are not layers of their own.
    """
    out = {}
    for path, module in model.named_modules():
        config = getattr(module, "config", None)
        if not path or not isinstance(config, HashConfig) or any(path.startswith(p + ".") for p in out):
            continue
        out[path] = {"config_class": _config_class_name(config), "config": config.to_dict()}
    return out


def rng_state() -> dict[str, Any]:
    """Current torch and python RNG states."""
    return {
        "torch": torch.get_rng_state(),
        "python": list(random.getstate()[1]),
        "python_version": random.getstate()[0],
        "python_gauss": random.getstate()[2],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore :func:`rng_state` output."""
    torch.set_rng_state(state["torch"])
    random.setstate((state["python_version"], tuple(state["python"]), state["python_gauss"]))


def save_checkpoint(path: str | os.PathLike[str], model: nn.Module, **fields: Any) -> Path:
    """Write a checkpoint atomically.

    Args:
        path: Destination file (parent folders are created).
        model: The model (a DDP wrapper is unwrapped; training-noise wrappers are removed while saving).
        **fields: Other entries (see the module docstring).

    Returns:
        The path written.

    """
    from aimc_lsh.train.ste_scale import rewrap_stages, unwrap_stages

    model = getattr(model, "module", model)
    saved = unwrap_stages(model)  # training-only wrappers are not part of the saved model
    try:
        payload = {
            "format": FORMAT,
            "model_state": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "layers": layer_configs(model),
            "widths": layer_widths(model),
        }
    finally:
        rewrap_stages(saved)
    payload.update(fields)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (tensors on CPU).

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        ValueError: If the file is not an aimc_lsh training checkpoint, or is truncated or corrupt
            (:class:`aimc_lsh.models.CheckpointError`, naming the file and the reason).

    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except LOAD_ERRORS as err:
        raise CheckpointError(load_error_message(path, err)) from err
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f"{path} is not an aimc_lsh training checkpoint (format {FORMAT!r})")
    return data


def training_progress(path: str | os.PathLike[str]) -> tuple[bool, int, int] | None:
    """Whether the run saved at ``path`` finished, and its steps done and planned; None if there is no file.

    A run saves its checkpoint every few steps under its final name (so that ``resume`` continues it);
    only the last save of a completed run is marked ``final``.

    Raises:
        ValueError: If the file is not a readable aimc_lsh training checkpoint.

    """
    if not Path(path).is_file():
        return None
    data = load_checkpoint(path)
    return bool(data.get("final")), int(data.get("step", 0)), int(data.get("planned_steps", 0))


def training_finished(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` holds a run whose training finished (False if there is no file).

    Raises:
        ValueError: If the file is not a readable aimc_lsh training checkpoint.

    """
    progress = training_progress(path)
    return progress is not None and progress[0]


def train_once(
    path: str | os.PathLike[str], run: Callable[[], None], *, on_wait: Callable[[Path], None] | None = None
) -> None:
    """Call ``run()`` to train into ``path`` unless ``path`` already holds a finished run.

    Processes that do this for the same ``path`` take turns on ``<path>.lock``
    (:func:`aimc_lsh.utils.exclusive_lock`): one trains, the others wait (``on_wait`` is called once with
    the lock file) and then find the finished file instead of training it again.
    """
    path = Path(path)
    with exclusive_lock(path.with_name(path.name + ".lock"), on_wait=on_wait):
        if not training_finished(path):
            run()


def patch_like(model: nn.Module, layers: dict[str, dict[str, Any]], *, inplace: bool = False) -> nn.Module:
    """Patch a digital ``model`` so that the layers in ``layers`` (:func:`layer_configs`) get their configs.

    Hashed layers are rebuilt with :func:`aimc_lsh.nn.patch_model`; a conventional analog placement
    (all layers sharing one config) is converted with the same call.
    """
    from aimc_lsh.nn import patch_model, patchable_layers

    if not layers:
        return model
    configs = {p: _config_class(e["config_class"]).from_dict(e["config"]) for p, e in layers.items()}
    first = next(iter(configs.values()))
    if getattr(first, "placement", None) == "conventional":
        skip = [p for p, _ in patchable_layers(model) if p not in configs]
        return patch_model(model, first, skip=skip, inplace=inplace)
    return patch_model(
        model, first, overrides=configs, filter_fn=lambda path, _m: path in configs, inplace=inplace
    )


def model_from_checkpoint(
    checkpoint: dict[str, Any] | str | os.PathLike[str], model: nn.Module | None = None
) -> nn.Module:
    """Rebuild the trained model of a checkpoint.

    Args:
        checkpoint: A loaded checkpoint or its path.
        model: The digital model to patch (default: ``aimc_lsh.models.get_backbone(checkpoint["backbone"])``).

    Returns:
        The patched model with the checkpoint's weights, in eval mode.

    """
    if not isinstance(checkpoint, dict):
        checkpoint = load_checkpoint(checkpoint)
    if model is None:
        name = checkpoint.get("backbone")
        if not name:
            raise ValueError("the checkpoint names no backbone; pass the digital model to patch")
        from aimc_lsh.models import get_backbone

        model = get_backbone(name)
    model = resize_to_widths(model, checkpoint.get("widths", {}))
    patched = patch_like(model, checkpoint["layers"], inplace=True)
    patched.load_state_dict(checkpoint["model_state"])
    return patched.eval()


def checkpoint_kind(checkpoint: dict[str, Any]) -> str:
    """What a loaded checkpoint holds: ``"hashed"`` or ``"weights"``.

    ``hashed``: some layers are hashed or product-quantized (a fine-tuned approximate model).
    ``weights``: a real-valued network, with no patched layers (e.g. a merged network,
    ``studies/merge_neurons.py --save-dir``) or with conventional analog layers (hardware-aware
    fine-tuning of the baseline); :func:`digital_network` gives it as a digital model.
    """
    configs = [entry["config"] for entry in checkpoint["layers"].values()]
    return "weights" if all(c.get("placement") == "conventional" for c in configs) else "hashed"


def digital_network(checkpoint: dict[str, Any], model: nn.Module) -> nn.Module:
    """The digital network of a ``weights`` checkpoint (:func:`checkpoint_kind`), built on ``model``.

    Args:
        checkpoint: A loaded checkpoint of kind ``weights``.
        model: The digital backbone it was made from (resized to the checkpoint's widths, then loaded).

    Returns:
        A digital model (Conv2d/Linear layers) with the checkpoint's weights, in eval mode.

    Raises:
        ValueError: If the checkpoint is of kind ``hashed``, or its weights do not fit ``model``.

    """
    if checkpoint_kind(checkpoint) != "weights":
        raise ValueError("a hashed checkpoint has no digital network of its own; use model_from_checkpoint")
    try:
        network = model_from_checkpoint(checkpoint, model)
    except RuntimeError as err:
        raise ValueError(f"the checkpoint's weights do not fit the backbone: {err}") from None
    replaced: list[str] = []
    for path, module in list(network.named_modules()):
        if not path or any(path.startswith(p + ".") for p in replaced):
            continue
        if getattr(module, "config", None) is not None and hasattr(module, "to_digital"):
            replaced.append(path)
            set_submodule(network, path, module.to_digital().eval())
    return network
