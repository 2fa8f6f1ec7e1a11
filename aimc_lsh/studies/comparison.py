"""Kernel comparison: FP32, conventional AIMC, LSH, PQ and neuron merging under one recovery budget.

Every *row* is one way of running the pretrained backbone:

* ``fp32``: the digital reference (no recovery, no hardware);
* ``conventional``: real weights on analog tiles with an n-bit ADC, hardware-aware fine-tuned with the
  device's simulated arrays in the training loop and weight clipping
  (:func:`aimc_lsh.train.hardware_loop_spec`, the ``studies/finetune.py`` default);
* ``lsh``: SimHash (random projection, k = 256) on every layer, codes on the array;
* ``pq``: LUT-NN product quantization (K = 16) on every layer, look-up tables on the array;
* ``merge75`` / ``merge50``: LSH neuron merging keeping 75% / 50% of the mergeable channels, then the
  merged (smaller, real-valued) network on conventional AIMC.

Each row is built from the FP32 model, recovered with the **same training budget** (wall-clock seconds of
:func:`aimc_lsh.train.fine_tune`, distillation from the FP32 model; ``lsh`` uses the gradual-hashing recipe
that recovers it fastest), then measured: parameters, dense FLOPs of its architecture, digital accuracy,
accuracy on the device at t = 0 (just programmed) and after ``--time`` of drift (mean and std over
programming seeds), and energy per inference on that device (:func:`aimc_lsh.hardware.count_events`).
A row's record is written atomically to ``<out>/<row>.json``; rows already there are reused, so an
interrupted run resumes. ``studies/kernel_comparison.py`` is the command line.
"""

from __future__ import annotations

import copy
import json
import resource
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = ["RowSpec", "ROWS", "ComparisonSetup", "run_row", "run_comparison", "comparison_table"]


@dataclass(frozen=True)
class RowSpec:
    """One row of the comparison."""

    kind: str
    """``fp32``, ``conventional``, ``patched`` (hashed or PQ layers) or ``merged``."""
    description: str
    """What the row is, for the table."""
    patch: dict[str, Any] = field(default_factory=dict)
    """``HashConfig`` fields of a ``patched`` row (kernel, hash_length, ...)."""
    merge_ratio: float | None = None
    """Fraction of mergeable channels kept by a ``merged`` row."""
    recipe: str = "kd"
    """Recovery recipe (:data:`aimc_lsh.train.RECIPES`)."""
    placement: str = "conventional"
    """Placement on the device: ``conventional`` (real weights) or ``codes_on_array`` (hash codes or PQ
    look-up tables on the crossbar)."""


ROWS: dict[str, RowSpec] = {
    "fp32": RowSpec("fp32", "FP32 digital reference"),
    "conventional": RowSpec("conventional", "conventional AIMC (real weights, 8-bit ADC), HWA fine-tuned"),
    "lsh": RowSpec(
        "patched",
        "SimHash, random projection, k=256, codes on the array",
        {"kernel": "random_projection", "hash_length": 256},
        recipe="blend_kd",
        placement="codes_on_array",
    ),
    "pq": RowSpec(
        "patched",
        "LUT-NN product quantization, K=16, int8 tables on the array",
        {"kernel": "product_quantization", "hash_length": 16},
        placement="codes_on_array",
    ),
    "merge75": RowSpec("merged", "LSH neuron merging, 75% of mergeable channels kept", merge_ratio=0.75),
    "merge50": RowSpec("merged", "LSH neuron merging, 50% of mergeable channels kept", merge_ratio=0.5),
}
"""The rows of the comparison, by name."""


@dataclass
class ComparisonSetup:
    """Everything a row needs: models, data and the measurement settings."""

    teacher: nn.Module
    """The pretrained FP32 model."""
    train_set: Any
    """Training images (an :class:`~aimc_lsh.data.ImageTensorDataset`), used for recovery and calibration."""
    test_set: Any
    """Test images on which every accuracy is measured."""
    device: str = "pcm"
    """Device profile of the hardware columns."""
    budget_s: float = 300.0
    """Recovery budget per row in seconds of wall clock; 0 skips recovery."""
    epochs: float | None = None
    """Train for this many epochs instead of a time budget (reproducible; used by tests)."""
    t_inference: float = 86_400.0
    """Drift time of the second hardware column, in seconds."""
    drift_reference: str = "random_sign"
    """Drift-compensation read-out of the hardware columns (``HardwareConfig.drift_reference``)."""
    seeds: Sequence[int] = (0, 1)
    """Programming seeds."""
    calib_images: int = 512
    """Training images used for PQ codebooks and merge statistics."""
    batch_size: int = 128
    """Evaluation batch size."""
    seed: int = 0
    """Seed of the recovery runs and of the approximations (projections, fingerprints, k-means)."""
    augment: bool = True
    """Crop + flip augmentation during recovery."""
    crop_padding: int = 4
    """Zero padding of the random crop during recovery (:func:`aimc_lsh.data.training_crop_padding` of the
    dataset: 4 for CIFAR, 1 for the 8x8 digits, which a 4-pixel padding would erase)."""


