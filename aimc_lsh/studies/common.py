"""The building blocks shared by the hardware studies (drift, noise, k, ADC sweeps).

Every hardware study evaluates *variants* -- a :class:`~aimc_lsh.hardware.HardwareConfig` plus the
checkpoint whose weights it carries -- over several programming seeds at one or more times after
programming. One point is one (variant, seed): the model is built and programmed once, then drifted
through the point's time list and evaluated at each time, giving one CSV row per time. The point function
:func:`hardware_point` is the same for every study; studies differ only in their variants and plots.

Also here: the command-line options of hardware studies (:func:`add_hardware_arguments`) and their
validation (:func:`prepare`), which run before any compute.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aimc_lsh.studies.cli import UsageError, format_duration, parse_durations, parse_int_list
from aimc_lsh.studies.grid import Params
from aimc_lsh.studies.workload import (
    CHECKPOINT_CHOICES,
    Source,
    accuracy_row,
    analog_model,
    bn_calibration_images,
    checkpoint_hash_fields,
    checkpoint_kind,
    config_columns,
    pretrained_model,
    resolve_checkpoint,
    resolve_source,
    resolved_config,
)
from aimc_lsh.utils import sha256_file

__all__ = [
    "CHECKPOINT_CHOICES",
    "Variant",
    "Prepared",
    "add_hardware_arguments",
    "prepare",
    "base_config",
    "make_points",
    "hardware_point",
    "times_column",
    "check_times",
    "add_time_argument",
    "checkpoint_note",
    "sense_amp_from_args",
    "sense_amp_note",
    "recalibration_note",
    "single_time",
    "check_model_options",
    "source_from_args",
    "check_recalibration",
]


@dataclass
class Variant:
    """One model-on-hardware configuration of a study."""

    config: Any
    """The :class:`~aimc_lsh.hardware.HardwareConfig` (hash fields are replaced by the checkpoint's)."""
    checkpoint: str | None = None
    """Checkpoint the model is built from (:func:`~aimc_lsh.studies.workload.analog_model`); None: the
    pretrained backbone patched as is (un-fine-tuned). A ``hashed`` checkpoint is ignored by the
    ``conventional`` baseline (pretrained weights); a ``weights`` checkpoint (e.g. a merged network)
    replaces the backbone of every placement."""
    labels: dict[str, Any] = field(default_factory=dict)
    """Extra CSV columns describing the variant (e.g. which noise knob a noise sweep turns)."""


@dataclass
class Prepared:
    """Validated options common to every hardware study."""

    source: Source
    """Data and models."""
    device: Any
    """The :class:`~aimc_lsh.hardware.DeviceProfile`."""
    seeds: list[int]
    """Programming seeds."""
    choice: str
    """The ``--checkpoint`` option (resolved by :meth:`checkpoint` once everything else is validated)."""
    kernel: str = "random_projection"
    """The ``--kernel`` option: default checkpoints (``auto``, ``default``) are looked up for this kernel."""
    sense_amp: Any = None
    """The :class:`~aimc_lsh.hardware.SenseAmp` the ``--sa-*`` options give (the device's with those
    figures replaced); None: no such option, the device's own comparators."""
    recalibrate_bn: int = 0
    """``--recalibrate-bn``: training images that re-estimate BatchNorm statistics on the hardware at
    every evaluation time (0: off)."""

    def checkpoint(self, hash_length: int) -> str | None:
        """The checkpoint of the hashed model with k = ``hash_length`` (None: not fine-tuned).

        Call it after every cheap check: it may fine-tune the digits model (seconds) or, with
        ``--checkpoint default``, the CIFAR-10 model (~30 min once).
        """
        return resolve_checkpoint(self.source, self.choice, hash_length, self.kernel)

    def title(self, time: str | None = None, notes: Sequence[str] = ()) -> str:
        """Plot title: model, data, device, evaluation time, seeds, ``notes``, comparators, BatchNorm.

        Args:
            time: The evaluation time as the user gave it (``--time``); None for a study over time.
            notes: Further notes (e.g. :func:`checkpoint_note`), each starting with ``"; "``.

        """
        when = "" if time is None else f", t = {time}"
        return (
            f"{self.source.backbone} on {self.source.dataset} test set, device {self.device.name}{when}; "
            f"mean +- std over {len(self.seeds)} programming seeds"
            + "".join(notes)
            + sense_amp_note(self.sense_amp)
            + recalibration_note(self)
        )

    def sweep_config(self, study: str, args: argparse.Namespace, **fields: Any) -> dict[str, Any]:
        """The configuration a study's JSON records: study name, options, ``fields``, seeds, device."""
        return {
            "study": study,
            "args": vars(args),
            **fields,
            "seeds": self.seeds,
            "device": self.device.to_dict(),
        }


def add_hardware_arguments(parser: argparse.ArgumentParser, *, default_device: str = "pcm") -> None:
    """Options of the simulated hardware shared by the hardware studies."""
    from aimc_lsh.hardware.programming import DRIFT_REFERENCES

    group = parser.add_argument_group("hardware")
    group.add_argument(
        "--device",
        default=default_device,
        help="Device profile: a name from devices/ (pcm, reram, reram_wan2022, hermes, ideal, or one you "
        "add) or a YAML file path. Default: %(default)s",
    )
    group.add_argument(
        "--hash-length",
        type=int,
        default=256,
        help="k of the un-fine-tuned hashed model (K centroids per codebook for product_quantization; with a "
        "checkpoint, the checkpoint's k is used). "
        "Default: %(default)s",
    )
    group.add_argument(
        "--drift-reference",
        choices=DRIFT_REFERENCES,
        default="random_sign",
        help="Inputs of the global drift-compensation read-out: random_sign (fixed +-1 vectors on many "
        "rows at once, as many as the ADC range allows) or one_hot (aihwkit's GlobalDriftCompensation; "
        "single weights are often below one ADC step, which biases the factor). Default: %(default)s",
    )
    group.add_argument(
        "--kernel",
        default="random_projection",
        help="Kernel of the un-fine-tuned hashed model (with a checkpoint, the checkpoint's). "
        "Default: %(default)s",
    )
    _add_sense_amp_arguments(parser)
    calibration = parser.add_argument_group("after programming")
    calibration.add_argument(
        "--recalibrate-bn",
        type=int,
        default=0,
        metavar="N",
        help="At every evaluation time, re-estimate the BatchNorm statistics of the programmed, drifted "
        "model on N training images run through the simulated hardware (AdaBS, Joshi et al., Nat. Commun. "
        "2020; crop+flip augmented as in training; never test images), e.g. 1024. It costs about one "
        "evaluation of N images per time. 0: off. Default: %(default)s",
    )


def _add_sense_amp_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "sense amplifiers (hashed placements; default: the device profile's figures)"
    )
    offset = group.add_mutually_exclusive_group()
    offset.add_argument(
        "--sa-offset-mv",
        type=float,
        metavar="MV",
        help="Static input-referred offset std of each comparator, in mV (converted with the device's "
        "sense_amp.full_scale_mv, or --sa-full-scale-mv).",
    )
    offset.add_argument(
        "--sa-offset", type=float, metavar="FRACTION", help="The same as a fraction of full scale."
    )
    noise = group.add_mutually_exclusive_group()
    noise.add_argument(
        "--sa-noise-mv", type=float, metavar="MV", help="Dynamic (per-decision) noise std, in mV."
    )
    noise.add_argument(
        "--sa-noise", type=float, metavar="FRACTION", help="The same as a fraction of full scale."
    )
    group.add_argument(
        "--sa-full-scale-mv",
        type=float,
        metavar="MV",
        help="Comparator full-scale swing in mV (the largest possible column signal), replacing the "
        "device's; it sets what a figure in mV means.",
    )


