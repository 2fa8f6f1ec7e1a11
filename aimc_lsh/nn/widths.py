"""Layer widths of a model: record them, and resize a backbone's layers to recorded widths.

A network whose neurons were merged (:mod:`aimc_lsh.nn.merging`) has narrower layers than the backbone it
came from. Checkpoints record every layer's widths (:func:`layer_widths`) so that the backbone can be
reshaped (:func:`resize_to_widths`) before the checkpoint's weights are loaded into it; for an unmerged
network the widths equal the backbone's and nothing changes.

Widths are ``{"in": ..., "out": ...}`` per layer: input/output channels of convolutions (digital, hashed,
PQ or conventional analog), features of linear layers, and ``num_features`` (both) of BatchNorm layers.
"""

from __future__ import annotations

import copy

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from aimc_lsh.nn.digital import set_submodule
from aimc_lsh.nn.merge_math import new_like

__all__ = ["layer_widths", "resize_to_widths"]

_WIDTH_ATTRIBUTES = (("in_features", "out_features"), ("in_channels", "out_channels"))
"""Attribute pairs holding a layer's input and output width, checked in this order."""

_RESIZABLE = (nn.Conv2d, nn.Linear, _BatchNorm)
"""Digital layer types :func:`resize_to_widths` can rebuild at another width."""


def _width(module: nn.Module) -> dict[str, int] | None:
    if isinstance(module, _BatchNorm):
        return {"in": module.num_features, "out": module.num_features}
    for inputs, outputs in _WIDTH_ATTRIBUTES:
        if isinstance(getattr(module, inputs, None), int) and isinstance(getattr(module, outputs, None), int):
            return {"in": getattr(module, inputs), "out": getattr(module, outputs)}
    return None


def layer_widths(model: nn.Module) -> dict[str, dict[str, int]]:
    """Input and output widths of every layer of ``model`` that has them, by module path.

    Only the outermost module with widths counts (the parts of a hashed or analog layer are not layers of
    their own).
    """
    out: dict[str, dict[str, int]] = {}
    for path, module in model.named_modules():
        if not path or any(path.startswith(p + ".") for p in out):
            continue
        width = _width(module)
        if width is not None:
            out[path] = width
    return out


def resize_to_widths(
    model: nn.Module, widths: dict[str, dict[str, int]], *, inplace: bool = False
) -> nn.Module:
    """Rebuild the layers of a digital ``model`` whose widths differ from ``widths`` (:func:`layer_widths`).

    Resized layers keep their type and hyper-parameters (kernel size, stride, bias, BatchNorm eps, ...);
    their weights are uninitialised, to be loaded from the checkpoint that recorded the widths.

    Args:
        model: The digital backbone (Conv2d, Linear and BatchNorm layers can be resized).
        widths: Recorded widths, e.g. a checkpoint's ``widths`` entry.
        inplace: Modify ``model`` instead of a copy.

    Returns:
        The resized model (``model`` itself if ``inplace``).

    Raises:
        ValueError: If a recorded layer is not in ``model``, has no widths, or differs in width but
            cannot be resized (not a digital Conv2d/Linear/BatchNorm, or a BatchNorm asked for different
            input and output widths).

    """
    if not inplace:
        model = copy.deepcopy(model)
    for path, width in widths.items():
        try:
            module = model.get_submodule(path)
        except AttributeError:
            raise ValueError(f"the recorded widths name layer {path!r}, which the model lacks") from None
        current = _width(module)
        if current is None:
            raise ValueError(f"layer {path!r} ({type(module).__name__}) has no input/output widths")
        if current == {"in": width["in"], "out": width["out"]}:
            continue
        if not isinstance(module, _RESIZABLE):
            raise ValueError(
                f"layer {path!r} is {type(module).__name__} with widths {current}, the recorded widths are "
                f"{width}; only digital Conv2d, Linear and BatchNorm layers can be resized"
            )
        if isinstance(module, _BatchNorm) and width["in"] != width["out"]:
            raise ValueError(f"BatchNorm layer {path!r} cannot have different widths in and out: {width}")
        resized = new_like(module, in_channels=width["in"], out_channels=width["out"])
        set_submodule(model, path, resized)
    return model
