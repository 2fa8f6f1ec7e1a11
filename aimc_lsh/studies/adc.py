"""ADC study: accuracy vs read-out resolution (bits) of the multi-level read-outs.

The ADC converts the analog column read-outs: the code match h_W . h_x of the ``codes_on_array``
placement (and partial sums of split tiles) and the real-valued MVM of the conventional-AIMC baseline.
``ideal`` is a converter without quantisation (noise, if the device has any, still applies). The other
settings stay at the device profile's values. Every point is evaluated at one time after programming
(``--time``). The CLI is ``studies/adc_sweep.py``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pandas as pd

from aimc_lsh.studies.cli import StudyParser, UsageError, add_common_arguments, parse_name_list, run_main
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

__all__ = ["DEFAULT_BITS", "build_parser", "build_sweep", "parse_bits", "plot_adc", "main"]

DEFAULT_BITS = "1,2,3,4,5,6,8,ideal"
"""Default ``--bits``."""


def parse_bits(text: str) -> list[int | None]:
    """``--bits`` value: comma-separated resolutions 1..24 and/or ``ideal`` (None)."""
    out: list[int | None] = []
    for item in parse_name_list(text, "ADC resolution"):
        if item.lower() == "ideal":
            out.append(None)
            continue
        try:
            bits = int(item)
        except ValueError:
            raise UsageError(f"ADC resolution {item!r} is not an integer or 'ideal'") from None
        if not 1 <= bits <= 24:
            raise UsageError(f"ADC resolution {bits} is outside 1..24 (use 'ideal' for no quantisation)")
        out.append(bits)
    return out


def build_parser() -> StudyParser:
    """The ``adc_sweep.py`` command line."""
    parser = StudyParser(
        prog="adc_sweep.py",
        description="Accuracy vs ADC resolution of the multi-level read-outs (the code match of the hashed "
        "codes_on_array placement, the MVM of the conventional-AIMC baseline), over several programming "
        "seeds. Writes <out>/adc_<device>_<dataset>.csv/.json/.png; interrupted runs resume.",
    )
    add_hardware_arguments(parser)
    study = parser.add_argument_group("ADC study")
    study.add_argument(
        "--bits",
        default=DEFAULT_BITS,
        help="Comma-separated ADC resolutions in bits (1..24) and/or 'ideal'. Default: %(default)s",
    )
    study.add_argument(
        "--placements",
        default="codes_on_array,conventional",
        help="Comma-separated placements (codes_on_array, projection_on_array, conventional). "
        "Default: %(default)s",
    )
    add_time_argument(study)
    add_common_arguments(parser, study="adc")
    return parser


def build_sweep(args: argparse.Namespace) -> Sweep:
    """Validate the options and build the ADC sweep (no heavy compute)."""
    from aimc_lsh.hardware import PLACEMENTS

    prepared = prepare(args)
    times = single_time(prepared.device, args.time)
    bits = parse_bits(args.bits)
    placements = parse_name_list(args.placements, "placement", PLACEMENTS)
    checkpoint = prepared.checkpoint(args.hash_length)
    variants = []
    for placement in placements:
        config = base_config(args, prepared, placement=placement)
        for b in bits:
            adc = config.effective_adc.replace(bits=b)
            variants.append(Variant(config.replace(adc=adc), checkpoint=checkpoint))
    points, context = make_points(
        prepared.source, variants, prepared.seeds, times, recalibrate_bn=prepared.recalibrate_bn
    )
    title = prepared.title(args.time, notes=[checkpoint_note(checkpoint)])
    return Sweep(
        name=f"adc_{prepared.device.name}_{prepared.source.dataset}",
        points=points,
        fn=hardware_point,
        context=context,
        config=prepared.sweep_config("adc", args, bits=bits, time_seconds=times[0], checkpoint=checkpoint),
        plot=lambda frame, path: plot_adc(frame, path, title=title),
    )


def plot_adc(frame: pd.DataFrame, path: str | Path, *, title: str | None = None) -> Any:
    """Accuracy (%) vs ADC bits, one band per placement; ``ideal`` drawn two steps past the largest."""
    bits = frame["adc.bits"]
    finite = bits.dropna()
    ideal_at = (float(finite.max()) if not finite.empty else 0.0) + 2.0
    frame = frame.assign(bits_axis=bits.astype(float).fillna(ideal_at))
    ticks = {float(b): str(int(b)) for b in finite.unique()}
    if bits.isna().any():
        ticks[ideal_at] = "ideal"
    return plot_bands(
        frame,
        x="bits_axis",
        y="accuracy",
        y_scale=100.0,
        group_by="placement",
        path=path,
        xlabel="ADC resolution (bits)",
        ylabel="top-1 accuracy (%)",
        title=title,
        xtick_labels=ticks,
    )


def main(argv: list[str] | None = None) -> int:
    """Run the ADC study from the command line; returns the exit status."""
    return run_main(build_sweep, build_parser(), argv)
