"""Command-line plumbing shared by the study scripts in ``studies/``.

* :class:`StudyParser`: an ``argparse`` parser whose errors are one line (``prog: error: ...``) + exit 2.
* :func:`add_common_arguments`: the options every study has (output folder, workers, Ray, threads,
  seeds, dataset, data root, checkpoint, ...).
* Parsers for option values: durations with units (``1h``, ``10y``), comma lists of ints/floats/names.
* :func:`check_output_files`: a results file the options name can be written (before the work).
* :func:`run_main`: runs a study's ``main`` and turns the expected failures (bad input, missing data,
  a failed point, an interruption) into one clear line on stderr and a non-zero exit status.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, NoReturn

if TYPE_CHECKING:
    from aimc_lsh.studies.runner import Sweep

__all__ = [
    "NO_DOWNLOAD_HELP",
    "StudyParser",
    "UsageError",
    "DURATION_UNITS",
    "parse_duration",
    "format_duration",
    "parse_durations",
    "parse_int_list",
    "parse_float_list",
    "parse_name_list",
    "parse_workers",
    "positive_int",
    "add_common_arguments",
    "check_output_files",
    "run_main",
]


class UsageError(ValueError):
    """A bad command-line value found while validating (printed as one line, exit status 2)."""


class StudyParser(argparse.ArgumentParser):
    """ArgumentParser printing errors as a single line (no usage dump) and exiting with status 2."""

    def error(self, message: str) -> NoReturn:
        """Print ``prog: error: message (see --help)`` and exit 2."""
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


DURATION_UNITS: dict[str, float] = {
    "s": 1.0,
    "min": 60.0,
    "h": 3600.0,
    "d": 86_400.0,
    "w": 7 * 86_400.0,
    "mo": 30 * 86_400.0,
    "y": 365 * 86_400.0,
}
"""Duration suffixes: seconds, minutes, hours, days, weeks, months (30 days), years (365 days)."""

_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([a-z]*)\s*$")


NO_DOWNLOAD_HELP = (
    "never download: without --data-root / $AIMC_LSH_DATA, CIFAR-10 is read from the cache "
    "($AIMC_LSH_CACHE/data or ~/.cache/aimc_lsh/data) and fetched there with checksums on first use, "
    "as the weights are"
)
"""Help of ``--no-download`` in every study's parser."""


def parse_duration(text: str) -> float:
    """Seconds in a duration such as ``"3600"``, ``"1h"``, ``"1.5d"``, ``"10y"`` (see :data:`DURATION_UNITS`).

    Raises:
        UsageError: If the text is not a non-negative finite number with an optional known unit.

    """
    match = _DURATION.match(str(text).strip().lower())
    if str(text).strip().startswith("-"):
        raise UsageError(f"time {text!r} is negative; times after programming must be >= 0")
    if not match or match.group(2) not in ("", *DURATION_UNITS):
        raise UsageError(
            f"cannot read time {text!r}; use seconds or a number with a unit "
            f"({', '.join(DURATION_UNITS)}), e.g. 1s, 1h, 1d, 1w, 1mo, 1y, 10y"
        )
    value = float(match.group(1)) * DURATION_UNITS.get(match.group(2) or "s", 1.0)
    if not math.isfinite(value):
        raise UsageError(f"time {text!r} is not finite")
    return value


def format_duration(seconds: float) -> str:
    """Short label of a duration: the largest unit dividing it evenly (``86400 -> "1d"``), else seconds."""
    for unit in ("y", "mo", "w", "d", "h", "min"):
        count = seconds / DURATION_UNITS[unit]
        if count >= 1 and abs(count - round(count)) < 1e-9:
            return f"{round(count)}{unit}"
    return f"{seconds:g}s"


def _split(text: str, what: str) -> list[str]:
    items = [t.strip() for t in str(text).split(",")]
    if not text or not str(text).strip() or any(not t for t in items):
        raise UsageError(f"{what} list {text!r} is empty or has an empty entry; give comma-separated values")
    if len(set(items)) != len(items):
        raise UsageError(f"{what} list {text!r} repeats a value")
    return items


def parse_durations(text: str) -> list[float]:
    """Comma-separated durations (``"1s,1h,1d"``) -> sorted unique seconds; empty or negative is an error."""
    values = [parse_duration(t) for t in _split(text, "time")]
    if len(set(values)) != len(values):
        raise UsageError(f"time list {text!r} names the same time twice")
    return sorted(values)