def sense_amp_from_args(args: argparse.Namespace, device: Any) -> Any:
    """The comparators the ``--sa-*`` options describe (the device's, figures replaced); None without any.

    Raises:
        UsageError: For a negative or non-finite figure, a non-positive full scale, or a figure in mV
            when neither the device nor ``--sa-full-scale-mv`` gives the full-scale swing.

    """
    options = {
        "--sa-offset": ("offset_std", False),
        "--sa-offset-mv": ("offset_std", True),
        "--sa-noise": ("noise_std", False),
        "--sa-noise-mv": ("noise_std", True),
        "--sa-full-scale-mv": ("full_scale_mv", False),
    }
    given = {
        flag: value
        for flag in options
        if (value := getattr(args, flag[2:].replace("-", "_"), None)) is not None
    }
    if not given:
        return None
    for flag, value in given.items():
        positive = flag == "--sa-full-scale-mv"
        if not math.isfinite(value) or value < 0 or (positive and value == 0):
            allowed = "a number > 0" if positive else "a number >= 0"
            raise UsageError(f"{flag} must be {allowed}, got {value:g}")
    plain = {options[f][0]: v for f, v in given.items() if not options[f][1]}
    in_mv = {options[f][0]: v for f, v in given.items() if options[f][1]}
    sense_amp = device.sense_amp.replace(**plain)
    if in_mv and sense_amp.full_scale_mv is None:
        raise UsageError(
            f"device {device.name} gives no sense_amp.full_scale_mv, so figures in mV cannot be converted; "
            "add --sa-full-scale-mv (the comparator's full-scale swing in mV) or give --sa-offset/--sa-noise "
            "as fractions of full scale"
        )
    return sense_amp.replace_mv(**in_mv) if in_mv else sense_amp


