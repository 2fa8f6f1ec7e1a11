"""``TrainConfig``: every knob of a recovery run (optimiser, schedule, losses, calibration, noise).

Recipes are named presets of the loss/calibration fields (:data:`RECIPES`); ``TrainConfig.for_recipe``
applies one and then any explicit changes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Self

from aimc_lsh.kernels.precision import check_product_dtype

OPTIMIZERS = ("adam", "adamw")
BN_MODES = ("train", "freeze")

RECIPES: dict[str, dict[str, Any]] = {
    "ce": {"kd_alpha": 0.0, "calibrate_layers": False, "recalibrate_bn": False, "blend_fraction": 0.0},
    "kd": {"kd_alpha": 0.9, "calibrate_layers": False, "recalibrate_bn": False, "blend_fraction": 0.0},
    "calib": {"kd_alpha": 0.0, "calibrate_layers": True, "recalibrate_bn": True, "epochs": 0},
    "calib_kd": {"kd_alpha": 0.9, "calibrate_layers": True, "recalibrate_bn": True, "blend_fraction": 0.0},
    "blend_kd": {"kd_alpha": 0.9, "calibrate_layers": False, "recalibrate_bn": False, "blend_fraction": 0.6},
}
"""Named presets: plain cross-entropy (``ce``), knowledge distillation from the FP32 model (``kd``),
layer-wise calibration only (``calib``, no end-to-end epochs), calibration followed by distillation
(``calib_kd``) and gradual hashing with distillation (``blend_kd``, the default: it recovered the most
accuracy per CPU-minute on hashed ResNet-20, see docs/training.md)."""

DEFAULT_RECIPE = "blend_kd"


@dataclass
class TrainConfig:
    """Configuration of a fine-tuning (recovery) run of a patched model."""

    epochs: float = 10.0
    """End-to-end training epochs (fractions allowed, counted in optimiser steps); 0 skips training."""

    time_budget_s: float | None = None
    """Wall-clock budget of the end-to-end phase in seconds; the cosine schedule is then fitted to the
    number of steps that fit (measured on the first steps). None: train for ``epochs``."""

    batch_size: int = 64
    """Global batch size (split evenly over DDP processes; must be divisible by the world size)."""

    lr_weights: float = 1e-3
    """Learning rate of every parameter that is not a projection ``P``."""

    lr_projection: float = 1e-4
    """Learning rate of learned projections ``P`` (``learned_projection`` kernels)."""

    optimizer: str = "adam"
    """``adam`` or ``adamw``."""

    weight_decay: float = 0.0
    """Weight decay (decoupled for AdamW, L2 for Adam); never applied to projections."""

    warmup_steps: int = 20
    """Linear learning-rate warm-up steps before the cosine decay."""

    min_lr_ratio: float = 0.0
    """Final learning rate as a fraction of the initial one at the end of the cosine."""

    label_smoothing: float = 0.1
    """Label smoothing of the cross-entropy term."""

    kd_alpha: float = 0.9
    """Weight of the distillation term (KL to the FP32 teacher's softened logits); 0 disables it."""

    kd_temperature: float = 4.0
    """Softmax temperature of the distillation term."""

    feature_kd: float = 0.0
    """Weight of feature distillation (:func:`aimc_lsh.train.losses.feature_distillation_loss`): the
    mean over ``feature_kd_layers`` of each module's output error relative to the FP32 teacher's,
    ``||s - t||^2 / ||t||^2`` over the batch, added to the loss; 0 disables it."""

    feature_kd_layers: tuple[str, ...] = ()
    """Module paths (the same in student and teacher) whose outputs feature distillation matches; empty:
    every direct child of the model that holds a convolution or linear layer, except the last (ResNet-20:
    ``conv1``, ``layer1``, ``layer2``, ``layer3``; the classifier's output is what ``kd_alpha`` matches)."""

    bn_mode: str = "train"
    """BatchNorm during training: ``train`` (batch statistics, running stats updated) or ``freeze``
    (running statistics used and kept; affine parameters still learn)."""

    augment: bool = True
    """Random crop (zero padding ``crop_padding``) and horizontal flip of training batches."""

    crop_padding: int = 4
    """Padding of the random crop in pixels (CIFAR recipe: 4)."""

    blend_fraction: float = 0.6
    """Gradual hashing (:mod:`aimc_lsh.train.anneal`): over this fraction of the training steps, ramp the
    blend of exact and hashed layer outputs from ``blend_start`` to fully hashed; 0 disables."""

    blend_start: float = 0.0
    """Initial weight of the hashed output in the blend (0: start from the exact network)."""

    ema_decay: float = 0.0
    """Exponential moving average of the weights and BatchNorm statistics (:mod:`aimc_lsh.train.averaging`)
    with this decay, in [0, 1); 0 disables. It is kept over the fully hashed steps (restarted while the
    ``blend_fraction`` ramp still blends), evaluated beside the live weights (``val_accuracy_ema`` in the
    log), and becomes the returned and saved model at the end."""

    final_bn_images: int = 0
    """After training (and after the weight average became the model), re-estimate the BatchNorm statistics
    on this many training images, augmented as in training (:mod:`aimc_lsh.train.bn_refresh`); 0 disables.
    Given held-out images (``fine_tune(holdout_set=...)``), the new statistics are kept only if the model
    classifies those at least as well with them; without, they are kept. A time budget reserves the time."""

    product_dtype: str = "float32"
    """Precision of the tiled layers' projection and code-agreement products in the training steps:
    ``"float32"`` or ``"bfloat16"`` (:mod:`aimc_lsh.kernels.precision`: agreements stay exact, the
    projections' operands are rounded to 8 significant bits, their gradients run in bfloat16; about 1.6x
    faster steps with tiles of 4 channels on a CPU with AVX512-BF16 or AMX, slower elsewhere: the trainer
    warns). Evaluation always computes in float32."""

    normalize_ste: bool = False
    """Scale the input codes' straight-through gradient by 1 / ||x_patch|| (as if x were normalised before
    hashing, like the hackathon kernel); forward unchanged. See :mod:`aimc_lsh.train.ste_scale`."""

    recalibrate_bn: bool = False
    """Before training, re-estimate BatchNorm running statistics of the hashed model on calibration images."""

    calibrate_layers: bool = False
    """Before training, layer-wise calibration: fit every hashed layer to the FP32 layer's output."""

    calib_images: int = 512
    """Training images used by BN re-estimation and layer-wise calibration."""

    calib_steps: int = 60
    """Optimiser steps per layer in layer-wise calibration."""

    calib_lr: float = 1e-3
    """Learning rate of layer-wise calibration (weights; projections use ``lr_projection / lr_weights``
    times it)."""

    calib_batch_size: int = 64
    """Batch size of layer-wise calibration steps."""

    eval_every: int = 1
    """Evaluate on the validation set every this many epochs (and at the end); 0: only at the end."""

    checkpoint_every: int = 50
    """Write the checkpoint every this many optimiser steps (and at every epoch end)."""

    seed: int = 0
    """Seed of batch order, augmentation and training noise."""

    progress: bool = True
    """Show a tqdm progress bar (rank 0 only)."""

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; allowed: {', '.join(OPTIMIZERS)}")
        if self.bn_mode not in BN_MODES:
            raise ValueError(f"unknown bn_mode {self.bn_mode!r}; allowed: {', '.join(BN_MODES)}")
        numbers = ("epochs", "lr_weights", "lr_projection", "weight_decay", "label_smoothing", "kd_alpha")
        for name in (*numbers, "feature_kd", "calib_lr"):  # "not value >= 0": NaN fails too
            value = getattr(self, name)
            if not isinstance(value, int | float) or isinstance(value, bool) or not value >= 0:
                raise ValueError(f"{name} must be a non-negative number, got {value!r}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        self.feature_kd_layers = tuple(self.feature_kd_layers)  # a list after a JSON round trip
        if not all(isinstance(p, str) and p for p in self.feature_kd_layers):
            raise ValueError(f"feature_kd_layers must be module paths, got {self.feature_kd_layers!r}")
        if not 0.0 <= self.kd_alpha <= 1.0:
            raise ValueError(f"kd_alpha must be in [0, 1], got {self.kd_alpha}")
        if not self.kd_temperature > 0:
            raise ValueError(f"kd_temperature must be > 0, got {self.kd_temperature}")
        if not 0.0 <= self.blend_fraction <= 1.0 or not 0.0 <= self.blend_start <= 1.0:
            raise ValueError(
                f"blend_fraction and blend_start must be in [0, 1], "
                f"got {self.blend_fraction} and {self.blend_start}"
            )
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        check_product_dtype(self.product_dtype)
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if self.time_budget_s is not None and not self.time_budget_s > 0:
            raise ValueError(f"time_budget_s must be > 0 or None, got {self.time_budget_s}")
        for name in ("batch_size", "calib_images", "calib_batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        counts = ("warmup_steps", "calib_steps", "eval_every", "checkpoint_every", "crop_padding")
        for name in (*counts, "final_bn_images"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{name} must be a non-negative int, got {value!r}")

    @classmethod
    def for_recipe(cls, recipe: str = DEFAULT_RECIPE, **changes: Any) -> Self:
        """Build the config of a named recipe (see :data:`RECIPES`), then apply ``changes``."""
        if recipe not in RECIPES:
            raise ValueError(f"unknown recipe {recipe!r}; allowed: {', '.join(RECIPES)}")
        return cls(**{**RECIPES[recipe], **changes})

    def replace(self, **changes: Any) -> Self:
        """Return a validated copy with ``changes`` applied."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ValueError(
                f"TrainConfig has no field(s) {', '.join(unknown)}; fields: {', '.join(sorted(known))}"
            )
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of the fields."""
        return dataclasses.asdict(self)

    def result_settings(self) -> dict[str, Any]:
        """:meth:`to_dict` without the settings of a feature that is off (what checkpoint tags hash).

        The feature-distillation fields are left out while ``feature_kd`` is 0, ``ema_decay`` and
        ``final_bn_images`` while they are 0, and ``product_dtype`` while it is float32: they cannot change
        the run then, and configs written before they existed keep their tags.
        """
        settings = self.to_dict()
        if not self.feature_kd:
            del settings["feature_kd"], settings["feature_kd_layers"]
        if not self.ema_decay:
            del settings["ema_decay"]
        if not self.final_bn_images:
            del settings["final_bn_images"]
        if self.product_dtype == "float32":
            del settings["product_dtype"]
        return settings

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """Inverse of :meth:`to_dict`; unknown keys raise."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"TrainConfig has no field(s) {', '.join(unknown)}")
        return cls(**data)