def parse_int_list(text: str, what: str, *, minimum: int | None = None) -> list[int]:
    """Comma-separated integers, each ``>= minimum`` when given."""
    out = []
    for item in _split(text, what):
        try:
            value = int(item)
        except ValueError:
            raise UsageError(f"{what} {item!r} is not an integer") from None
        if minimum is not None and value < minimum:
            raise UsageError(f"{what} {value} is below the minimum {minimum}")
        out.append(value)
    return out


def parse_float_list(text: str, what: str, *, minimum: float | None = None) -> list[float]:
    """Comma-separated finite floats, each ``>= minimum`` when given."""
    out = []
    for item in _split(text, what):
        try:
            value = float(item)
        except ValueError:
            raise UsageError(f"{what} {item!r} is not a number") from None
        if not math.isfinite(value) or (minimum is not None and value < minimum):
            raise UsageError(f"{what} {item!r} must be finite and >= {minimum}")
        out.append(value)
    return out


def parse_name_list(text: str, what: str, allowed: Sequence[str] | None = None) -> list[str]:
    """Comma-separated names, each in ``allowed`` when given."""
    items = _split(text, what)
    if allowed is not None:
        bad = [i for i in items if i not in allowed]
        if bad:
            raise UsageError(f"unknown {what} {', '.join(bad)}; allowed: {', '.join(allowed)}")
    return items


def parse_workers(text: str) -> int:
    """``--workers`` value: a positive integer or ``auto`` (the CPUs available to this process)."""
    from aimc_lsh.studies.executors import auto_workers

    if str(text).strip().lower() == "auto":
        return auto_workers()
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer or 'auto', got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer or 'auto', got {text!r}")
    return value


def positive_int(text: str) -> int:
    """An argparse ``type`` accepting integers >= 1 (``--limit``, ``--threads``, ``--hash-length`` ...).

    Raises:
        argparse.ArgumentTypeError: Naming the text, for anything else (argparse prefixes the option).

    Examples:
        >>> positive_int("3")
        3

    """
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def add_common_arguments(
    parser: argparse.ArgumentParser, *, study: str, default_seeds: str = "0,1,2"
) -> None:
    """Add the options every study shares.

    Args:
        parser: The study's parser.
        study: Study name, used for the default output folder ``results/<study>``.
        default_seeds: Default of ``--seeds``.

    """
    data = parser.add_argument_group("data and model")
    data.add_argument(
        "--dataset",
        choices=("cifar10", "digits"),
        default="cifar10",
        help="cifar10: the pretrained ResNet-20 on the CIFAR-10 test batch under the data root; "
        "digits: the embedded 8x8 digits benchmark with a small CNN trained on the spot (no files "
        "needed, seconds). Default: %(default)s",
    )
    data.add_argument(
        "--data-root",
        default=None,
        help="Folder containing cifar-10-batches-py/ (default: $AIMC_LSH_DATA). Ignored for digits.",
    )
    data.add_argument(
        "--models-root",
        default=None,
        help="Folder (or file) with the pretrained ResNet-20 weights resnet20-12fca82f.th "
        "(default: $AIMC_LSH_MODELS, then the cache; downloaded with checksum when missing and online).",
    )
    data.add_argument("--no-download", action="store_true", help=NO_DOWNLOAD_HELP)
    data.add_argument(
        "--checkpoint",
        default="auto",
        help="Fine-tuned weights of the hashed model: a checkpoint file written by studies/finetune.py, or "
        "a network of real weights that replaces the pretrained backbone for every placement (e.g. a merged "
        "network from studies/merge_neurons.py --save-dir, hashed with --kernel/--hash-length); "
        "'auto' = the cached default fine-tuned model if present (CIFAR-10: the k=256 checkpoint "
        "studies/finetune.py / aimc_lsh.train.default_checkpoint caches under $AIMC_LSH_CACHE or "
        "~/.cache/aimc_lsh/checkpoints; digits: fine-tuned in seconds and cached), else the "
        "UN-fine-tuned hashed model (~10-18%% on CIFAR-10), with a note; 'default' = like auto but "
        "trains the CIFAR-10 default when missing (~30 min once); 'none' = un-fine-tuned. The "
        "conventional baseline uses the pretrained weights unless the file is such a network. "
        "Default: %(default)s",
    )
    data.add_argument(
        "--limit",
        type=positive_int,
        default=None,
        help="Evaluate only the first N test images (default: the whole test split).",
    )
    data.add_argument(
        "--batch-size",
        type=positive_int,
        default=128,
        help="Images per forward pass (128 was fastest for hashed ResNet-20 here). Default: %(default)s",
    )
    run = parser.add_argument_group("running")
    run.add_argument(
        "--seeds",
        default=default_seeds,
        help="Comma-separated programming-noise seeds; every configuration is evaluated once per seed "
        "(mean +- std over seeds in the plot). Default: %(default)s",
    )
    run.add_argument(
        "--out",
        default=os.path.join("results", study),
        help="Output folder for <name>.csv, .json, .png and the resume journal. Default: %(default)s",
    )
    run.add_argument(
        "--workers",
        type=parse_workers,
        default="auto",
        help="Local worker processes (or CPUs of a local Ray instance); 'auto' = CPUs available, 1 = "
        "serial. Results do not depend on it. Default: %(default)s",
    )
    run.add_argument(
        "--threads",
        type=positive_int,
        default=1,
        help="torch threads per point (the same on every backend, so results match). Default: %(default)s",
    )
    run.add_argument(
        "--ray-address",
        default=None,
        help="Run the points as Ray tasks: 'local' starts a private local Ray instance with --workers "
        "CPUs; 'auto' or host:port / ray://host:10001 joins a running cluster. Default: no Ray.",
    )
    run.add_argument(
        "--fresh",
        action="store_true",
        help="Discard earlier results of the same sweep in --out instead of resuming from them.",
    )
    run.add_argument("--no-progress", action="store_true", help="Hide the progress bar.")


