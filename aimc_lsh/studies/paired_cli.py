"""Command line of :mod:`aimc_lsh.studies.paired`: ``studies/paired_compare.py A.csv B.csv``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from aimc_lsh.studies.paired import differing_columns, paired_differences

__all__ = ["build_parser", "main", "format_table"]


def build_parser() -> argparse.ArgumentParser:
    """The options of ``studies/paired_compare.py``."""
    p = argparse.ArgumentParser(
        prog="paired_compare.py",
        description="Compare two sweeps of the same simulated chips (same device, placements, times and "
        "--seeds) draw by draw: the mean of B - A per point, its standard error and how many chips favour "
        "B. Differences within one chip cancel the chip-to-chip spread of each sweep.",
    )
    p.add_argument("a", help="CSV of the reference sweep (A)")
    p.add_argument("b", help="CSV of the compared sweep (B)")
    p.add_argument("--on", nargs="*", default=[], help="extra columns to match on")
    p.add_argument("--value", default="accuracy", help="measured column. Default: %(default)s")
    return p


def _cell(value: object) -> str:
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else f"{value:.4g}"
    return str(value)


def format_table(summary: pd.DataFrame, value: str = "accuracy") -> str:
    """A Markdown table of :func:`paired_differences`' result (accuracies in percent)."""
    scale, unit = (100.0, " %") if value == "accuracy" else (1.0, "")
    groups = [
        c for c in summary.columns if c not in {"n", "mean_a", "mean_b", "diff", "diff_sem", "b_better"}
    ]
    head = [*groups, f"A{unit}", f"B{unit}", f"B - A{unit}", "draws B > A"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, r in summary.iterrows():
        sem = "n/a" if pd.isna(r["diff_sem"]) else f"{scale * r['diff_sem']:.2f}"
        cells = [_cell(r[g]) for g in groups] + [
            f"{scale * r['mean_a']:.2f}",
            f"{scale * r['mean_b']:.2f}",
            f"{scale * r['diff']:+.2f} ± {sem}",
            f"{int(r['b_better'])} / {int(r['n'])}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Print the paired table; exit 2 with one line on a missing file or sweeps that do not pair."""
    parser = build_parser()
    args = parser.parse_args(argv)
    frames = []
    for path in (args.a, args.b):
        if not Path(path).is_file():
            parser.error(f"{path} not found: give the CSV a sweep wrote (results/<study>/<name>.csv)")
        try:
            frames.append(pd.read_csv(path))
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
            parser.error(f"{path} is not a readable CSV: {err}")
    try:
        summary = paired_differences(*frames, on=args.on, value=args.value)
    except ValueError as err:
        parser.error(str(err))
    differ = differing_columns(*frames)
    print(f"A: {args.a}\nB: {args.b}")
    if differ:
        print(f"the sweeps differ in: {', '.join(differ)}")
    print("± = standard error of the mean difference over the matched programming seeds\n")
    print(format_table(summary, args.value))
    sys.stdout.flush()
    return 0
