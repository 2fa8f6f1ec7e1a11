"""Drift study: accuracy of the hashed model and the conventional-AIMC baseline vs time after programming.

For each placement (default: the design card's ``codes_on_array`` and the ``conventional`` baseline),
with and without global drift compensation, and each programming seed, one point programs the model
once and then drifts it through the whole time list (default 1 s, 1 h, 1 day, 1 week, 1 month, 1 year,
10 years), evaluating the test set at every time. The CLI is ``studies/drift_sweep.py``.
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
    base_config,
    check_times,
    checkpoint_note,
    hardware_point,
    make_points,
    prepare,
)
from aimc_lsh.studies.plotting import plot_bands
from aimc_lsh.studies.runner import Sweep

__all__ = ["DEFAULT_TIMES", "DEFAULT_PLACEMENTS", "build_parser", "build_sweep", "plot_drift", "main"]

DEFAULT_TIMES = "1s,1h,1d,1w,1mo,1y,10y"
"""Default ``--times``: 1 s, 1 hour, 1 day, 1 week, 1 month (30 d), 1 year (365 d), 10 years."""

DEFAULT_PLACEMENTS = "codes_on_array,conventional"
"""Default ``--placements``: the design card's hashed placement and the conventional-AIMC baseline."""

COMPENSATION = {"both": (False, True), "on": (True,), "off": (False,)}
"""``--compensation`` choices -> drift-compensation settings evaluated."""


def build_parser() -> StudyParser:
    """The ``drift_sweep.py`` command line."""
    parser = StudyParser(
        prog="drift_sweep.py",
        description="Accuracy vs time after programming (conductance drift) of a hashed model and of the "
        "conventional-AIMC baseline on a simulated device, over several programming-noise seeds, with and "
        "without global drift compensation. Writes <out>/drift_<device>_<dataset>.csv (one row per "
        "placement x compensation x seed x time), .json (full config, versions, git revision) and .png "
        "(mean +- std over seeds, log-time axis). Interrupted runs resume where they stopped.",
    )
    add_hardware_arguments(parser)
    study = parser.add_argument_group("drift study")
    study.add_argument(
        "--times",
        default=DEFAULT_TIMES,
        help="Comma-separated times after programming, > 0: seconds or a number with a unit "
        "s, min, h, d, w, mo (30 d), y (365 d). Default: %(default)s",
    )
    study.add_argument(
        "--placements",
        default=DEFAULT_PLACEMENTS,
        help="Comma-separated placements: codes_on_array (hash codes on the crossbar, ADC read-out), "
        "projection_on_array (projection on the crossbar, sense amplifiers), conventional (real "
        "weights, n-bit ADC baseline). Default: %(default)s",
    )
    study.add_argument(
        "--compensation",
        choices=tuple(COMPENSATION),
        default="both",
        help="Evaluate with global drift compensation on, off, or both. Default: %(default)s",
    )
    add_common_arguments(parser, study="drift")
    return parser


def build_sweep(args: argparse.Namespace) -> Sweep:
    """Validate the options and build the drift sweep (no heavy compute).

    Raises:
        UsageError, ValueError, FileNotFoundError: For bad options or missing data, in one line.

    """
    from aimc_lsh.hardware import PLACEMENTS

    prepared = prepare(args)
    times = check_times(prepared.device, args.times)
    if any(t <= 0 for t in times):
        raise UsageError(
            f"--times must all be > 0 (log-time axis), got {args.times!r}; use 1s for 'just after'"
        )
    placements = parse_name_list(args.placements, "placement", PLACEMENTS)
    checkpoint = prepared.checkpoint(args.hash_length)
    variants = [
        Variant(base_config(args, prepared, placement=p, drift_compensation=c), checkpoint=checkpoint)
        for p in placements
        for c in COMPENSATION[args.compensation]
    ]
    points, context = make_points(
        prepared.source, variants, prepared.seeds, times, recalibrate_bn=prepared.recalibrate_bn
    )
    title = prepared.title(notes=[checkpoint_note(checkpoint)])
    return Sweep(
        name=f"drift_{prepared.device.name}_{prepared.source.dataset}",
        points=points,
        fn=hardware_point,
        context=context,
        config=prepared.sweep_config(
            "drift", args, times_seconds=times, placements=placements, checkpoint=checkpoint
        ),
        plot=lambda frame, path: plot_drift(frame, path, title=title),
    )


def plot_drift(frame: pd.DataFrame, path: str | Path, *, title: str | None = None) -> Any:
    """Accuracy (%) vs time after programming: colour per placement, dashed without compensation."""
    frame = frame.assign(
        compensation=frame["drift_compensation"].map({True: "compensated", False: "uncompensated"})
    )
    ticks = dict(zip(frame["t_seconds"], frame["t_label"], strict=True))
    return plot_bands(
        frame,
        x="t_seconds",
        y="accuracy",
        y_scale=100.0,
        group_by="placement",
        style_by="compensation",
        path=path,
        logx=True,
        xlabel="time after programming",
        ylabel="top-1 accuracy (%)",
        title=title,
        xtick_labels=ticks,
    )


def main(argv: list[str] | None = None) -> int:
    """Run the drift study from the command line; returns the exit status."""
    return run_main(build_sweep, build_parser(), argv)
