"""Fast, data-light recovery steps that need no end-to-end training.

* :func:`recalibrate_bn`: re-estimate every BatchNorm's running mean/variance on a few batches of the
  hashed model's own activations (no gradients).
* :func:`calibrate_layers`: layer-wise calibration in the spirit of PIM-DL's reconstruction loss. Layers
  are visited in execution order; each hashed layer receives the inputs the *hashed* model produces at
  that point (so it can compensate upstream errors) and is fitted, through the sign STE, to the output of
  the FP32 layer at the same module path on the *FP32* model's activations:
  ``min ||hashed_l(x_hashed) - fp32_l(x_fp32)||^2 / ||fp32_l(x_fp32)||^2``.
  A layer whose error would grow keeps its previous weights, so the error never increases.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from aimc_lsh.train.optim import projection_parameters


class _StopForward(Exception):
    """Raised by a capture hook to skip the rest of a forward pass."""


@dataclass(frozen=True)
class LayerCalibration:
    """Outcome of calibrating one layer."""

    path: str
    """Module path of the layer."""
    error_before: float
    """Relative squared reconstruction error before calibration."""
    error_after: float
    """Relative squared reconstruction error after calibration (<= ``error_before``)."""
    kept: bool
    """False if the fitted weights were worse and the layer was restored."""


def _chunks(images: Tensor, batch_size: int) -> Iterator[Tensor]:
    for start in range(0, images.shape[0], batch_size):
        yield images[start : start + batch_size]


def batchnorm_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """Every BatchNorm layer of ``model``: what :func:`recalibrate_bn` re-estimates."""
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@torch.no_grad()
def recalibrate_bn(model: nn.Module, images: Tensor, *, batch_size: int = 128) -> int:
    """Reset and re-estimate the running statistics of every BatchNorm layer on ``images``.

    Statistics are cumulative averages over all batches (``momentum=None``); other modules run in eval
    mode; each module's training flag and momentum are restored afterwards.

    Args:
        model: The (hashed) model.
        images: Calibration inputs (N, ...), on the model's device.
        batch_size: Images per forward pass.

    Returns:
        The number of BatchNorm layers re-estimated.

    """
    bns = batchnorm_layers(model)
    if not bns:
        return 0
    modes = {m: m.training for m in model.modules()}
    momenta = {m: m.momentum for m in bns}
    model.eval()
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
        m.train()
    try:
        for batch in _chunks(images, batch_size):
            model(batch)
    finally:
        for m, momentum in momenta.items():
            m.momentum = momentum
        for m, mode in modes.items():
            m.training = mode
    return len(bns)


def execution_order(model: nn.Module, sample: Tensor, paths: list[str]) -> list[str]:
    """Return ``paths`` sorted by the order in which the modules first run on ``sample``."""
    order: list[str] = []
    handles = []
    for path in paths:
        module = model.get_submodule(path)

        def hook(_m, _inp, _out, path=path):
            if path not in order:
                order.append(path)

        handles.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad():
            model(sample)
    finally:
        for h in handles:
            h.remove()
    return order + [p for p in paths if p not in order]


@torch.no_grad()
def capture(model: nn.Module, path: str, images: Tensor, *, what: str, batch_size: int = 128) -> Tensor:
    """Run ``model`` on ``images`` and return the input (``what="input"``) or output of module ``path``.

    The forward pass stops right after the module, so capturing early layers is cheap.
    """
    module = model.get_submodule(path)
    pieces: list[Tensor] = []

    def hook(_m, inputs, output):
        pieces.append((inputs[0] if what == "input" else output).detach())
        raise _StopForward

    handle = module.register_forward_hook(hook)
    try:
        for batch in _chunks(images, batch_size):
            try:
                model(batch)
            except _StopForward:
                pass
    finally:
        handle.remove()
    if not pieces:
        raise RuntimeError(f"module {path!r} did not run in the forward pass")
    return torch.cat(pieces)


@torch.no_grad()
def reconstruction_error(
    layer: nn.Module, inputs: Tensor, targets: Tensor, *, batch_size: int = 128
) -> float:
    """Relative squared error ``sum ||layer(x) - y||^2 / sum ||y||^2`` over all pairs."""
    num = den = 0.0
    for start in range(0, inputs.shape[0], batch_size):
        y = targets[start : start + batch_size]
        num += float((layer(inputs[start : start + batch_size]) - y).pow(2).sum())
        den += float(y.pow(2).sum())
    return num / max(den, 1e-30)


def layer_reconstruction_errors(
    student: nn.Module, teacher: nn.Module, images: Tensor, paths: list[str], *, batch_size: int = 128
) -> dict[str, float]:
    """Relative reconstruction error of every layer in ``paths``, without changing anything.

    Inputs come from the student's forward pass, targets from the teacher's own forward pass.
    """
    modes = {m: m.training for m in (*student.modules(), *teacher.modules())}
    student.eval()
    teacher.eval()
    try:
        out = {}
        for path in paths:
            x = capture(student, path, images, what="input", batch_size=batch_size)
            y = capture(teacher, path, images, what="output", batch_size=batch_size)
            out[path] = reconstruction_error(student.get_submodule(path), x, y, batch_size=batch_size)
        return out
    finally:
        for m, mode in modes.items():
            m.training = mode


def calibrate_layers(
    student: nn.Module,
    teacher: nn.Module,
    images: Tensor,
    *,
    paths: list[str] | None = None,
    steps: int = 60,
    lr: float = 1e-3,
    projection_lr_ratio: float = 0.1,
    batch_size: int = 64,
    seed: int = 0,
) -> list[LayerCalibration]:
    """Fit every hashed layer of ``student`` to the matching FP32 layer of ``teacher`` (see module doc).

    Args:
        student: The hashed model (modified in place).
        teacher: The FP32 model with the same module paths (left unchanged).
        images: Calibration inputs (N, ...) on the models' device.
        paths: Layers to calibrate (default: every hashed layer), visited in execution order.
        steps: Adam steps per layer.
        lr: Learning rate of weights and biases.
        projection_lr_ratio: Learning rate of learned projections relative to ``lr``.
        batch_size: Images per step.
        seed: Seed of the minibatch draws.

    Returns:
        One :class:`LayerCalibration` per layer, in the order visited.

    """
    from aimc_lsh.nn import hashed_layers

    if paths is None:
        paths = [p for p, _ in hashed_layers(student)]
    if not paths:
        raise ValueError("calibrate_layers: the student has no hashed layers")
    modes = {m: m.training for m in (*student.modules(), *teacher.modules())}
    student.eval()
    teacher.eval()
    generator = torch.Generator().manual_seed(int(seed))
    results = []
    try:
        order = execution_order(student, images[:2], paths)
        for path in order:
            layer = student.get_submodule(path)
            x = capture(student, path, images, what="input")
            y = capture(teacher, path, images, what="output")
            before = reconstruction_error(layer, x, y)
            saved = copy.deepcopy(layer.state_dict())
            proj = {id(p) for p in projection_parameters(layer)}
            params = [p for p in layer.parameters() if p.requires_grad]
            if steps > 0 and params:
                groups = [{"params": [p for p in params if id(p) not in proj], "lr": lr}]
                if proj:
                    groups.append(
                        {"params": [p for p in params if id(p) in proj], "lr": lr * projection_lr_ratio}
                    )
                optimizer = torch.optim.Adam([g for g in groups if g["params"]])
                scale = float(y.pow(2).mean()) or 1.0
                with torch.enable_grad():
                    for _ in range(steps):
                        idx = torch.randint(
                            0, x.shape[0], (min(batch_size, x.shape[0]),), generator=generator
                        )
                        loss = (layer(x[idx]) - y[idx]).pow(2).mean() / scale
                        optimizer.zero_grad(set_to_none=True)
                        loss.backward()
                        optimizer.step()
            after = reconstruction_error(layer, x, y)
            kept = after <= before
            if not kept:
                layer.load_state_dict(saved)
                after = before
            results.append(LayerCalibration(path, before, after, kept))
    finally:
        for m, mode in modes.items():
            m.training = mode
    return results
