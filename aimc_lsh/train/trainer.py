"""``fine_tune``: the recovery loop for patched (hashed or conventional analog) models.

Phases, all optional (see :class:`~aimc_lsh.train.config.TrainConfig`): layer-wise calibration and
BatchNorm re-estimation against the FP32 teacher (rank 0, before DDP wrapping, which broadcasts the
result), then end-to-end training with label-smoothed cross-entropy + distillation, a warm-up cosine
schedule, optional hardware-aware noise, an optional average of the weights over the fully hashed
steps (``ema_decay``, :mod:`aimc_lsh.train.averaging`), a tqdm bar (loss, accuracy, learning rate, ETA),
a CSV log and resumable checkpoints. The run stops after ``epochs`` or ``time_budget_s``, whichever
comes first (with a budget, the cosine schedule is refitted at every epoch end to the steps that still
fit, from the mean step and evaluation times measured so far; budgeted runs are therefore not
bit-reproducible). With ``final_bn_images`` the BatchNorm statistics of the returned weights are then
re-estimated once and kept if held-out images agree (:mod:`aimc_lsh.train.bn_refresh`); a budget reserves
the time this takes.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from aimc_lsh.data import ImageTensorDataset
from aimc_lsh.eval import dataset_accuracy
from aimc_lsh.kernels import product_precision, slow_product_warning
from aimc_lsh.train.anneal import HashBlend, blend_factor
from aimc_lsh.train.averaging import WeightAverage
from aimc_lsh.train.batches import EpochBatches
from aimc_lsh.train.bn_refresh import BatchNormRefresh, refresh_batchnorm
from aimc_lsh.train.calibration import LayerCalibration, calibrate_layers, recalibrate_bn
from aimc_lsh.train.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from aimc_lsh.train.config import TrainConfig
from aimc_lsh.train.distributed import DistContext
from aimc_lsh.train.feature_taps import FeatureTaps, check_module_paths, default_feature_layers
from aimc_lsh.train.hardware_loop import HardwareInTheLoop
from aimc_lsh.train.losses import feature_distillation_loss, recovery_loss
from aimc_lsh.train.noise import NoiseSpec, WeightNoise, clip_weights, inject_training_noise
from aimc_lsh.train.optim import WarmupCosine, build_optimizer
from aimc_lsh.train.ste_scale import normalize_projection_gradients
from aimc_lsh.utils import atomic_write_text, tune_allocator

LOG_FIELDS = (
    "step",
    "epoch",
    "phase",
    "train_loss",
    "train_accuracy",
    "val_accuracy",
    "val_accuracy_ema",
    "lr",
    "elapsed_s",
    "cpu_s",
)
"""Columns of the CSV training log."""

_PROBE_STEPS = 5


@dataclass
class TrainResult:
    """Outcome of :func:`fine_tune`."""

    model: nn.Module
    """The trained model (unwrapped from DDP, training noise still injected if it was requested)."""
    fp32_accuracy: float | None
    """Accuracy (fraction) of the teacher on the validation set, or None."""
    initial_accuracy: float | None
    """Accuracy of the patched model before any recovery, or None."""
    calibrated_accuracy: float | None
    """Accuracy after calibration (before end-to-end training), or None."""
    final_accuracy: float | None
    """Accuracy at the end (of the weight average with ``ema_decay``), or None without a validation set."""
    steps: int
    """Optimiser steps done in total (including before a resume)."""
    elapsed_s: float
    """Wall-clock seconds of this run (accumulated over resumes)."""
    cpu_s: float
    """CPU seconds of this process (accumulated over resumes)."""
    calibration: list[LayerCalibration] = field(default_factory=list)
    """Per-layer calibration outcome (empty if not calibrated in this run)."""
    history: list[dict[str, Any]] = field(default_factory=list)
    """Rows of the CSV log."""
    stopped_early: bool = False
    """True if ``stop_after`` interrupted the run before the schedule ended."""
    steps_per_epoch: int = 0
    """Optimiser steps in one epoch of the training set (images // batch size, per process under DDP)."""
    final_live_accuracy: float | None = None
    """Accuracy of the last step's own weights at the end: ``final_accuracy`` unless the weight average
    (``ema_decay``) replaced them."""
    accuracy_before_bn_refresh: float | None = None
    """Accuracy of the returned weights with their trained BatchNorm statistics (``final_bn_images``):
    ``final_accuracy`` unless the refresh kept new statistics; None without a refresh or validation set."""
    bn_refresh: BatchNormRefresh | None = None
    """Outcome of the final BatchNorm refresh (``final_bn_images``), or None."""


def _write_log(path: Path | None, rows: list[dict[str, Any]]) -> None:
    if path is None:
        return
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=LOG_FIELDS, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow(row)
    atomic_write_text(path, buf.getvalue())


def set_train_mode(model: nn.Module, bn_mode: str) -> None:
    """Put ``model`` in training mode; with ``bn_mode="freeze"`` its BatchNorm layers stay in eval mode."""
    model.train()
    if bn_mode == "freeze":
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()


def _accuracy(model: nn.Module, data: ImageTensorDataset | None, device: torch.device) -> float | None:
    return dataset_accuracy(model, data, device) if data is not None else None


def _is_refresh_row(row: dict[str, Any]) -> bool:
    return str(row.get("phase", "")).startswith("bn_refresh")


def _refresh_seconds(
    config: TrainConfig,
    train_images: int,
    holdout: ImageTensorDataset | None,
    val_set: ImageTensorDataset | None,
    per_image: float,
) -> float:
    """Seconds to reserve for the final BatchNorm refresh: its forwards, held-out and test evaluations."""
    if not config.final_bn_images:
        return 0.0
    images = min(config.final_bn_images, train_images) + 2 * (len(holdout) if holdout is not None else 0)
    return per_image * (images + (len(val_set) if val_set is not None else 0))


def fine_tune(
    model: nn.Module,
    train_set: ImageTensorDataset,
    config: TrainConfig | None = None,
    *,
    teacher: nn.Module | None = None,
    val_set: ImageTensorDataset | None = None,
    noise: NoiseSpec | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    resume: bool = False,
    log_csv: str | os.PathLike[str] | None = None,
    device: str | torch.device | None = "cpu",
    backbone: str | None = None,
    fp32_accuracy: float | None = None,
    holdout_set: ImageTensorDataset | None = None,
    stop_after: int | None = None,
    meta: dict[str, Any] | None = None,
) -> TrainResult:
    """Recover the accuracy of a patched model (see the module docstring).

    Args:
        model: The patched model (trained in place).
        train_set: Training images in [0, 1] with labels.
        config: Training configuration (default: ``TrainConfig()``, the default recipe).
        teacher: The FP32 model (needed for distillation and layer-wise calibration).
        val_set: Validation split (accuracy is logged; rank 0 only).
        noise: Hardware-aware training: ``hardware_profile`` arrays in the loop (the hashed layers, or
            every Conv2d/Linear of a model without hashed layers), sampled hashed-layer terms, and for
            conventional layers ``weight_device`` or ``weight_std`` weight noise and
            ``weight_clip_sigma`` clipping after every step.
        checkpoint: Checkpoint file written during and at the end of the run.
        resume: Continue from ``checkpoint`` if it exists (same config), reproducing the uninterrupted run.
        log_csv: CSV training log (rewritten atomically at every log point).
        device: ``cpu``, ``cuda`` or None (CUDA when available).
        backbone: Backbone name stored in the checkpoint (for :func:`model_from_checkpoint`).
        fp32_accuracy: FP32 accuracy to store; measured on ``val_set`` with ``teacher`` if None.
        holdout_set: Labelled images that training never sees, which decide whether the final BatchNorm
            refresh (``config.final_bn_images``) keeps its statistics; None keeps them unconditionally.
        stop_after: Stop after this many optimiser steps of this invocation (after checkpointing); for
            chunked runs and interruption tests.
        meta: Free-form information stored in the checkpoint.

    Returns:
        A :class:`TrainResult`.

    Raises:
        ValueError: If distillation or calibration is requested without a teacher.

    """
    config = config or TrainConfig()
    tune_allocator()
    needs_teacher = config.kd_alpha > 0 or config.feature_kd > 0 or config.calibrate_layers
    if needs_teacher and teacher is None:
        raise ValueError(
            "kd_alpha > 0, feature_kd > 0 or calibrate_layers=True needs the FP32 model as teacher="
        )
    feature_layers = list(config.feature_kd_layers) or default_feature_layers(model)
    if config.feature_kd > 0:  # before any work: a wrong path stops the run here
        check_module_paths(model, feature_layers)
        check_module_paths(teacher, feature_layers)
    ctx = DistContext.from_env(device)
    dev = ctx.device
    slow_products = slow_product_warning(config.product_dtype, dev)
    if slow_products is not None and ctx.is_main:
        warnings.warn(slow_products, RuntimeWarning, stacklevel=2)
    model.to(dev)
    if teacher is not None:  # only ever run under no_grad: its parameters are left as the caller set them
        teacher.to(dev).eval()
    checkpoint = Path(checkpoint) if checkpoint is not None else None
    log_path = Path(log_csv) if log_csv is not None and ctx.is_main else None
    state = (
        load_checkpoint(checkpoint) if resume and checkpoint is not None and checkpoint.is_file() else None
    )
    if state is not None and TrainConfig.from_dict(state["train_config"]) != config:
        raise ValueError(f"cannot resume {checkpoint}: it was written with another TrainConfig")
    wall0, cpu0 = time.perf_counter(), time.process_time()
    prior_wall = prior_cpu = 0.0
    calibration: list[LayerCalibration] = []
    eval_seconds: float | None = None
    eval_passes = 1  # evaluations in the last measured eval_seconds (the weight average's too)
    initial_acc = calibrated_acc = None
    if state is not None:
        model.load_state_dict(state["model_state"])
        fp32_accuracy = state.get("fp32_accuracy")
        initial_acc, calibrated_acc = state.get("initial_accuracy"), state.get("calibrated_accuracy")
        prior_wall, prior_cpu = state.get("elapsed_s", 0.0), state.get("cpu_s", 0.0)
        history: list[dict[str, Any]] = list(state.get("history", []))
    else:
        history = []
        if ctx.is_main:
            if fp32_accuracy is None and teacher is not None:
                fp32_accuracy = _accuracy(teacher, val_set, dev)
            eval_start = time.perf_counter()
            initial_acc = _accuracy(model, val_set, dev)
            eval_seconds = time.perf_counter() - eval_start if val_set is not None else None
            if config.calibrate_layers or config.recalibrate_bn:
                images = train_set.tensors()[0][: config.calib_images].to(dev)
                if config.calibrate_layers:
                    calibration = calibrate_layers(
                        model,
                        teacher,
                        images,
                        steps=config.calib_steps,
                        lr=config.calib_lr,
                        projection_lr_ratio=config.lr_projection / max(config.lr_weights, 1e-30),
                        batch_size=config.calib_batch_size,
                        seed=config.seed,
                    )
                if config.recalibrate_bn:
                    recalibrate_bn(model, images)
                calibrated_acc = _accuracy(model, val_set, dev)
            history.append(
                {
                    "step": 0,
                    "epoch": 0.0,
                    "phase": "calibrated" if calibration or config.recalibrate_bn else "initial",
                    "val_accuracy": calibrated_acc if calibrated_acc is not None else initial_acc,
                    "elapsed_s": round(time.perf_counter() - wall0, 3),
                    "cpu_s": round(time.process_time() - cpu0, 3),
                }
            )
            _write_log(log_path, history)
    torch.manual_seed((config.seed * 1_000_003 + ctx.rank) % 2**63)
    if noise is not None and noise.active:
        inject_training_noise(model, noise)
    if config.normalize_ste:
        normalize_projection_gradients(model)
    weight_noise = WeightNoise.from_spec(noise)
    clip_sigma = noise.weight_clip_sigma if noise is not None else 0.0
    hardware_loop = HardwareInTheLoop.from_spec(model, noise, seed=config.seed)
    net = ctx.wrap(model)
    batches = EpochBatches(
        train_set,
        config.batch_size,
        seed=config.seed,
        augment=config.augment,
        crop_padding=config.crop_padding,
        rank=ctx.rank,
        world_size=ctx.world_size,
    )
    spe = batches.steps_per_epoch
    optimizer = build_optimizer(model, config)
    planned = max(0, round(config.epochs * spe))
    scheduler = WarmupCosine(optimizer, max(planned, 1), config.warmup_steps, config.min_lr_ratio)
    average = WeightAverage(config.ema_decay) if config.ema_decay > 0 else None
    step = 0
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step = int(state["step"])
        planned = int(state["planned_steps"])
        set_rng_state(state["rng"][ctx.rank])
        if average is not None and state.get("weight_average"):
            average.load_state_dict(state["weight_average"])

    def elapsed() -> tuple[float, float]:
        return prior_wall + time.perf_counter() - wall0, prior_cpu + time.process_time() - cpu0

    def save(final: bool = False) -> None:
        rngs = ctx.gather_objects(rng_state())
        running = ctx.gather_objects(list(sums))
        if not ctx.is_main or checkpoint is None:
            return
        wall, cpu = elapsed()
        save_checkpoint(
            checkpoint,
            model,
            backbone=backbone,
            fp32_accuracy=fp32_accuracy,
            initial_accuracy=initial_acc,
            calibrated_accuracy=calibrated_acc,
            train_config=config.to_dict(),
            noise=noise.to_dict() if noise is not None else None,
            step=step,
            epoch=step / spe,
            planned_steps=planned,
            optimizer=optimizer.state_dict(),
            scheduler=scheduler.state_dict(),
            rng=rngs,
            history=history,
            elapsed_s=wall,
            cpu_s=cpu,
            final=final,
            running_sums=running,
            weight_average=average.state_dict() if average is not None else None,
            meta=dict(meta or {}),
        )

    sums = [0.0, 0.0, 0.0]  # loss * n, correct, n since the last log point (this rank)
    if state is not None and state.get("running_sums"):
        sums = list(state["running_sums"][ctx.rank])
    bar = tqdm(
        total=planned,
        initial=min(step, planned),
        desc="fine-tune",
        unit="step",
        disable=not (config.progress and ctx.is_main),
        dynamic_ncols=True,
    )
    timed_steps, timed_seconds = 0, 0.0
    max_planned = max(0, round(config.epochs * spe))
    stopped_early = False
    done_here = 0
    set_train_mode(model, config.bn_mode)
    blend = HashBlend(model) if config.blend_fraction > 0 else None
    taps = (
        (FeatureTaps(model, feature_layers), FeatureTaps(teacher, feature_layers))
        if config.feature_kd > 0
        else None
    )
    try:
        while step < planned:
            epoch, start = divmod(step, spe)
            for _index, images, labels in batches.iterate(epoch, start):
                if step >= planned:
                    break
                step_start = time.perf_counter()
                images, labels = images.to(dev), labels.to(dev)
                if blend is not None:
                    blend.lam = blend_factor(step, planned, config.blend_fraction, config.blend_start)
                teacher_logits = None
                if config.kd_alpha > 0 or taps is not None:
                    with torch.no_grad():
                        teacher_logits = teacher(images)
                in_loop = (
                    hardware_loop.engaged(step) if hardware_loop is not None else contextlib.nullcontext()
                )
                with weight_noise.perturbed(model), in_loop, product_precision(config.product_dtype):
                    logits = net(images)
                    loss = recovery_loss(
                        logits,
                        labels,
                        teacher_logits,
                        label_smoothing=config.label_smoothing,
                        kd_alpha=config.kd_alpha,
                        kd_temperature=config.kd_temperature,
                    )
                    if taps is not None:
                        student_out, teacher_out = (t.take() for t in taps)
                        loss = loss + config.feature_kd * feature_distillation_loss(student_out, teacher_out)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                optimizer.step()
                if clip_sigma > 0:
                    clip_weights(model, clip_sigma)
                if average is not None:  # over fully hashed steps only: restarted while the ramp blends
                    if blend is None or blend.lam >= 1.0:
                        average.update(model)
                    else:
                        average.reset()
                scheduler.step()
                step += 1
                done_here += 1
                n = labels.shape[0]
                sums[0] += float(loss.detach()) * n
                sums[1] += float((logits.detach().argmax(1) == labels).sum())
                sums[2] += n
                bar.update(1)
                bar.set_postfix(
                    loss=f"{sums[0] / sums[2]:.3f}",
                    acc=f"{sums[1] / sums[2]:.3f}",
                    lr=f"{scheduler.get_last_lr()[0]:.2e}",
                )
                timed_steps += 1
                timed_seconds += time.perf_counter() - step_start
                refit = step % spe == 0 or timed_steps == _PROBE_STEPS
                if config.time_budget_s is not None and refit and step < planned:
                    # fit the schedule to the budget: mean step time so far, one evaluation per epoch
                    per_step = timed_seconds / timed_steps
                    remaining = config.time_budget_s - elapsed()[0]
                    if val_set is not None and eval_seconds is not None:
                        per_image = eval_seconds / (eval_passes * len(val_set))
                    else:  # an eval forward costs about a third of a training step per image
                        per_image = per_step / config.batch_size / 3
                    if val_set is None:
                        eval_s = 0.0
                    elif eval_seconds is not None:
                        eval_s = eval_seconds
                    else:
                        eval_s = per_image * len(val_set)
                    per_eval_step = eval_s / (spe * config.eval_every) if config.eval_every else 0.0
                    refresh_s = _refresh_seconds(config, len(train_set), holdout_set, val_set, per_image)
                    reserve = eval_s + refresh_s
                    fit = step + int(max(0.0, remaining - reserve) / (per_step + per_eval_step))
                    planned = ctx.broadcast_object(max(step, min(max_planned, fit)))
                    scheduler.set_total_steps(planned)
                    bar.total = planned
                    bar.refresh()
                end_of_epoch = step % spe == 0
                if end_of_epoch or step >= planned:
                    loss_sum, correct, count = ctx.sum(sums)
                    ep = step / spe
                    val = val_ema = None
                    if ctx.is_main and (
                        step >= planned or (config.eval_every and round(ep) % config.eval_every == 0)
                    ):
                        eval_start = time.perf_counter()
                        val = _accuracy(model, val_set, dev)
                        if average is not None and average.updates:
                            with average.applied(model):
                                val_ema = _accuracy(model, val_set, dev)
                        eval_seconds = time.perf_counter() - eval_start
                        eval_passes = 2 if val_ema is not None else 1
                        set_train_mode(model, config.bn_mode)
                    wall, cpu = elapsed()
                    history.append(
                        {
                            "step": step,
                            "epoch": round(ep, 4),
                            "phase": "train",
                            "train_loss": round(loss_sum / max(count, 1), 5),
                            "train_accuracy": round(correct / max(count, 1), 5),
                            "val_accuracy": val,
                            "val_accuracy_ema": val_ema,
                            "lr": scheduler.get_last_lr()[0],
                            "elapsed_s": round(wall, 3),
                            "cpu_s": round(cpu, 3),
                        }
                    )
                    _write_log(log_path, history)
                    sums = [0.0, 0.0, 0.0]
                    if ctx.is_main and val is not None and config.progress:
                        averaged = f", weight average {100 * val_ema:.2f}%" if val_ema is not None else ""
                        bar.write(f"epoch {ep:.2f}: val accuracy {100 * val:.2f}%{averaged}")
                if end_of_epoch or (config.checkpoint_every and step % config.checkpoint_every == 0):
                    save()
                if stop_after is not None and done_here >= stop_after and step < planned:
                    stopped_early = True
                    break
            if stopped_early:
                break
        final_acc = live_acc = before_refresh = None
        refresh = None
        if not stopped_early:
            # the last row before any refresh row (which a resumed finished run holds)
            last = next((row for row in reversed(history) if not _is_refresh_row(row)), {})
            at_end = last.get("step") == step
            live_acc = last.get("val_accuracy") if at_end else None
            if live_acc is None and ctx.is_main:
                live_acc = _accuracy(model, val_set, dev)
            final_acc = live_acc
            if average is not None and average.updates:  # the average becomes the model
                final_acc = last.get("val_accuracy_ema") if at_end else None
                average.copy_to(model)
                if final_acc is None and ctx.is_main:
                    final_acc = _accuracy(model, val_set, dev)
            if config.final_bn_images:  # every rank: the same images give every replica the same statistics
                refresh = refresh_batchnorm(
                    model, train_set, count=min(config.final_bn_images, len(train_set)),
                    crop_padding=config.crop_padding, augment=config.augment, seed=config.seed,
                    holdout=holdout_set, device=dev,
                )  # fmt: skip
                before_refresh = final_acc
                if refresh.kept and ctx.is_main:
                    final_acc = _accuracy(model, val_set, dev)
                wall, cpu = elapsed()
                history = [row for row in history if not _is_refresh_row(row)]
                history.append(
                    {
                        "step": step,
                        "epoch": round(step / spe, 4),
                        "phase": "bn_refresh" if refresh.kept else "bn_refresh_rejected",
                        "val_accuracy": final_acc,
                        "elapsed_s": round(wall, 3),
                        "cpu_s": round(cpu, 3),
                    }
                )
                _write_log(log_path, history)
        save(final=not stopped_early)
    finally:
        bar.close()
        if blend is not None:
            blend.remove()
        for tap in taps or ():
            tap.close()
        model.eval()
    wall, cpu = elapsed()
    ctx.close()
    return TrainResult(
        model=model,
        fp32_accuracy=fp32_accuracy,
        initial_accuracy=initial_acc,
        calibrated_accuracy=calibrated_acc,
        final_accuracy=final_acc,
        steps=step,
        elapsed_s=wall,
        cpu_s=cpu,
        calibration=calibration,
        history=history,
        stopped_early=stopped_early,
        steps_per_epoch=spe,
        final_live_accuracy=live_acc,
        accuracy_before_bn_refresh=before_refresh,
        bn_refresh=refresh,
    )
