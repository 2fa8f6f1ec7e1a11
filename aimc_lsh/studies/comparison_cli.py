"""Command line of the kernel comparison (``studies/kernel_comparison.py``).

Every option is checked before any compute; bad input exits with status 2 and one line naming the
problem. See :mod:`aimc_lsh.studies.comparison` for the rows and what is measured.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from aimc_lsh.hardware.programming import DRIFT_REFERENCES
from aimc_lsh.studies.cli import NO_DOWNLOAD_HELP, StudyParser, UsageError, parse_durations, parse_int_list
from aimc_lsh.studies.comparison import ROWS, ComparisonSetup, comparison_table, run_comparison

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The ``kernel_comparison.py`` command line."""
    p = StudyParser(
        prog="kernel_comparison.py",
        description="Accuracy, parameters, dense FLOPs and energy per inference of FP32, conventional AIMC, "
        "LSH (SimHash), PQ (LUT-NN) and LSH neuron merging, each recovered with the same training budget "
        "and measured on a simulated device at t = 0 and after drift. Rows: "
        + "; ".join(f"{name}: {spec.description}" for name, spec in ROWS.items())
        + ". Each row is saved as <out>/<row>.json and reused by later runs (--force recomputes).",
    )
    p.add_argument(
        "--dataset",
        choices=("cifar10", "digits"),
        default="cifar10",
        help="cifar10: pretrained ResNet-20, trained on the training batches and tested on the test batch "
        "under the data root; digits: the embedded 8x8 digits CNN. Default: %(default)s",
    )
    p.add_argument(
        "--data-root", default=None, help="Folder with cifar-10-batches-py/ (default: $AIMC_LSH_DATA)."
    )
    p.add_argument(
        "--models-root",
        default=None,
        help="Folder or file with the ResNet-20 weights (default: $AIMC_LSH_MODELS, then the cache).",
    )
    p.add_argument("--no-download", action="store_true", help=NO_DOWNLOAD_HELP)
    p.add_argument("--rows", default=",".join(ROWS), help="Comma-separated rows. Default: %(default)s")
    p.add_argument(
        "--budget",
        type=float,
        default=4.0,
        help="Recovery budget per row in minutes of wall clock (0: no recovery). Default: %(default)s",
    )
    p.add_argument(
        "--epochs",
        type=float,
        default=None,
        help="Recover for this many epochs instead of --budget (reproducible run to run).",
    )
    p.add_argument(
        "--device", default="pcm", help="Device profile of the hardware columns. Default: %(default)s"
    )
    p.add_argument(
        "--time", default="1d", help="Drift time of the second hardware column. Default: %(default)s"
    )
    p.add_argument("--seeds", default="0,1", help="Programming seeds. Default: %(default)s")
    p.add_argument(
        "--drift-reference",
        choices=DRIFT_REFERENCES,
        default="random_sign",
        help="Inputs of the global drift-compensation read-out (one_hot: aihwkit's). Default: %(default)s",
    )
    p.add_argument(
        "--seed", type=int, default=0, help="Seed of training and approximations. Default: %(default)s"
    )
    p.add_argument(
        "--calib-images", type=int, default=512, help="Training images for calibration. Default: %(default)s"
    )
    p.add_argument("--train-limit", type=int, default=None, help="Use only the first N training images.")
    p.add_argument("--test-limit", type=int, default=None, help="Use only the first N test images.")
    p.add_argument("--threads", type=int, default=1, help="torch threads. Default: %(default)s")
    p.add_argument("--out", default="results/comparison", help="Output folder. Default: %(default)s")
    p.add_argument("--force", action="store_true", help="Recompute rows whose JSON exists.")
    return p


def _setup(args: argparse.Namespace) -> tuple[ComparisonSetup, list[str]]:
    from aimc_lsh.data import load_dataset, training_crop_padding
    from aimc_lsh.hardware import load_device
    from aimc_lsh.studies.workload import pretrained_model, resolve_source

    rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    unknown = [r for r in rows if r not in ROWS]
    if not rows or unknown:
        raise UsageError(f"unknown or empty --rows {args.rows!r}; allowed: {', '.join(ROWS)}")
    epochs_ok = args.epochs is None or (math.isfinite(args.epochs) and args.epochs > 0)
    if not (math.isfinite(args.budget) and args.budget >= 0) or not epochs_ok:
        raise UsageError(
            f"--budget must be a finite number >= 0 and --epochs one > 0, got {args.budget} and {args.epochs}"
        )
    for name in ("calib_images", "threads", "train_limit", "test_limit"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be a positive integer, got {value}")
    device = load_device(args.device)
    try:
        times = parse_durations(args.time)
    except ValueError as err:
        raise UsageError(f"--time: {err}") from None
    if len(times) != 1 or times[0] <= 0:
        raise UsageError(f"--time takes one time > 0, got {args.time!r}")
    device.check_time(times[0])
    seeds = parse_int_list(args.seeds, "seed", minimum=0)
    source = resolve_source(
        args.dataset, data_root=args.data_root, models_root=args.models_root, download=not args.no_download
    )
    teacher = pretrained_model(source.context()).eval()
    train_set = load_dataset(args.dataset, root=source.data_root, train=True, limit=args.train_limit)
    test_set = load_dataset(args.dataset, root=source.data_root, train=False, limit=args.test_limit)
    setup = ComparisonSetup(
        teacher=teacher,
        train_set=train_set,
        test_set=test_set,
        device=args.device,
        budget_s=60.0 * args.budget,
        epochs=args.epochs,
        t_inference=times[0],
        drift_reference=args.drift_reference,
        seeds=seeds,
        calib_images=args.calib_images,
        seed=args.seed,
        crop_padding=training_crop_padding(args.dataset),
    )
    return setup, rows


def main(argv: Sequence[str] | None = None) -> int:
    """Run the comparison; returns the exit status (0 ok, 2 bad input)."""
    from aimc_lsh.utils import atomic_write_text

    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:
        return int(stop.code or 0)
    try:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("")
        probe.unlink()
        setup, rows = _setup(args)
    except (ValueError, FileNotFoundError, PermissionError, LookupError, OSError) as err:
        print(f"{parser.prog}: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    records = run_comparison(rows, setup, out, force=args.force)
    table = comparison_table(records)
    stem = out / f"comparison_{Path(str(setup.device)).stem}_{args.dataset}"
    atomic_write_text(stem.with_suffix(".md"), table)
    flat = [{k: json.dumps(v) if isinstance(v, dict | list) else v for k, v in r.items()} for r in records]
    import pandas as pd

    atomic_write_text(stem.with_suffix(".csv"), pd.DataFrame(flat).to_csv(index=False))
    print(table)
    return 0
