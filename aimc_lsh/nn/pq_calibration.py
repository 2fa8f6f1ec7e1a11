"""Calibration of layers that need data: k-means codebooks of product-quantized layers.

The prepare -> calibrate -> convert flow of PQ: ``patch_model`` builds :class:`PQConv2d` / :class:`PQLinear`
layers with empty codebooks (prepare); :func:`calibrate_pq` runs the model once over a few batches with
every PQ layer computing its exact digital layer, samples each layer's input sub-vectors (seeded), runs
k-means per codebook and marks the layers calibrated (convert). Same batches and seed, same centroids.

:func:`needs_data` / :func:`prepare_model` are the generic entry points for code that must not know which
approximation a model uses (e.g. the studies): they calibrate whatever layer still needs data.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch import Tensor, nn

from aimc_lsh.nn.patching import layer_seed
from aimc_lsh.nn.pq_layers import PQLayer, PQLinear

DEFAULT_MAX_SAMPLES = 4096
"""Sub-vectors kept per codebook for k-means (sampled at random positions of the calibration batches)."""


def pq_layers(model: nn.Module) -> Iterator[tuple[str, PQLayer]]:
    """Yield ``(path, layer)`` for every product-quantized layer of ``model``."""
    for path, module in model.named_modules():
        if isinstance(module, PQLayer):
            yield path, module


def needs_data(model: nn.Module) -> list[str]:
    """Module paths of the layers that need calibration data before they can run.

    Layers say so with a ``needs_calibration`` attribute (duck typing); today: uncalibrated PQ layers.
    """
    return [path for path, m in model.named_modules() if getattr(m, "needs_calibration", False) is True]


def _images(batch: Any) -> Tensor:
    if isinstance(batch, Tensor):
        return batch
    if isinstance(batch, list | tuple) and batch and isinstance(batch[0], Tensor):
        return batch[0]
    raise ValueError(
        f"calibration batches must be tensors or (images, labels) pairs, got {type(batch).__name__}"
    )


@torch.no_grad()
def calibrate_pq(
    model: nn.Module,
    batches: Iterable[Any],
    *,
    max_samples: int = DEFAULT_MAX_SAMPLES,
    seed: int | None = None,
    iterations: int = 25,
    only_uncalibrated: bool = False,
) -> nn.Module:
    """Set the codebooks of the model's PQ layers by k-means on their inputs over ``batches``.

    The model runs in eval mode with every PQ layer computing its exact digital layer, so each layer sees
    the activations of the digital model. Per batch and layer up to ``max_samples`` output positions are
    sampled (one sub-vector per codebook each); at the end ``max_samples`` of them are kept.

    Args:
        model: A model with PQ layers (``patch_model(model, HashConfig(kernel="product_quantization"))``).
        batches: Calibration inputs: tensors or ``(images, labels)`` pairs (use training data, never the
            test split you evaluate on).
        max_samples: Sub-vectors per codebook given to k-means.
        seed: Base seed; layer ``path`` uses ``layer_seed(seed, path)``. None: each layer's own seed
            (derived from its config's ``seed`` and path by ``patch_model``).
        iterations: Maximum Lloyd iterations.
        only_uncalibrated: Leave layers that are already calibrated as they are.

    Returns:
        ``model`` (calibrated in place), with its training modes unchanged.

    Raises:
        ValueError: If the model has no PQ layers (to calibrate), ``max_samples`` < 1, or ``batches`` is
            empty.

    """
    if isinstance(max_samples, bool) or not isinstance(max_samples, int) or max_samples < 1:
        raise ValueError(f"max_samples must be a positive int, got {max_samples!r}")
    layers = [(p, m) for p, m in pq_layers(model) if not (only_uncalibrated and m.kernel.is_calibrated)]
    if not layers:
        raise ValueError(
            "the model has no product-quantized layers to calibrate: patch it first, e.g. "
            "aimc_lsh.nn.patch_model(model, aimc_lsh.kernels.HashConfig(kernel='product_quantization', "
            "hash_length=16))"
        )
    seeds = {path: layer.seed if seed is None else layer_seed(seed, path) for path, layer in layers}
    generators = {path: torch.Generator().manual_seed(seeds[path]) for path, _ in layers}
    samples: dict[str, list[Tensor]] = {path: [] for path, _ in layers}

    def collector(path: str, layer: PQLayer) -> Any:
        def hook(module: nn.Module, args: tuple) -> None:
            x = args[0]
            if isinstance(layer, PQLinear):
                x = x.reshape(-1, layer.in_features, 1, 1)
            samples[path].append(layer.sample_subvectors(x, max_samples, generators[path]).cpu())

        return hook

    modes = {m: m.training for m in model.modules()}
    handles = [layer.register_forward_pre_hook(collector(path, layer)) for path, layer in layers]
    every = [layer for _, layer in pq_layers(model)]
    for layer in every:  # calibrated ones too: every layer sees the digital model's activations
        layer.exact = True
    model.eval()
    try:
        seen = 0
        for batch in batches:
            model(_images(batch))
            seen += 1
        if seen == 0:
            raise ValueError("calibrate_pq got no batches")
    finally:
        for handle in handles:
            handle.remove()
        for layer in every:
            layer.exact = False
        for module, mode in modes.items():
            module.training = mode
    for path, layer in layers:
        data = torch.cat(samples[path], dim=1)  # (n_books, total, V)
        if data.shape[1] == 0:
            raise ValueError(f"layer {path} saw no inputs during calibration")
        if data.shape[1] > max_samples:
            keep = torch.randperm(data.shape[1], generator=generators[path])[:max_samples]
            data = data[:, keep]
        layer.kernel.calibrate(data, seed=seeds[path], iterations=iterations)
    return model


def prepare_model(model: nn.Module, batches: Iterable[Any], *, seed: int | None = None) -> nn.Module:
    """Calibrate every layer of ``model`` that still needs data (no-op when none does).

    Generic entry point: callers need not know which approximation the model uses. Today it calibrates
    uncalibrated PQ layers with :func:`calibrate_pq` (default sample count, layers' own seeds unless
    ``seed`` is given).
    """
    if needs_data(model):
        calibrate_pq(model, batches, seed=seed, only_uncalibrated=True)
    return model
