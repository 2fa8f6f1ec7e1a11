"""Paired comparison of two sweeps over the same simulated chips: model B minus model A, draw by draw.

A sweep programs every point anew from its programming seed: programming noise, drift exponents and
sense-amplifier offsets are drawn from it, so two sweeps with the same device, placement, time and
``program_seed`` put two models on the same chip. Their difference per draw cancels the chip-to-chip
spread that dominates each sweep's standard deviation, and the mean difference has a standard error
that can resolve a point where the two unpaired means cannot.

:func:`paired_differences` matches the rows of two tidy results frames (the CSVs the sweeps write) on
the point columns and returns, per point group, the number of matched draws, both means, the mean
difference, its standard error and how many draws favour B. ``studies/paired_compare.py`` is its
command line.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

__all__ = ["BASE_KEYS", "IDENTITY_COLUMNS", "RESULT_COLUMNS", "paired_differences", "differing_columns"]

BASE_KEYS = ("placement", "t_seconds", "program_seed")
"""Columns that always identify a draw: where the model runs, when it is read, which chip it is on."""

RESULT_COLUMNS = frozenset({"accuracy", "n_correct", "n_images", "t_label"})
"""Measured (or derived) columns: never matched on."""

IDENTITY_COLUMNS = frozenset({"variant_id", "checkpoint", "checkpoint_sha256"})
"""Columns naming the model (``variant_id`` hashes the model with its configuration): they differ between
the two sweeps by design, so they are never matched on, even where they vary inside a sweep."""


def _check_columns(frame: pd.DataFrame, label: str, needed: Sequence[str]) -> None:
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise ValueError(
            f"sweep {label} has no column(s) {', '.join(missing)}; expected a CSV written by a study "
            f"(drift, noise, k or ADC sweep) with {', '.join(needed)}"
        )


def _keys(a: pd.DataFrame, b: pd.DataFrame, on: Sequence[str]) -> list[str]:
    """The base keys, ``on``, and every shared configuration column that varies inside either sweep."""
    keys = list(dict.fromkeys([*BASE_KEYS, *on]))
    skip = RESULT_COLUMNS | IDENTITY_COLUMNS
    shared = [c for c in a.columns if c in b.columns and c not in skip and c not in keys]
    for column in shared:
        if a[column].nunique(dropna=False) > 1 or b[column].nunique(dropna=False) > 1:
            keys.append(column)
    return keys


def differing_columns(a: pd.DataFrame, b: pd.DataFrame) -> list[str]:
    """Shared configuration columns constant in each sweep but different between them (e.g. checkpoint)."""
    out = []
    for column in a.columns:
        if column in RESULT_COLUMNS or column not in b.columns:
            continue
        va, vb = a[column].dropna().unique(), b[column].dropna().unique()
        if len(va) == 1 and len(vb) == 1 and va[0] != vb[0]:
            out.append(column)
    return out


def paired_differences(
    a: pd.DataFrame, b: pd.DataFrame, *, on: Sequence[str] = (), value: str = "accuracy"
) -> pd.DataFrame:
    """Per point group, ``value`` of sweep B minus sweep A over the draws both sweeps measured.

    Args:
        a: Tidy results of the reference sweep (one row per point and programming seed).
        b: Tidy results of the compared sweep.
        on: Extra columns to match on (the base keys and any column that varies inside a sweep are
            matched anyway).
        value: The measured column.

    Returns:
        One row per group (the match keys without ``program_seed``): ``n`` matched draws, ``mean_a``,
        ``mean_b``, ``diff`` (mean of B − A), ``diff_sem`` (its standard error, ddof=1; NaN for one
        draw) and ``b_better`` (draws where B > A).

    Raises:
        ValueError: If a column is missing, a draw appears twice in one sweep, or no draw matches.

    """
    keys = _keys(a, b, on)
    for frame, label in ((a, "A"), (b, "B")):
        _check_columns(frame, label, [*keys, value])
        duplicated = frame.duplicated(keys)
        if duplicated.any():
            row = frame.loc[duplicated, keys].iloc[0].to_dict()
            raise ValueError(
                f"sweep {label} measures the draw {row} more than once; match on the column that tells "
                "the rows apart (on=...)"
            )
    merged = a[[*keys, value]].merge(b[[*keys, value]], on=keys, suffixes=("_a", "_b"))
    if merged.empty:
        raise ValueError(
            f"the two sweeps share no draw (matched on {', '.join(keys)}); run them with the same "
            "placements, times and --seeds"
        )
    merged["diff"] = merged[f"{value}_b"] - merged[f"{value}_a"]
    groups = [k for k in keys if k != "program_seed"]
    summary = merged.groupby(groups, sort=True, dropna=False).agg(
        n=("diff", "size"),
        mean_a=(f"{value}_a", "mean"),
        mean_b=(f"{value}_b", "mean"),
        diff=("diff", "mean"),
        diff_std=("diff", "std"),
        b_better=("diff", lambda d: int((d > 0).sum())),
    )
    summary["diff_sem"] = summary.pop("diff_std") / np.sqrt(summary["n"])
    return summary.reset_index()