def check_output_files(
    parser: argparse.ArgumentParser, paths: Mapping[str, str | os.PathLike[str] | None]
) -> None:
    """Stop (exit 2, one line) if a results file named on the command line could not be written.

    Call it right after parsing, so a folder given where a file belongs costs nothing instead of a
    traceback after the computation (see :func:`aimc_lsh.studies.runner.check_output_file`).

    Args:
        parser: The study's parser (its ``error`` prints the line and exits).
        paths: Option name -> the path it was given (``None``: option not used, skipped).

    """
    from aimc_lsh.studies.runner import check_output_file

    for option, path in paths.items():
        if path is None or str(path) == "":
            continue
        try:
            check_output_file(path, option)
        except ValueError as err:
            parser.error(str(err))


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split())


def run_main(
    build: Callable[[argparse.Namespace], Sweep],
    parser: argparse.ArgumentParser,
    argv: Sequence[str] | None = None,
) -> int:
    """Parse arguments, build and validate the sweep, run it, and report in one line.

    ``build(args)`` must do every check that can fail on user input (devices, times, data, checkpoint)
    without heavy computation; its failures, and an unwritable output folder, are reported before any
    point runs. Exit statuses: 0 success; 2 bad input; 1 a point failed or the journal is locked or
    damaged; 128 + signal number when interrupted (rerun to resume).

    Args:
        build: Turns parsed arguments into a :class:`~aimc_lsh.studies.runner.Sweep` (validating them).
        parser: The study's parser (see :func:`add_common_arguments`).
        argv: Arguments (default ``sys.argv[1:]``).

    Returns:
        The exit status.

    """
    from aimc_lsh.studies.executors import PointError
    from aimc_lsh.studies.journal import JournalError
    from aimc_lsh.studies.runner import SweepInterrupted, check_output_dir, run_sweep

    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:  # usage error (already printed in one line) or --help
        return int(stop.code or 0)
    prog = parser.prog
    try:
        out_dir = check_output_dir(args.out)
        sweep = build(args)
    except (ValueError, FileNotFoundError, PermissionError, LookupError) as err:
        print(f"{prog}: error: {_one_line(err)}", file=sys.stderr)
        return 2
    try:
        result = run_sweep(
            sweep,
            out_dir,
            workers=args.workers,
            threads=args.threads,
            ray_address=args.ray_address,
            progress=not args.no_progress,
            fresh=args.fresh,
        )
    except SweepInterrupted as stop:
        print(f"{prog}: {stop}", file=sys.stderr)
        return stop.exit_code
    except (PointError, JournalError) as err:
        print(f"{prog}: error: {_one_line(err)}", file=sys.stderr)
        return 1
    print(
        f"{prog}: {len(sweep.points)} points ({result.computed} computed, {result.resumed} resumed) "
        f"in {result.seconds:.1f} s -> {result.outputs.csv}, {result.outputs.json.name}, "
        f"{result.outputs.png.name}",
        file=sys.stderr,
    )
    return 0