def _calibration_batches(setup: ComparisonSetup) -> list[torch.Tensor]:
    images = setup.train_set.images[: setup.calib_images]
    images = images.float() / 255.0 if images.dtype == torch.uint8 else images
    return list(images.split(setup.batch_size))


def build_row(name: str, setup: ComparisonSetup) -> nn.Module:
    """The row's model before recovery (calibrated where the approximation needs data)."""
    from aimc_lsh.kernels import HashConfig
    from aimc_lsh.nn import MergeConfig, merge_neurons, patch_model, prepare_model

    spec = ROWS[name]
    teacher = setup.teacher
    if spec.kind in ("fp32", "conventional"):
        model = copy.deepcopy(teacher)
    elif spec.kind == "patched":
        model = patch_model(teacher, HashConfig(**{"seed": setup.seed, **spec.patch}))
        model = prepare_model(model, _calibration_batches(setup))
    else:
        config = MergeConfig(target_ratio=spec.merge_ratio, seed=setup.seed)
        model, _report = merge_neurons(teacher, config, _calibration_batches(setup))
    for p in model.parameters():  # the teacher's are frozen once it has distilled a row
        p.requires_grad_(True)
    return model.eval()


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def recover(name: str, model: nn.Module, setup: ComparisonSetup) -> dict[str, Any]:
    """Fine-tune the row's model in place with the common budget; returns steps and times."""
    from aimc_lsh.train import TrainConfig, fine_tune, hardware_loop_spec

    spec = ROWS[name]
    if spec.kind == "fp32" or (setup.budget_s <= 0 and setup.epochs is None):
        return {"recipe": None, "steps": 0, "wall_s": 0.0, "cpu_s": 0.0}
    changes: dict[str, Any] = {
        "seed": setup.seed,
        "progress": False,
        "eval_every": 0,
        "augment": setup.augment,
        "crop_padding": setup.crop_padding,
    }
    if setup.epochs is not None:
        changes.update(epochs=setup.epochs)
    else:
        changes.update(epochs=1000.0, time_budget_s=setup.budget_s)
    config = TrainConfig.for_recipe(spec.recipe, **changes)
    noise = None
    if spec.kind == "conventional":
        noise = hardware_loop_spec(
            setup.device, setup.t_inference, conventional=True, drift_reference=setup.drift_reference
        )
    cpu0, wall0 = _cpu_seconds(), time.perf_counter()
    result = fine_tune(model, setup.train_set, config, teacher=setup.teacher, noise=noise)
    if noise is not None:
        from aimc_lsh.train import remove_training_noise

        remove_training_noise(model)
    return {
        "recipe": spec.recipe,
        "steps": result.steps,
        "wall_s": round(time.perf_counter() - wall0, 1),
        "cpu_s": round(_cpu_seconds() - cpu0, 1),
    }


def on_device(name: str, model: nn.Module, setup: ComparisonSetup) -> nn.Module | None:
    """The recovered model rebuilt on ``setup.device`` (unprogrammed); None for the FP32 row."""
    from aimc_lsh.hardware import HardwareConfig
    from aimc_lsh.nn import patch_model, patched_layers, to_digital

    spec = ROWS[name]
    if spec.kind == "fp32":
        return None
    if spec.kind != "patched":
        config = HardwareConfig(
            device=setup.device, placement="conventional", drift_reference=setup.drift_reference
        )
        return patch_model(model, config).eval()
    configs = {
        path: HardwareConfig.from_hash_config(
            layer.config,
            device=setup.device,
            placement=spec.placement,
            drift_reference=setup.drift_reference,
        )
        for path, layer in patched_layers(model)
    }
    first = next(iter(configs.values()))
    hardware = patch_model(to_digital(model), first, overrides=configs, filter_fn=lambda p, _m: p in configs)
    result = hardware.load_state_dict(model.state_dict(), strict=False)
    foreign = [k for k in result.missing_keys if ".stages." not in k and ".array." not in k]
    if result.unexpected_keys or foreign:
        raise ValueError(
            f"row {name}: the recovered weights do not fit the hardware model "
            f"(missing {foreign[:5]}, unexpected {result.unexpected_keys[:5]})"
        )
    return hardware.eval()


