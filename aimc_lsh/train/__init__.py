"""Accuracy recovery of patched models: fine-tuning, distillation, layer-wise calibration, HWA, DDP.

Public API:
    fine_tune(model, train_set, config, *, teacher, val_set, noise, checkpoint, resume, log_csv, ...)
        -> TrainResult
    TrainConfig (+ RECIPES, DEFAULT_RECIPE, TrainConfig.for_recipe(name, **changes))
    calibrate_layers(student, teacher, images, ...), recalibrate_bn(model, images),
        layer_reconstruction_errors(student, teacher, images, paths)
    refresh_batchnorm(model, train_set, count, holdout, ...) -> BatchNormRefresh (the statistics
        re-estimated after training, kept if held-out images agree; TrainConfig.final_bn_images)
    recovery_loss(...), distillation_loss(...)
    NoiseSpec, noise_spec_for_device(name, t_inference), inject_training_noise(model, spec),
        hardware_loop_spec(profile, t, conventional) (the default HWA: arrays in the loop, clipping),
        remove_training_noise(model), WeightNoise (conventional HWA), relative_weight_noise(noise_model, t),
        device_weights(noise_model, weight, t) (a weight as the device holds it at t),
        clip_weights(model, sigma) (layer-Gaussian weight clipping),
        accuracy_under_noise(model, data, spec, repeats) -> NoisyAccuracy
    save_checkpoint(path, model, **fields), load_checkpoint(path), model_from_checkpoint(ckpt, model),
        training_progress(path) (finished?, steps done, steps planned), training_finished(path),
        train_once(path, run) (one process trains, others wait on <path>.lock)
    build_optimizer, parameter_groups, WarmupCosine, EpochBatches, DistContext,
        WeightAverage (exponential moving average of the weights; TrainConfig.ema_decay)
    default_checkpoint(...) -> Path (trained, cached hashed ResNet-20 for studies)
    merge_aware_fine_tune(model, train_set, merge_config, config, teacher) -> MergeAwareResult
        (LSH neuron merging with bucket-cohesion training and Mongoose-style rehashing; MergeAwareConfig)
"""

from aimc_lsh.train.averaging import WeightAverage
from aimc_lsh.train.batches import EpochBatches
from aimc_lsh.train.bn_refresh import BatchNormRefresh, refresh_batchnorm
from aimc_lsh.train.calibration import (
    LayerCalibration,
    batchnorm_layers,
    calibrate_layers,
    layer_reconstruction_errors,
    recalibrate_bn,
)
from aimc_lsh.train.checkpoint import (
    checkpoint_kind,
    digital_network,
    load_checkpoint,
    model_from_checkpoint,
    patch_like,
    save_checkpoint,
    train_once,
    training_finished,
    training_progress,
)
from aimc_lsh.train.config import DEFAULT_RECIPE, RECIPES, TrainConfig
from aimc_lsh.train.default import default_checkpoint, default_checkpoint_path
from aimc_lsh.train.distributed import DistContext
from aimc_lsh.train.losses import distillation_loss, recovery_loss
from aimc_lsh.train.merge_aware import MergeAwareConfig, MergeAwareResult, merge_aware_fine_tune
from aimc_lsh.train.noise import (
    DEFAULT_WEIGHT_CLIP_SIGMA,
    NoiseSpec,
    NoisyTrainingStages,
    WeightNoise,
    clip_weights,
    device_weights,
    hardware_loop_spec,
    inject_training_noise,
    noise_spec_for_device,
    relative_weight_noise,
    remove_training_noise,
)
from aimc_lsh.train.optim import WarmupCosine, build_optimizer, parameter_groups, projection_parameters
from aimc_lsh.train.robustness import NoisyAccuracy, accuracy_under_noise
from aimc_lsh.train.trainer import LOG_FIELDS, TrainResult, fine_tune

__all__ = [
    "BatchNormRefresh",
    "DEFAULT_RECIPE",
    "DEFAULT_WEIGHT_CLIP_SIGMA",
    "LOG_FIELDS",
    "RECIPES",
    "DistContext",
    "EpochBatches",
    "LayerCalibration",
    "MergeAwareConfig",
    "MergeAwareResult",
    "NoiseSpec",
    "NoisyAccuracy",
    "NoisyTrainingStages",
    "TrainConfig",
    "TrainResult",
    "WarmupCosine",
    "WeightAverage",
    "WeightNoise",
    "clip_weights",
    "device_weights",
    "accuracy_under_noise",
    "build_optimizer",
    "batchnorm_layers",
    "calibrate_layers",
    "checkpoint_kind",
    "default_checkpoint",
    "default_checkpoint_path",
    "digital_network",
    "distillation_loss",
    "fine_tune",
    "hardware_loop_spec",
    "inject_training_noise",
    "layer_reconstruction_errors",
    "load_checkpoint",
    "merge_aware_fine_tune",
    "model_from_checkpoint",
    "noise_spec_for_device",
    "parameter_groups",
    "patch_like",
    "projection_parameters",
    "recalibrate_bn",
    "recovery_loss",
    "refresh_batchnorm",
    "relative_weight_noise",
    "remove_training_noise",
    "save_checkpoint",
    "train_once",
    "training_finished",
    "training_progress",
]