def add_time_argument(parser: argparse.ArgumentParser, default: str = "1s") -> None:
    """``--time``: the one time after programming at which a single-time study evaluates."""
    parser.add_argument(
        "--time",
        default=default,
        help="Time after programming at which every point is evaluated (seconds or a number with a unit "
        "s, min, h, d, w, mo, y). The default 1s precedes PCM drift (t_0 = 20 s), isolating noise. "
        "Default: %(default)s",
    )


def single_time(device: Any, text: str) -> list[float]:
    """``--time`` as a one-element list, checked like a time list."""
    if "," in str(text):
        raise UsageError(f"--time takes one time, got {text!r}")
    return check_times(device, text)


def check_model_options(args: argparse.Namespace) -> int:
    """Check ``--hash-length``, ``--recalibrate-bn`` (where the study has it) and ``--kernel``, cheaply.

    Returns:
        The ``--recalibrate-bn`` image count (0 when the study has no such option).

    Raises:
        UsageError: Naming the option and what it allows.

    """
    from aimc_lsh.kernels import kernel_names

    if args.hash_length < 1:
        raise UsageError(f"--hash-length must be a positive integer, got {args.hash_length}")
    recalibrate = getattr(args, "recalibrate_bn", 0)
    if recalibrate < 0:
        raise UsageError(f"--recalibrate-bn must be a number of training images >= 0, got {recalibrate}")
    if args.kernel not in kernel_names():
        raise UsageError(f"unknown --kernel {args.kernel!r}; allowed: {', '.join(kernel_names())}")
    return recalibrate


def source_from_args(args: argparse.Namespace) -> Source:
    """The data and models the common options name (``cli.add_common_arguments``), checked (cheaply)."""
    return resolve_source(
        args.dataset,
        data_root=args.data_root,
        models_root=args.models_root,
        limit=args.limit,
        download=not args.no_download,
        batch_size=args.batch_size,
    )


def check_recalibration(source: Source, count: int, remedy: str) -> None:
    """Check ``--recalibrate-bn count`` before any compute: the images exist and the model has BatchNorm.

    Args:
        source: The study's data and models.
        count: Training images that re-estimate the statistics (> 0).
        remedy: What the error tells the user to do when the model has no BatchNorm layer.

    Raises:
        UsageError: Naming the problem.

    """
    from aimc_lsh.train import batchnorm_layers

    try:  # loads the training split once here, so a bad count fails before any compute
        bn_calibration_images(source.context(), count)
    except ValueError as err:
        raise UsageError(f"--recalibrate-bn: {err}") from None
    if not batchnorm_layers(pretrained_model(source.context())):
        raise UsageError(
            f"--recalibrate-bn: the {source.backbone} model has no BatchNorm layers to re-estimate; {remedy}"
        )


