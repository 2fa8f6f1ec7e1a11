"""Fine-tune a hashed (or conventional analog) model to recover accuracy; writes a resumable checkpoint.

Examples (2-core CPU, one thread)::

    # hashed ResNet-20, k = 256, default recipe (blend_kd: gradual hashing + distillation), 30 min
    python studies/finetune.py --k 256 --time-budget 30 --checkpoint runs/rp256.pt --log-csv runs/rp256.csv

    # learned projections, per-layer k = out-channels (maximises the bitbybit energy term)
    python studies/finetune.py --kernel learned_projection --k out --epochs 10 --checkpoint runs/lp_out.pt

    # hardware-aware training: the hashed layers on PCM arrays at 1 day of drift in every training forward
    python studies/finetune.py --k 256 --device-profile pcm --checkpoint runs/rp256_hwa.pt

    # conventional analog baseline (real weights), HWA: PCM arrays at 1 day in the loop + clipping at 3 std
    python studies/finetune.py --conventional --device-profile pcm --epochs 4 --checkpoint runs/conv_hwa.pt

    # two processes with DDP (gloo on CPU, nccl on GPU)
    torchrun --nproc_per_node 2 studies/finetune.py --k 256 --epochs 2 --checkpoint runs/ddp.pt

    # smoke run on the embedded digits dataset (seconds)
    python studies/finetune.py --model digits_cnn --k 32 --epochs 3 --no-augment

Interrupt any run and add ``--resume`` to continue it exactly.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aimc_lsh.data import CALIBRATION_IMAGES, ImageTensorDataset  # noqa: E402  (CALIBRATION_IMAGES: PQ, fits)
from aimc_lsh.hardware.programming import DRIFT_REFERENCES  # noqa: E402
from aimc_lsh.kernels import PRODUCT_DTYPES, HashConfig  # noqa: E402
from aimc_lsh.studies.cli import check_output_files, positive_int  # noqa: E402
from aimc_lsh.train import (  # noqa: E402
    DEFAULT_WEIGHT_CLIP_SIGMA,
    RECIPES,
    NoiseSpec,
    TrainConfig,
    fine_tune,
    noise_spec_for_device,
)
from aimc_lsh.train.config import BN_MODES, DEFAULT_RECIPE, OPTIMIZERS  # noqa: E402
from aimc_lsh.train.devices import DEVICE_NAMES  # noqa: E402
from aimc_lsh.train.noise import HASHED_PLACEMENTS  # noqa: E402

TRAIN_DEVICES = ("cpu", "cuda")
"""torch device types ``--device`` accepts (``cuda:N`` picks a GPU)."""


def hash_length_arg(text: str) -> str:
    """The ``--k`` type: ``out`` or a positive integer, kept as text (the summary reports it as given).

    Raises:
        argparse.ArgumentTypeError: For anything else.

    """
    if text != "out":
        try:
            value = int(text)
        except ValueError:
            value = 0
        if value < 1:
            raise argparse.ArgumentTypeError(f"must be a positive integer or 'out', got {text!r}")
    return text


def per_layer_out_k(model: torch.nn.Module, skip: list[str]) -> dict[str, dict[str, int]]:
    """Overrides giving every patchable layer ``k = out_channels`` (``out_features`` for linear layers)."""
    from aimc_lsh.nn import patchable_layers

    out = {}
    for path, module in patchable_layers(model):
        if any(path == s or path.startswith(s + ".") for s in skip):
            continue
        n_out = module.out_channels if isinstance(module, torch.nn.Conv2d) else module.out_features
        out[path] = {"hash_length": int(n_out)}
    return out


def build_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("model")
    g.add_argument("--model", default="cifar10_resnet20", help="backbone name (aimc_lsh.models)")
    g.add_argument("--weights", default=None, help="pretrained weights file of the backbone")
    g.add_argument(
        "--kernel",
        default="random_projection",
        help="Registered kernel: random_projection, learned_projection or product_quantization (PQ: --k is "
        "the number of centroids K; codebooks are calibrated on the first 512 training images first)",
    )
    g.add_argument(
        "--k", type=hash_length_arg, default="256",
        help="hash length for every layer, or 'out' for k = out-channels",
    )  # fmt: skip
    g.add_argument("--orthogonal", action="store_true", help="orthogonal projection rows")
    g.add_argument("--ste", default="identity", help="sign STE: identity or clipped")
    g.add_argument("--skip", nargs="*", default=[], help="module paths left digital")
    g.add_argument("--conventional", action="store_true", help="no hashing: conventional baseline")
    g.add_argument(
        "--input-tile-size",
        type=positive_int,
        default=None,
        metavar="CHANNELS",
        help="input channels per input tile of every hashed layer, each tile with its own projection and k "
        "bits (the partial outputs are summed); the bitbybit HDOPs do not change (default: one tile)",
    )
    g.add_argument(
        "--fit-projections",
        type=float,
        default=None,
        metavar="ENERGY",
        help="draw each hashed layer's projection inside the principal subspace of its inputs holding this "
        f"share in (0, 1] of their second moment, measured on the first {CALIBRATION_IMAGES} training images "
        "(random_projection / learned_projection; measured with 0.9 and --orthogonal: docs/training.md)",
    )
    g.add_argument(
        "--fit-only-where-better",
        action="store_true",
        help="with --fit-projections: keep a layer's projection unless the fitted one estimates its outputs "
        "better on those images (the first convolution and the classifier of ResNet-20 keep theirs; "
        "what --checkpoint default does)",
    )
    g.add_argument(
        "--center-inputs",
        action="store_true",
        help="hash each layer's input minus its mean per channel (measured on the first "
        f"{CALIBRATION_IMAGES} training images) and add the mean's exact contribution digitally: less "
        "estimation noise for post-ReLU inputs (random_projection / learned_projection; docs/training.md)",
    )
    g.add_argument(
        "--comparator-thresholds",
        action="store_true",
        help="learn one comparator threshold per hash bit (input bit j = [cos(p_j, x) >= t_j], a trimmed "
        "sense-amplifier reference; starts at 0 = plain SimHash; trained with the projections' learning "
        "rate; random_projection / learned_projection; measured 2026-12-06: no gain, lower on PCM; "
        "docs/training.md)",
    )
    g.add_argument("--init-from", default=None, help="start from the weights of this checkpoint")
    g = p.add_argument_group("data")
    g.add_argument("--data-root", default=None, help="CIFAR root (default $AIMC_LSH_DATA)")
    g.add_argument("--train-root", default=None, help="CIFAR root for training data")
    g.add_argument(
        "--train-limit", type=positive_int, default=None, help="use only the first N training images"
    )
    g.add_argument(
        "--no-download", action="store_true",
        help="never download: without --data-root / $AIMC_LSH_DATA, CIFAR is read from the cache "
        "($AIMC_LSH_CACHE/data or ~/.cache/aimc_lsh/data) and fetched there with checksums on first use, "
        "as the pretrained weights are",
    )  # fmt: skip
    g = p.add_argument_group("training")
    g.add_argument("--recipe", default=DEFAULT_RECIPE, choices=sorted(RECIPES))
    g.add_argument("--epochs", type=float, default=None)
    g.add_argument(
        "--time-budget", type=float, default=None,
        help="minutes (wall clock) for the whole run; without --epochs the budget alone sets the length "
        "(otherwise the run stops at whichever comes first)",
    )  # fmt: skip
    g.add_argument(
        "--batch-size", type=int, default=None,
        help="images per optimiser step (default 64; at the same epochs 16 and 32 recovered 1.5-3.4 points "
        "more in three k = 256 runs, and 8 gave the best 60-CPU-minute run: docs/training.md)",
    )  # fmt: skip
    g.add_argument("--lr-weights", type=float, default=None, help="weights learning rate (default 1e-3)")
    g.add_argument(
        "--lr-projection", type=float, default=None,
        help="learning rate of learned projections (default 1e-4; 3e-4 recovered 5-8 points more in three "
        "k = 256 runs, 1e-3 was unstable: docs/training.md)",
    )  # fmt: skip
    g.add_argument("--optimizer", choices=OPTIMIZERS, default=None)
    g.add_argument("--weight-decay", type=float, default=None)
    g.add_argument("--warmup-steps", type=int, default=None)
    g.add_argument("--label-smoothing", type=float, default=None)
    g.add_argument("--kd-alpha", type=float, default=None)
    g.add_argument("--kd-temperature", type=float, default=None)
    g.add_argument(
        "--feature-kd", type=float, default=None,
        help="weight of feature distillation: each --feature-kd-layers module's output error relative to "
        "the FP32 model's (default 0: off)",
    )  # fmt: skip
    g.add_argument(
        "--feature-kd-layers", nargs="+", default=None,
        help="module paths feature distillation matches (default: every top-level child with a "
        "convolution or linear layer except the last; ResNet-20: conv1 layer1 layer2 layer3)",
    )  # fmt: skip
    g.add_argument("--bn-mode", choices=BN_MODES, default=None)
    g.add_argument("--calib-images", type=int, default=None)
    g.add_argument("--calib-steps", type=int, default=None)
    g.add_argument(
        "--blend-fraction", type=float, default=None, help="gradual hashing ramp (fraction of steps)"
    )
    g.add_argument("--blend-start", type=float, default=None, help="initial hashed weight of the blend")
    g.add_argument("--normalize-ste", action="store_true", help="scale-aware STE for input codes")
    g.add_argument(
        "--ema-decay", type=float, default=None, metavar="DECAY",
        help="keep an exponential moving average of the weights over the fully hashed steps with this decay "
        "in [0, 1) (e.g. 0.999), evaluate it beside them and end with it (default 0: off)",
    )  # fmt: skip
    g.add_argument(
        "--final-bn-images", type=int, default=None, metavar="N",
        help="after training, re-estimate the BatchNorm statistics on the first N training images, "
        "augmented as in training; with --holdout-root they are kept only if the held-out images agree "
        "(default 0: off)",
    )  # fmt: skip
    g.add_argument(
        "--holdout-root", default=None,
        help="CIFAR root whose last --holdout-images training images decide whether --final-bn-images keeps "
        "its statistics; must differ from the training root (e.g. the JPEG full set beside the exact "
        "subset, whose training images are the first 1,017 of each batch)",
    )  # fmt: skip
    g.add_argument(
        "--holdout-images", type=positive_int, default=1000, help="held-out images (default %(default)s)"
    )
    g.add_argument(
        "--product-dtype", choices=list(PRODUCT_DTYPES), default=None,
        help="precision of the tiled layers' projection and code-agreement products in the training steps "
        "(bfloat16: about 1.6x faster steps with --input-tile-size 4 on a CPU with AVX512-BF16 or AMX, "
        "slower elsewhere, with a warning; agreements stay exact, evaluation stays float32; default float32)",
    )  # fmt: skip
    g.add_argument("--no-augment", action="store_true")
    g.add_argument("--seed", type=int, default=0)
    g = p.add_argument_group("hardware-aware training")
    g.add_argument("--device-profile", default=None, help="pcm, hermes, reram or ideal: sample its noise")
    g.add_argument("--hwa-time", type=float, default=86_400.0, help="drift time (s) of the noise")
    g.add_argument(
        "--hwa-scale", type=float, default=1.0,
        help="multiply the sampled noise (--weight-noise additive, --sa-offset, --sa-noise) by this",
    )  # fmt: skip
    g.add_argument(
        "--weight-noise", choices=("hardware", "device", "additive"), default="hardware",
        help="hardware = every training forward on the simulated arrays of the --device-profile at "
        "--hwa-time (programming noise, drift, per-read noise, ADC, sense amplifiers, compensation; "
        "gradients straight through; hashed layers in --hwa-placement; 1.7-2.1x slower per step); "
        "additive = Gaussian noise of the measured relative spread (times --hwa-scale): on P and the "
        "codes of hashed layers, times each layer's max |W| for conventional ones; device "
        "(--conventional only) = every step, the weights as the device holds them at --hwa-time (aihwkit "
        "programming noise, drift, read noise, ideal compensation). Default: %(default)s",
    )  # fmt: skip
    g.add_argument(
        "--hwa-drift-reference", choices=DRIFT_REFERENCES, default="random_sign",
        help="--weight-noise hardware: the arrays' drift-compensation read-out (evaluate with the same "
        "drift_sweep.py --drift-reference). Default: %(default)s",
    )  # fmt: skip
    g.add_argument(
        "--hwa-placement", choices=HASHED_PLACEMENTS, default="codes_on_array",
        help="hashed models, --weight-noise hardware: where the hashed layers compute in the loop "
        "(evaluate with the same drift_sweep.py --placements). Default: %(default)s",
    )  # fmt: skip
    g.add_argument(
        "--weight-clip", type=float, default=None,
        help="conventional layers: clip weights to this many std after every step (0: off). Default: 3 "
        "with --conventional --device-profile (the HWA recipe), else off",
    )  # fmt: skip
    sampled = (
        "relative to the RMS of each hashed tile's projections; sampled noise of hashed models with "
        "--weight-noise additive or --device-profile ideal (with --weight-noise hardware the arrays use the "
        "profile's own comparators)"
    )
    g.add_argument("--sa-offset", type=float, default=0.0, help=f"sense-amp offset std per column, {sampled}")
    g.add_argument("--sa-noise", type=float, default=0.0, help=f"sense-amp noise std per decision, {sampled}")
    g = p.add_argument_group("output")
    g.add_argument("--checkpoint", default=None, help="checkpoint file (written during the run)")
    g.add_argument("--resume", action="store_true", help="continue --checkpoint if it exists")
    g.add_argument("--log-csv", default=None, help="CSV training log")
    g.add_argument("--summary-json", default=None, help="write a JSON summary here")
    g.add_argument("--device", default="cpu", help="cpu or cuda")
    g.add_argument("--threads", type=positive_int, default=None, help="torch.set_num_threads")
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


BUDGET_ONLY_EPOCHS = 1000.0
"""Epoch cap of a ``--time-budget`` run without ``--epochs``: far above what any budget reaches, so the
budget sets the length (TrainConfig's default of 10 epochs would end a 30-minute run after ~10 minutes
on a fast host)."""


def train_config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The TrainConfig of the recipe with the explicit options applied."""
    names = {
        "epochs": "epochs", "batch_size": "batch_size", "lr_weights": "lr_weights",
        "lr_projection": "lr_projection", "optimizer": "optimizer", "weight_decay": "weight_decay",
        "warmup_steps": "warmup_steps", "label_smoothing": "label_smoothing", "kd_alpha": "kd_alpha",
        "kd_temperature": "kd_temperature", "bn_mode": "bn_mode", "calib_images": "calib_images",
        "calib_steps": "calib_steps", "blend_fraction": "blend_fraction", "blend_start": "blend_start",
        "feature_kd": "feature_kd", "ema_decay": "ema_decay", "final_bn_images": "final_bn_images",
        "product_dtype": "product_dtype",
    }  # fmt: skip
    changes = {field: getattr(args, arg) for arg, field in names.items() if getattr(args, arg) is not None}
    if args.time_budget is not None:
        changes["time_budget_s"] = 60.0 * args.time_budget
        if "epochs" not in RECIPES[args.recipe]:  # calib: no end-to-end epochs, whatever the budget
            changes.setdefault("epochs", BUDGET_ONLY_EPOCHS)
    if args.feature_kd_layers is not None:
        changes["feature_kd_layers"] = tuple(args.feature_kd_layers)
    if args.normalize_ste:
        changes["normalize_ste"] = True
    if args.no_augment:
        changes["augment"] = False
    if args.conventional:
        changes.setdefault("calibrate_layers", False)
    changes["seed"] = args.seed
    changes["progress"] = not args.quiet
    return TrainConfig.for_recipe(args.recipe, **changes)