def _accuracy(model: nn.Module, setup: ComparisonSetup) -> float:
    from aimc_lsh.data import make_loader
    from aimc_lsh.eval import evaluate

    loader = make_loader(setup.test_set, batch_size=setup.batch_size, augment=False, shuffle=False)
    return evaluate(model, loader, progress=False).accuracy


def _stats(values: list[float]) -> dict[str, float]:
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "values": values,
    }


def run_row(name: str, setup: ComparisonSetup) -> dict[str, Any]:
    """Build, recover and measure one row; returns its JSON-serialisable record.

    Raises:
        ValueError: For an unknown row name.

    """
    from aimc_lsh.eval import count_params_flops
    from aimc_lsh.hardware import drift, energy_report, program
    from aimc_lsh.nn import to_digital

    if name not in ROWS:
        raise ValueError(f"unknown comparison row {name!r}; allowed: {', '.join(ROWS)}")
    spec = ROWS[name]
    model = build_row(name, setup)
    training = recover(name, model, setup)
    model.eval()
    shape = tuple(setup.test_set.images.shape[1:])
    complexity = count_params_flops(model, shape)
    dense = count_params_flops(to_digital(model), shape)
    example = setup.test_set.images[:1]
    example = example.float() / 255.0 if example.dtype == torch.uint8 else example
    record: dict[str, Any] = {
        "row": name,
        **asdict(spec),
        "params": complexity.params,
        "dense_flops": dense.flops,
        "digital_accuracy": _accuracy(model, setup),
        "training": training,
        "budget_s": setup.budget_s,
        "epochs": setup.epochs,
        "device": setup.device,
        "t_inference": setup.t_inference,
        "drift_reference": setup.drift_reference,
        "seeds": list(setup.seeds),
    }
    hardware = on_device(name, model, setup)
    if hardware is None:
        report = energy_report({name: model}, example)
        record.update(t0=None, drifted=None)
    else:
        t0, drifted = [], []
        for seed in setup.seeds:
            program(hardware, seed=int(seed))
            t0.append(_accuracy(hardware, setup))
            drift(hardware, setup.t_inference)
            drifted.append(_accuracy(hardware, setup))
        record.update(t0=_stats(t0), drifted=_stats(drifted))
        report = energy_report({name: hardware}, example)
    row = report.iloc[0]
    record["energy_nJ"] = float(row["total_nJ"])
    record["energy_parts_pJ"] = {
        c[: -len("_pJ")]: float(row[c]) for c in report.columns if c.endswith("_pJ") and c != "total_pJ"
    }
    return record


def run_comparison(
    rows: Sequence[str], setup: ComparisonSetup, out: str | Path, *, force: bool = False
) -> list[dict[str, Any]]:
    """Run ``rows`` (reusing ``<out>/<row>.json`` unless ``force``); returns every record found in ``out``.

    Raises:
        ValueError: For an unknown row name (before any compute).

    """
    from aimc_lsh.utils import atomic_write_text

    unknown = [r for r in rows if r not in ROWS]
    if unknown:
        raise ValueError(f"unknown comparison rows {', '.join(unknown)}; allowed: {', '.join(ROWS)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for name in rows:
        path = out / f"{name}.json"
        if path.exists() and not force:
            continue
        record = run_row(name, setup)
        atomic_write_text(path, json.dumps(record, indent=2) + "\n")
    return [json.loads((out / f"{n}.json").read_text()) for n in ROWS if (out / f"{n}.json").exists()]


def _pct(stats: dict[str, float] | None) -> str:
    if not stats:
        return "-"
    return f"{100 * stats['mean']:.2f} ± {100 * stats['std']:.2f}"


def comparison_table(records: Sequence[dict[str, Any]]) -> str:
    """Markdown table of comparison records (one line per row)."""
    if not records:
        return "(no rows)\n"
    first = records[0]
    t_label = (
        f"{first['t_inference'] / 86_400:g} d"
        if first["t_inference"] >= 86_400
        else f"{first['t_inference']:g} s"
    )
    head = [
        "row", "what", "params", "dense MFLOPs", "energy/inference (nJ)", "digital %",
        f"{first['device']} t=0 %", f"{first['device']} {t_label} %", "recovery steps", "recovery CPU min",
    ]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in records:
        cells = [
            r["row"], r["description"], f"{r['params']:,}", f"{r['dense_flops'] / 1e6:.4g}",
            f"{r['energy_nJ']:.1f}", f"{100 * r['digital_accuracy']:.2f}", _pct(r["t0"]), _pct(r["drifted"]),
            str(r["training"]["steps"]), f"{r['training']['cpu_s'] / 60:.2f}",
        ]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
