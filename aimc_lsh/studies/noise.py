"""Noise study: accuracy vs the strength of one non-ideality at a time, the others at the device's values.

Knobs (:data:`KNOBS`): the aihwkit noise model's programming-noise and read-noise scales, the per-read
weight noise, and the sense amplifiers' static offset and dynamic noise. Each knob is swept over its
values with every other setting at the device profile's default, for the hashed placement(s) and, for
the device knobs, the conventional-AIMC baseline (which has no sense amplifiers). Every point is
evaluated at one time after programming (``--time``). The CLI is ``studies/noise_sweep.py``.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from aimc_lsh.studies.cli import (
    StudyParser,
    UsageError,
    add_common_arguments,
    parse_float_list,
    parse_name_list,
    run_main,
)
from aimc_lsh.studies.common import (
    Variant,
    add_hardware_arguments,
    add_time_argument,
    base_config,
    checkpoint_note,
    hardware_point,
    make_points,
    prepare,
    single_time,
)
from aimc_lsh.studies.plotting import plot_bands
from aimc_lsh.studies.runner import Sweep

__all__ = ["Knob", "KNOBS", "DEFAULT_KNOBS", "build_parser", "build_sweep", "plot_noise", "main"]


@dataclass(frozen=True)
class Knob:
    """One non-ideality the noise study turns."""

    where: str
    """``noise_params`` (an aihwkit noise-model argument), ``device`` (a DeviceProfile field),
    ``sense_amp`` (a SenseAmp field) or ``sense_amp_mv`` (a SenseAmp field given in mV, converted with the
    comparators' ``full_scale_mv``)."""
    field: str
    """Name of the parameter or field."""
    values: tuple[float, ...]
    """Default values swept."""
    help: str
    """What it is, for ``--help``."""


KNOBS: dict[str, Knob] = {
    "prog_noise_scale": Knob(
        "noise_params", "prog_noise_scale", (0.0, 1.0, 2.0, 4.0), "scale of the aihwkit programming noise"
    ),
    "read_noise_scale": Knob(
        "noise_params", "read_noise_scale", (0.0, 1.0, 2.0, 4.0), "scale of the aihwkit 1/f read noise"
    ),
    "read_noise_std": Knob(
        "device", "read_noise_std", (0.0, 0.0175, 0.05, 0.1), "per-read weight noise (abs-max weight = 1)"
    ),
    "sa_offset": Knob(
        "sense_amp", "offset_std", (0.0, 0.01, 0.03, 0.1), "sense-amp static offset std (full scale = 1)"
    ),
    "sa_noise": Knob(
        "sense_amp", "noise_std", (0.0, 0.002, 0.02, 0.1), "sense-amp dynamic noise std (full scale = 1)"
    ),
    "sa_offset_mv": Knob(
        "sense_amp_mv", "offset_std", (0.0, 1.0, 2.0, 3.4, 5.0, 10.0), "sense-amp static offset std in mV"
    ),
    "sa_noise_mv": Knob(
        "sense_amp_mv", "noise_std", (0.0, 0.68, 2.0, 5.0), "sense-amp dynamic noise std in mV"
    ),
}
"""Knob name -> what it changes and its default values."""

DEFAULT_KNOBS: tuple[str, ...] = (
    "prog_noise_scale",
    "read_noise_scale",
    "read_noise_std",
    "sa_offset",
    "sa_noise",
)
"""The knobs swept without ``--knobs`` (the mV knobs repeat ``sa_offset`` / ``sa_noise`` in other units)."""


def build_parser() -> StudyParser:
    """The ``noise_sweep.py`` command line."""
    knob_help = "; ".join(
        f"{n}: {k.help}, default values {','.join(f'{v:g}' for v in k.values)}" for n, k in KNOBS.items()
    )
    parser = StudyParser(
        prog="noise_sweep.py",
        description="Accuracy vs one non-ideality at a time (programming/read-noise scale, per-read weight "
        "noise, sense-amp offset and noise), the others at the device profile's values, for the hashed "
        "model and the conventional-AIMC baseline, over several programming seeds. Writes "
        "<out>/noise_<device>_<dataset>.csv/.json/.png; interrupted runs resume.",
    )
    add_hardware_arguments(parser)
    study = parser.add_argument_group("noise study")
    study.add_argument(
        "--knobs",
        default=",".join(DEFAULT_KNOBS),
        help=f"Comma-separated knobs to sweep ({knob_help}). Default: %(default)s",
    )
    study.add_argument(
        "--values",
        action="append",
        default=[],
        metavar="KNOB=V1,V2,...",
        help="Values of one knob instead of its defaults (repeat the option for several knobs).",
    )
    study.add_argument(
        "--placements",
        default="codes_on_array,conventional",
        help="Comma-separated placements (codes_on_array, projection_on_array, conventional); the "
        "conventional baseline is evaluated for the device knobs only. Default: %(default)s",
    )
    add_time_argument(study)
    add_common_arguments(parser, study="noise")
    return parser


def _knob_values(args: argparse.Namespace, knobs: list[str]) -> dict[str, list[float]]:
    values = {name: list(KNOBS[name].values) for name in knobs}
    for item in args.values:
        name, sep, text = str(item).partition("=")
        if not sep or name not in KNOBS:
            raise UsageError(f"--values {item!r}: expected KNOB=V1,V2 with KNOB in {', '.join(KNOBS)}")
        if name not in knobs:
            raise UsageError(f"--values names knob {name!r}, which --knobs does not include")
        values[name] = parse_float_list(text, f"{name} value", minimum=0.0)
    return values


def _variant_config(args: argparse.Namespace, prepared: Any, placement: str, knob: Knob, value: float) -> Any:
    device = prepared.device
    config = base_config(args, prepared, placement=placement)
    if knob.where == "noise_params":
        if device.noise_model is None:
            raise UsageError(
                f"knob {knob.field} needs a device with an aihwkit noise model; {device.name!r} has none"
            )
        device = device.replace(noise_params={**device.noise_params, knob.field: value})
        return config.replace(device=device)
    if knob.where == "device":
        return config.replace(device=device.replace(**{knob.field: value}))
    if knob.where == "sense_amp_mv":
        comparators = config.effective_sense_amp
        if comparators.full_scale_mv is None:
            raise UsageError(
                f"knob {knob.field} in mV needs the comparators' full scale in mV: device "
                f"{device.name!r} gives no sense_amp.full_scale_mv; add --sa-full-scale-mv or use the "
                "knob in full-scale units"
            )
        return config.replace(sense_amp=comparators.replace_mv(**{knob.field: value}))
    sense_amp = config.effective_sense_amp.replace(**{knob.field: value})
    return config.replace(sense_amp=sense_amp)


def build_sweep(args: argparse.Namespace) -> Sweep:
    """Validate the options and build the noise sweep (no heavy compute)."""
    from aimc_lsh.hardware import PLACEMENTS

    prepared = prepare(args)
    times = single_time(prepared.device, args.time)
    knobs = parse_name_list(args.knobs, "knob", list(KNOBS))
    values = _knob_values(args, knobs)
    placements = parse_name_list(args.placements, "placement", PLACEMENTS)
    configs = [
        (name, placement, value, _variant_config(args, prepared, placement, KNOBS[name], value))
        for name in knobs
        for placement in placements
        if not (placement == "conventional" and KNOBS[name].where.startswith("sense_amp"))  # no comparators
        for value in values[name]
    ]
    if not configs:
        raise UsageError("nothing to sweep: sense-amp knobs apply to hashed placements only")
    checkpoint = prepared.checkpoint(args.hash_length)
    variants = [
        Variant(config, checkpoint=checkpoint, labels={"knob": name, "knob_value": float(value)})
        for name, placement, value, config in configs
    ]
    points, context = make_points(
        prepared.source, variants, prepared.seeds, times, recalibrate_bn=prepared.recalibrate_bn
    )
    title = prepared.title(args.time, notes=[checkpoint_note(checkpoint)])
    return Sweep(
        name=f"noise_{prepared.device.name}_{prepared.source.dataset}",
        points=points,
        fn=hardware_point,
        context=context,
        config=prepared.sweep_config(
            "noise",
            args,
            knobs={n: values[n] for n in knobs},
            time_seconds=times[0],
            checkpoint=checkpoint,
        ),
        plot=lambda frame, path: plot_noise(frame, path, title=title),
    )


def plot_noise(frame: pd.DataFrame, path: str | Path, *, title: str | None = None) -> Any:
    """Accuracy (%) vs knob value, one panel per knob, one band per placement."""
    return plot_bands(
        frame,
        x="knob_value",
        y="accuracy",
        y_scale=100.0,
        group_by="placement",
        panel_by="knob",
        path=path,
        xlabel="knob value",
        panel_xlabels={name: knob.help for name, knob in KNOBS.items()},
        ylabel="top-1 accuracy (%)",
        title=title,
    )


def main(argv: list[str] | None = None) -> int:
    """Run the noise study from the command line; returns the exit status."""
    return run_main(build_sweep, build_parser(), argv)