def check_projection_fit(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Stop with one line when a projection option (fit, centring, thresholds, input tiles) cannot apply."""
    simhash = ("random_projection", "learned_projection")
    for flag, asked in (
        ("--center-inputs", args.center_inputs),
        ("--comparator-thresholds", args.comparator_thresholds),
        ("--input-tile-size", args.input_tile_size is not None),
    ):
        if asked and (args.conventional or args.kernel not in simhash):
            parser.error(f"{flag} needs --kernel {' or '.join(simhash)} (not --conventional)")
    if args.center_inputs and args.fit_projections is not None:
        parser.error(
            "--center-inputs and --fit-projections exclude each other (the fit measures uncentred inputs)"
        )
    if args.fit_projections is None:
        if args.fit_only_where_better:
            parser.error("--fit-only-where-better needs --fit-projections ENERGY")
        return
    from aimc_lsh.kernels.subspace import check_energy
    from aimc_lsh.nn.projection_fit import FITTABLE_KERNELS

    try:
        check_energy(args.fit_projections, "--fit-projections")
    except ValueError as err:
        parser.error(str(err))
    if args.conventional or args.kernel not in FITTABLE_KERNELS:
        parser.error(f"--fit-projections needs --kernel {' or '.join(FITTABLE_KERNELS)} (not --conventional)")
    if args.init_from:
        parser.error(
            "--fit-projections and --init-from exclude each other (the checkpoint's projections win)"
        )


def check_hwa_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Stop (exit 2, one line) on hardware-aware-training options that would be ignored or clash."""
    if args.weight_clip is not None and not args.device_profile:
        parser.error("--weight-clip is part of hardware-aware training: give --device-profile too "
                     "(--device-profile ideal clips without noise)")  # fmt: skip
    if args.device_profile and args.weight_noise == "device" and not args.conventional:
        parser.error("--weight-noise device samples conventional weights: use it with "
                     "--conventional (hashed models: hardware or additive)")  # fmt: skip
    if not (math.isfinite(args.hwa_scale) and args.hwa_scale >= 0.0):
        parser.error(f"--hwa-scale must be a finite number >= 0, got {args.hwa_scale}")
    for name in ("sa_offset", "sa_noise"):
        value, flag = getattr(args, name), "--" + name.replace("_", "-")
        if not value >= 0.0:  # also NaN
            parser.error(f"{flag} must be >= 0, got {value}")
        if value == 0.0:
            continue
        if not args.device_profile or args.conventional:
            parser.error(
                f"{flag} is sampled sense-amp noise of hashed layers during hardware-aware training: "
                "give --device-profile, and no --conventional (conventional layers have no sense amps)"
            )
        if args.weight_noise == "hardware" and args.device_profile != "ideal":
            parser.error(
                f"{flag} would add sampled noise on top of the simulated arrays' own comparators "
                f"(--weight-noise hardware, the default): use --weight-noise additive, or set the "
                f"comparators in the {args.device_profile!r} profile's sense_amp"
            )


def hash_config_from_args(args: argparse.Namespace) -> HashConfig:
    """The ``HashConfig`` every hashed layer starts from (``--k out`` layers get their k as overrides).

    Raises:
        ValueError: For a kernel, STE or option combination ``HashConfig`` does not allow.

    """
    return HashConfig(
        kernel=args.kernel,
        hash_length=256 if args.k == "out" else int(args.k),
        orthogonal=args.orthogonal,
        ste=args.ste,
        seed=args.seed,
        center_inputs=args.center_inputs,
        comparator_thresholds=args.comparator_thresholds,
        input_tile_size=args.input_tile_size,
    )


def check_model_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Stop (exit 2, one line) on a backbone, kernel, STE, torch device or device profile that does not exist.

    Runs before any data or weights are loaded, so a typo costs nothing.
    """
    from aimc_lsh.models import backbone_spec

    try:
        backbone_spec(args.model)
        if not args.conventional:
            hash_config_from_args(args)
    except ValueError as err:
        parser.error(str(err))
    try:
        device = torch.device(args.device)
    except RuntimeError:
        device = None
    if device is None or device.type not in TRAIN_DEVICES:
        parser.error(f"unknown --device {args.device!r}; allowed: {', '.join(TRAIN_DEVICES)} or cuda:N")
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: torch sees no CUDA device here; use --device cpu")
    profiles = ("ideal", *DEVICE_NAMES)
    if args.device_profile is not None and args.device_profile not in profiles:
        parser.error(f"unknown --device-profile {args.device_profile!r}; allowed: {', '.join(profiles)}")


def noise_from_args(args: argparse.Namespace) -> NoiseSpec | None:
    """The training noise of ``--device-profile`` (None without one), scaled and placed as the options say.

    Raises:
        ValueError: For a ``--hwa-time`` the profile's noise model cannot be measured at.

    """
    if not args.device_profile:
        return None
    try:
        noise = noise_spec_for_device(args.device_profile, args.hwa_time, sa_offset_std=args.sa_offset,
                                      sa_noise_std=args.sa_noise)  # fmt: skip
    except ValueError as err:
        raise ValueError(
            f"--hwa-time {args.hwa_time:g} (--device-profile {args.device_profile}): {err}"
        ) from None
    scaled = {k: v * args.hwa_scale if k.endswith("_std") else v for k, v in noise.to_dict().items()}
    if args.weight_noise == "hardware" and args.device_profile != "ideal":
        # the arrays draw the device's errors themselves: no sampled noise on top
        scaled.update({"hardware_profile": args.device_profile, "weight_t_inference": args.hwa_time,
                       "hardware_placement": args.hwa_placement,
                       "hardware_drift_reference": args.hwa_drift_reference, "projection_std": 0.0,
                       "code_std": 0.0, "weight_std": 0.0})  # fmt: skip
    elif args.conventional and args.device_profile != "ideal" and args.weight_noise == "device":
        scaled.update({"weight_device": args.device_profile, "weight_t_inference": args.hwa_time})
    clip = DEFAULT_WEIGHT_CLIP_SIGMA if args.conventional else 0.0
    scaled["weight_clip_sigma"] = clip if args.weight_clip is None else args.weight_clip
    return NoiseSpec.from_dict(scaled)


def held_out_images(
    parser: argparse.ArgumentParser,
    args: argparse.Namespace,
    dataset: str,
    train_root: Path | None,
    download: bool,
) -> ImageTensorDataset | None:
    """The last ``--holdout-images`` training images under ``--holdout-root``, or None without it."""
    if args.holdout_root is None:
        return None
    if not args.final_bn_images:
        parser.error("--holdout-root only decides the final BatchNorm refresh: give --final-bn-images N too")
    if dataset == "digits":
        parser.error(
            "--holdout-root needs a CIFAR dataset: the embedded digits have no other root to hold out"
        )
    from aimc_lsh.data import load_dataset, resolve_data_root

    root = resolve_data_root(dataset, args.holdout_root, download=download)
    if Path(root).resolve() == Path(train_root).resolve():
        parser.error(
            f"--holdout-root {args.holdout_root} is the training root: its images are trained on; give "
            "another root (e.g. the JPEG full set beside the exact subset)"
        )
    full = load_dataset(dataset, root=root, train=True)
    count = args.holdout_images
    if count > len(full):
        parser.error(
            f"--holdout-images {count}: {root} holds {len(full)} training images; allowed 1 to {len(full)}"
        )
    return ImageTensorDataset(
        full.images[-count:], full.labels[-count:], num_classes=full.num_classes, classes=full.classes,
        name=f"held-out (last {count} training images of {root})",
    )  # fmt: skip


def main(argv: list[str] | None = None) -> dict:
    """Run the CLI; returns the summary dict."""
    parser = build_parser()
    args = parser.parse_args(argv)
    check_model_options(parser, args)
    check_output_files(parser, {"--checkpoint": args.checkpoint, "--log-csv": args.log_csv,
                                "--summary-json": args.summary_json})  # fmt: skip
    check_hwa_options(parser, args)
    check_projection_fit(parser, args)
    try:  # every bad number stops here, before data is loaded
        config = train_config_from_args(args)
        noise = noise_from_args(args)
    except ValueError as err:
        parser.error(str(err))
    if args.threads:
        torch.set_num_threads(args.threads)
    from aimc_lsh.data import load_dataset, resolve_data_root, training_crop_padding
    from aimc_lsh.eval import bitbybit_score
    from aimc_lsh.models import get_backbone
    from aimc_lsh.nn import needs_data, patch_model, prepare_model

    dataset = "cifar100" if "cifar100" in args.model else "cifar10"
    if args.model.startswith("digits"):
        dataset = "digits"
    download = not args.no_download
    try:  # missing, corrupt or wrong-checksum data or weights: one line, before anything is built
        teacher = get_backbone(args.model, path=args.weights, download=download)
        data_root = resolve_data_root(dataset, args.data_root, download=download)
        train_root = (
            resolve_data_root(dataset, args.train_root, download=download) if args.train_root else data_root
        )
        train_set = load_dataset(dataset, root=train_root, train=True, limit=args.train_limit)
        val_set = load_dataset(dataset, root=data_root, train=False)
        holdout = held_out_images(parser, args, dataset, train_root, download)
    except (FileNotFoundError, ValueError) as err:
        parser.error(str(err))
    if config.augment:  # 4 pixels for CIFAR, 1 for the 8x8 digits (4 would erase them)
        config = config.replace(crop_padding=training_crop_padding(dataset))
    if args.conventional:
        import copy

        student = copy.deepcopy(teacher)
    else:
        base = hash_config_from_args(args)
        overrides = per_layer_out_k(teacher, args.skip) if args.k == "out" else None
        try:
            student = patch_model(teacher, base, overrides=overrides, skip=args.skip)
        except ValueError as err:  # a --skip path that names no layer, or NaN weights
            parser.error(str(err))
        calib = train_set.images[:CALIBRATION_IMAGES]  # training activations, never the test split
        calib = calib.float().div(255.0) if calib.dtype == torch.uint8 else calib
        if needs_data(student):  # PQ codebooks: k-means
            prepare_model(student, list(calib.split(128)))
        if args.center_inputs and not args.init_from:  # with --init-from the checkpoint's references load
            from aimc_lsh.nn import calibrate_input_centers

            calibrate_input_centers(student, calib)
        if args.fit_projections is not None:
            from aimc_lsh.nn.projection_fit import fit_projections

            fit_projections(
                student, calib, energy=args.fit_projections, only_where_better=args.fit_only_where_better
            )
    if config.feature_kd > 0:
        from aimc_lsh.train.feature_taps import check_module_paths, default_feature_layers

        try:
            check_module_paths(student, config.feature_kd_layers or default_feature_layers(student))
        except ValueError as err:
            parser.error(f"--feature-kd-layers: {err}")
    prior = None
    if args.init_from:  # warm start from an earlier run's weights (same layers and configs)
        from aimc_lsh.train import load_checkpoint

        try:
            prior = load_checkpoint(args.init_from)
            student.load_state_dict(prior["model_state"])
        except (FileNotFoundError, ValueError, RuntimeError) as err:  # RuntimeError: other layers or sizes
            parser.error(f"--init-from {args.init_from}: {' '.join(str(err).split())}")
    result = fine_tune(
        student, train_set, config, teacher=teacher, val_set=val_set, noise=noise, checkpoint=args.checkpoint,
        resume=args.resume, log_csv=args.log_csv, device=args.device, backbone=args.model,
        holdout_set=holdout,
        meta={"argv": sys.argv if argv is None else ["finetune.py", *argv], "init_from": args.init_from},
    )  # fmt: skip
    summary = {
        "model": args.model, "kernel": None if args.conventional else args.kernel, "k": args.k,
        "recipe": args.recipe, "fp32_accuracy": result.fp32_accuracy,
        "initial_accuracy": result.initial_accuracy,
        "calibrated_accuracy": result.calibrated_accuracy, "final_accuracy": result.final_accuracy,
        "final_live_accuracy": result.final_live_accuracy, "ema_decay": config.ema_decay,
        "product_dtype": config.product_dtype,
        "accuracy_before_bn_refresh": result.accuracy_before_bn_refresh,
        "bn_refresh": result.bn_refresh.to_dict() if result.bn_refresh is not None else None,
        "holdout_root": args.holdout_root,
        "steps": result.steps, "steps_per_epoch": result.steps_per_epoch,
        "elapsed_s": round(result.elapsed_s, 1), "cpu_s": round(result.cpu_s, 1),
        "noise": noise.to_dict() if noise else None, "checkpoint": args.checkpoint,
        "init_from": args.init_from, "fit_projections": args.fit_projections,
        "fit_only_where_better": args.fit_only_where_better, "center_inputs": args.center_inputs,
        "comparator_thresholds": args.comparator_thresholds, "input_tile_size": args.input_tile_size,
        "prior_steps": None if prior is None else int(prior.get("step", 0)),
        "prior_cpu_s": None if prior is None else round(prior.get("cpu_s", 0.0), 1),
        "prior_elapsed_s": None if prior is None else round(prior.get("elapsed_s", 0.0), 1),
    }  # fmt: skip
    if not args.conventional and result.final_accuracy is not None and result.fp32_accuracy is not None:
        drop = result.fp32_accuracy - result.final_accuracy
        try:
            summary["bitbybit_score"] = bitbybit_score(result.model, drop)
        except ValueError as err:
            summary["bitbybit_score"] = None
            summary["bitbybit_note"] = str(err)
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(summary, indent=2))
        if args.summary_json:
            from aimc_lsh.utils import atomic_write_text

            atomic_write_text(args.summary_json, json.dumps(summary, indent=2) + "\n")
    return summary


if __name__ == "__main__":
    main()