def prepare(args: argparse.Namespace) -> Prepared:
    """Validate the common options (device, seeds, data, weights) without heavy compute.

    Args:
        args: Parsed options (see :func:`add_hardware_arguments` and ``cli.add_common_arguments``).

    Raises:
        UsageError, ValueError, FileNotFoundError: With a one-line message naming what is wrong.

    """
    from aimc_lsh.hardware import load_device

    device = load_device(args.device)
    seeds = parse_int_list(args.seeds, "seed", minimum=0)
    recalibrate = check_model_options(args)
    source = source_from_args(args)
    if args.checkpoint not in CHECKPOINT_CHOICES and not Path(args.checkpoint).expanduser().is_file():
        raise FileNotFoundError(
            f"checkpoint {args.checkpoint} not found; pass a file written by studies/finetune.py, "
            "or 'auto', 'default' or 'none'"
        )
    sense_amp = sense_amp_from_args(args, device)
    if recalibrate:
        check_recalibration(source, recalibrate, "use it with a model that has them (e.g. --dataset cifar10)")
    return Prepared(
        source=source,
        device=device,
        seeds=seeds,
        choice=args.checkpoint,
        kernel=args.kernel,
        sense_amp=sense_amp,
        recalibrate_bn=recalibrate,
    )


def check_times(device: Any, text: str) -> list[float]:
    """Parse a comma-separated time list (sorted) and check the device has data for each time.

    Raises:
        UsageError: For an empty list, a repeated, unreadable or negative time.
        ValueError: For a time the device has no data for (ReRAM Wan 2022: only 1 s, 1 day, 2 days).

    """
    if not str(text).strip():
        raise UsageError("the time list is empty; give at least one time, e.g. 1s,1h,1d")
    values = parse_durations(text)
    for t in values:
        device.check_time(t)
    return values


def base_config(args: argparse.Namespace, prepared: Prepared, **changes: Any) -> Any:
    """The study's HardwareConfig: device from ``--device``, kernel from ``--kernel``/``--hash-length``.

    The ``--sa-*`` comparators apply to the hashed placements (the conventional baseline has none).
    """
    from aimc_lsh.hardware import HardwareConfig

    changes.setdefault("drift_reference", args.drift_reference)
    if prepared.sense_amp is not None and changes.get("placement") != "conventional":
        changes.setdefault("sense_amp", prepared.sense_amp)
    return HardwareConfig(device=prepared.device, kernel=args.kernel, hash_length=args.hash_length, **changes)


def checkpoint_note(checkpoint: str | None) -> str:
    """Plot-title note on the model a study's checkpoint gives (empty for a fine-tuned hashed model)."""
    if checkpoint is None:
        return "; hashed model NOT fine-tuned"
    if checkpoint_kind(checkpoint) == "weights":
        return f"; network {Path(checkpoint).name}, hashed model NOT fine-tuned"
    return ""


def sense_amp_note(sense_amp: Any) -> str:
    """Plot-title note on comparators set by the ``--sa-*`` options (empty when none was given)."""
    if sense_amp is None:
        return ""
    figures = {"offset": sense_amp.offset_std, "noise": sense_amp.noise_std}
    if sense_amp.full_scale_mv is None:
        text = ", ".join(f"{name} {value:.3g} FS" for name, value in figures.items())
    else:
        text = ", ".join(
            f"{name} {value * sense_amp.full_scale_mv:.3g} mV" for name, value in figures.items()
        )
        text += f" of {sense_amp.full_scale_mv:g} mV FS"
    return f"; sense amps {text}"


def recalibration_note(prepared: Prepared) -> str:
    """Plot-title note on ``--recalibrate-bn`` (empty when off)."""
    if not prepared.recalibrate_bn:
        return ""
    return f"; BatchNorm re-estimated on the hardware ({prepared.recalibrate_bn} training images)"


