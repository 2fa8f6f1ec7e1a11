"""Hash-length study: accuracy vs k (bits per hash) on the simulated device, with the conventional baseline.

Each k has its own fine-tuned checkpoint when one exists (``--checkpoint auto``: the cached default for
that k; digits: fine-tuned in seconds), else the un-fine-tuned hashed model is evaluated and said so.
The conventional-AIMC baseline does not hash, so it is evaluated once per seed and drawn as a horizontal
band. ``--checkpoint FILE`` takes a network of real weights (e.g. a merged one): it replaces the
backbone at every k and in the baseline. ``--ideal-reference`` adds the same hashed models on the ideal
device. Every point is evaluated at one time after programming (``--time``). The CLI is
``studies/k_sweep.py``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pandas as pd

from aimc_lsh.studies.cli import StudyParser, UsageError, add_common_arguments, parse_int_list, run_main
from aimc_lsh.studies.common import (
    CHECKPOINT_CHOICES,
    Variant,
    add_hardware_arguments,
    add_time_argument,
    base_config,
    hardware_point,
    make_points,
    prepare,
    single_time,
)
from aimc_lsh.studies.plotting import plot_bands
from aimc_lsh.studies.runner import Sweep
from aimc_lsh.studies.workload import checkpoint_kind, resolve_checkpoint

__all__ = ["DEFAULT_HASH_LENGTHS", "build_parser", "build_sweep", "plot_k", "main"]

DEFAULT_HASH_LENGTHS = "64,128,256,512"
"""Default ``--hash-lengths``."""


def build_parser() -> StudyParser:
    """The ``k_sweep.py`` command line."""
    parser = StudyParser(
        prog="k_sweep.py",
        description="Accuracy vs hash length k of the hashed model on a simulated device (one fine-tuned "
        "checkpoint per k when available), with the conventional-AIMC baseline as reference, over several "
        "programming seeds. Writes <out>/k_<device>_<dataset>.csv/.json/.png; interrupted runs resume.",
    )
    add_hardware_arguments(parser)
    study = parser.add_argument_group("k study")
    study.add_argument(
        "--hash-lengths", default=DEFAULT_HASH_LENGTHS, help="Comma-separated k values. Default: %(default)s"
    )
    study.add_argument(
        "--placement",
        choices=("codes_on_array", "projection_on_array"),
        default="codes_on_array",
        help="Hashed placement evaluated. Default: %(default)s",
    )
    study.add_argument("--no-baseline", action="store_true", help="Leave out the conventional-AIMC baseline.")
    study.add_argument(
        "--ideal-reference",
        action="store_true",
        help="Also evaluate every k on the ideal device (no noise, ideal sense amps and ADC).",
    )
    add_time_argument(study)
    add_common_arguments(parser, study="k")
    return parser


def build_sweep(args: argparse.Namespace) -> Sweep:
    """Validate the options and build the k sweep (no heavy compute)."""
    from aimc_lsh.hardware import ADC, SenseAmp, load_device

    prepared = prepare(args)
    network = None  # a network of real weights replacing the backbone at every k and in the baseline
    if args.checkpoint not in CHECKPOINT_CHOICES:
        network = resolve_checkpoint(prepared.source, args.checkpoint, args.hash_length)
        if network is not None and checkpoint_kind(network) == "hashed":
            raise UsageError(
                "a k sweep needs one hashed checkpoint per k: use --checkpoint auto, default or none, or a "
                "file with a network of real weights (e.g. merged), not the hashed checkpoint "
                f"{args.checkpoint}"
            )
    times = single_time(prepared.device, args.time)
    ks = parse_int_list(args.hash_lengths, "hash length", minimum=1)
    devices = [prepared.device] + ([load_device("ideal")] if args.ideal_reference else [])
    variants = []
    checkpoints = {k: prepared.checkpoint(k) for k in ks}
    for device in devices:
        ideal = device.name == "ideal" and device is not prepared.device
        for k in ks:
            config = base_config(args, prepared, placement=args.placement).replace(
                device=device, hash_length=k
            )
            if ideal:
                config = config.replace(sense_amp=SenseAmp(), adc=ADC())
            variants.append(Variant(config, checkpoint=checkpoints[k]))
    if not args.no_baseline:
        variants.append(Variant(base_config(args, prepared, placement="conventional"), checkpoint=network))
    points, context = make_points(
        prepared.source, variants, prepared.seeds, times, recalibrate_bn=prepared.recalibrate_bn
    )
    missing = [k for k, path in checkpoints.items() if path is None or path == network]
    title = prepared.title(
        args.time,
        notes=[
            f"; network {Path(network).name}" if network else "",
            f"; NOT fine-tuned at k = {', '.join(map(str, missing))}" if missing else "",
        ],
    )
    return Sweep(
        name=f"k_{prepared.device.name}_{prepared.source.dataset}",
        points=points,
        fn=hardware_point,
        context=context,
        config=prepared.sweep_config(
            "k",
            args,
            hash_lengths=ks,
            checkpoints={str(k): v for k, v in checkpoints.items()},
            time_seconds=times[0],
        ),
        plot=lambda frame, path: plot_k(frame, path, title=title),
    )


def plot_k(frame: pd.DataFrame, path: str | Path, *, title: str | None = None) -> Any:
    """Accuracy (%) vs k (log2 axis), one band per placement/device; the baseline as a horizontal band."""
    hashed = frame[frame["placement"] != "conventional"].copy()
    hashed["series"] = hashed["placement"] + " on " + hashed["device.name"]
    written = plot_bands(
        hashed,
        x="hash_length",
        y="accuracy",
        y_scale=100.0,
        group_by="series",
        path=path,
        xlabel="kernel size: k hash bits (SimHash) or K centroids per codebook (PQ)",
        ylabel="top-1 accuracy (%)",
        title=title,
        xtick_labels={float(k): str(int(k)) for k in hashed["hash_length"].unique()},
        logx=True,
        after=lambda ax: _baseline(ax, frame),
    )
    return written


def _baseline(ax: Any, frame: pd.DataFrame) -> None:
    base = frame[frame["placement"] == "conventional"]["accuracy"] * 100.0
    if base.empty:
        return
    mean, std = float(base.mean()), float(base.std(ddof=1)) if len(base) > 1 else 0.0
    ax.axhline(mean, color="black", linestyle="--", linewidth=1, label="conventional AIMC (k-free)")
    ax.axhspan(mean - std, mean + std, color="black", alpha=0.08, linewidth=0)


def main(argv: list[str] | None = None) -> int:
    """Run the k study from the command line; returns the exit status."""
    return run_main(build_sweep, build_parser(), argv)