def _carried_checkpoint(variant: Variant) -> str | None:
    """The checkpoint the variant's model is built from: a ``hashed`` one only on hashed placements."""
    if variant.checkpoint is None:
        return None
    if variant.config.placement == "conventional" and checkpoint_kind(variant.checkpoint) == "hashed":
        return None
    return variant.checkpoint


def _variant_params(variant: Variant) -> dict[str, Any]:
    """Checkpoint identity and every config field of a variant (CSV columns)."""
    checkpoint = _carried_checkpoint(variant)
    if checkpoint is not None:
        identity = {"checkpoint": Path(checkpoint).name, "checkpoint_sha256": sha256_file(checkpoint)[:16]}
    elif variant.config.placement == "conventional":
        identity = {"checkpoint": "none (pretrained weights)", "checkpoint_sha256": None}
    else:
        identity = {"checkpoint": "none (not fine-tuned)", "checkpoint_sha256": None}
    columns = config_columns(variant.config)
    if checkpoint is not None and variant.config.placement != "conventional":
        if checkpoint_kind(checkpoint) == "hashed":
            columns.update(checkpoint_hash_fields(checkpoint))
    return {**identity, **variant.labels, **columns}


def _variant_entry(variant: Variant, params: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The variant's id (a digest of its full config and checkpoint digest) and its context entry."""
    entry = {"config": resolved_config(variant.config).to_dict(), "checkpoint": _carried_checkpoint(variant)}
    text = json.dumps([entry["config"], params["checkpoint_sha256"]], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12], entry


def times_column(times: Sequence[float]) -> str:
    """The ``times`` parameter of a point: its evaluation times in seconds, comma-separated."""
    return ",".join(f"{t:g}" for t in times)


def make_points(
    source: Source,
    variants: Sequence[Variant],
    seeds: Sequence[int],
    times: Sequence[float],
    *,
    recalibrate_bn: int = 0,
) -> tuple[list[Params], dict[str, Any]]:
    """Points (variant-major, then seed) and the sweep context for :func:`hardware_point`.

    Each point's parameters are the data/model identity, ``variant_id``, the variant's labels, every
    hardware config field, the time list, ``bn_recalibration_images`` (``recalibrate_bn``: training
    images that re-estimate BatchNorm statistics at every time, 0 for none) and the seed.
    """
    points: list[Params] = []
    entries: dict[str, dict[str, Any]] = {}
    for variant in variants:
        params = _variant_params(variant)
        ident, entry = _variant_entry(variant, params)
        entries[ident] = entry
        for seed in seeds:
            points.append(
                {
                    **source.params(),
                    "variant_id": ident,
                    **params,
                    "times": times_column(times),
                    "bn_recalibration_images": int(recalibrate_bn),
                    "program_seed": int(seed),
                }
            )
    return points, {**source.context(), "variants": entries}


def hardware_point(params: Params, context: dict[str, Any]) -> list[dict[str, Any]]:
    """Build the point's variant, program it with the point's seed, then drift and evaluate at each time.

    With ``bn_recalibration_images`` > 0 the BatchNorm statistics are re-estimated through the drifted
    hardware on that many training images before each evaluation
    (:func:`aimc_lsh.train.recalibrate_bn`, images from :func:`bn_calibration_images`).

    Returns:
        One row per time: ``t_seconds``, ``t_label``, ``accuracy``, ``n_correct``, ``n_images``.

    """
    from aimc_lsh.hardware import drift, program
    from aimc_lsh.train import recalibrate_bn

    entry = context["variants"][params["variant_id"]]
    model = analog_model(context, entry["config"], entry["checkpoint"])
    program(model, seed=params["program_seed"])
    recalibration = int(params.get("bn_recalibration_images", 0))
    rows = []
    for t in (float(x) for x in str(params["times"]).split(",")):
        drift(model, t)
        if recalibration:
            recalibrate_bn(model, bn_calibration_images(context, recalibration))
        rows.append({"t_seconds": t, "t_label": format_duration(t), **accuracy_row(model, context)})
    return rows
