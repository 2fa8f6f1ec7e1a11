"""Plots of sweep results: mean +- standard deviation bands over seeds, one line per configuration.

:func:`summarise` reduces a tidy results frame to mean, std and count per (group, x);
:func:`plot_bands` draws it (optionally one panel per value of a column) and saves a PNG atomically.
Figures are built with matplotlib's object API (:class:`~matplotlib.figure.Figure`, no pyplot), so
plotting works without a display and never changes the backend of the caller (e.g. a notebook).
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib import rcParams
from matplotlib.figure import Figure

from aimc_lsh.utils import atomic_path

__all__ = ["summarise", "plot_bands", "group_label"]

_STYLES = ("-", "--", ":", "-.")


def _as_list(columns: str | Sequence[str] | None) -> list[str]:
    if columns is None:
        return []
    return [columns] if isinstance(columns, str) else list(columns)


def summarise(
    frame: pd.DataFrame, x: str, y: str, group_by: str | Sequence[str] | None = None
) -> pd.DataFrame:
    """Mean, standard deviation (ddof=1; 0 for a single value) and count of ``y`` per group and ``x``.

    Args:
        frame: Tidy results (one row per seed).
        x: Column on the x axis.
        y: Column averaged.
        group_by: Columns distinguishing lines.

    Returns:
        A frame with columns ``group_by + [x, "mean", "std", "n"]``, sorted by them.

    Raises:
        KeyError: If a named column is missing.

    """
    keys = [*_as_list(group_by), x]
    missing = [c for c in [*keys, y] if c not in frame.columns]
    if missing:
        raise KeyError(f"columns not in the results: {', '.join(missing)}; have {', '.join(frame.columns)}")
    grouped = frame.groupby(keys, dropna=False, sort=True)[y]
    out = grouped.agg(["mean", "std", "count"]).reset_index().rename(columns={"count": "n"})
    out["std"] = out["std"].fillna(0.0)
    return out


def group_label(keys: Sequence[str], values: Sequence[object]) -> str:
    """Legend text of a group: its values joined by commas (``codes_on_array, compensated``)."""
    return ", ".join(str(v) for v in values[: len(keys)])


def plot_bands(
    frame: pd.DataFrame,
    *,
    x: str,
    y: str,
    path: str | os.PathLike[str],
    group_by: str | Sequence[str] | None = None,
    style_by: str | None = None,
    panel_by: str | None = None,
    logx: bool = False,
    xlabel: str | None = None,
    panel_xlabels: Mapping[Any, str] | None = None,
    ylabel: str | None = None,
    title: str | None = None,
    xtick_labels: Mapping[float, str] | None = None,
    y_scale: float = 1.0,
    after: Callable[[Any], None] | None = None,
) -> Path:
    """Plot mean +- std of ``y`` against ``x``, one line (with a shaded band) per group; save a PNG.

    Args:
        frame: Tidy results.
        x: Column on the x axis (numeric).
        y: Column on the y axis (averaged over the remaining rows of each group and x, e.g. seeds).
        path: PNG destination (written atomically).
        group_by: Columns distinguishing lines by colour.
        style_by: Column distinguishing lines by line style (solid, dashed, dotted, ...), so lines
            that coincide stay visible.
        panel_by: Column with one subplot per value (shared y axis).
        logx: Logarithmic x axis (e.g. time after programming).
        xlabel: X axis label (default: ``x``).
        panel_xlabels: ``panel_by`` value -> its own x axis label (e.g. a unit per knob); panels not
            named get ``xlabel``.
        ylabel: Y axis label (default: ``y``).
        title: Figure title (wrapped to the figure width).
        xtick_labels: Tick positions -> labels (e.g. ``{3600: "1h"}``); default ticks otherwise.
        y_scale: Factor applied to ``y`` before plotting (e.g. 100 for percent).
        after: Called with each panel's axes after its lines are drawn (to add references).

    Returns:
        The path written.

    """
    panels = sorted(frame[panel_by].dropna().unique().tolist()) if panel_by else [None]
    ncols = min(3, len(panels))
    nrows = -(-len(panels) // ncols)
    fig = Figure(figsize=(5.6 * ncols, 4.0 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, sharey=True, squeeze=False)
    flat_axes = axes.ravel().tolist()
    for unused in flat_axes[len(panels) :]:
        unused.set_visible(False)
    colours = _as_list(group_by)
    keys = colours + ([style_by] if style_by else [])
    colour_values = (
        sorted({tuple(v) for v in frame[colours].astype(str).itertuples(index=False)}) if colours else []
    )
    style_values = sorted(frame[style_by].astype(str).unique().tolist()) if style_by else []
    cycle = rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, panel in zip(flat_axes, panels, strict=False):
        part = frame if panel is None else frame[frame[panel_by] == panel]
        stats = summarise(part, x, y, keys)
        for values, line in stats.groupby(keys, sort=True, dropna=False) if keys else [((), stats)]:
            values = values if isinstance(values, tuple) else (values,)
            colour_key = tuple(str(v) for v in values[: len(colours)])
            colour = cycle[colour_values.index(colour_key) % len(cycle)] if colours else cycle[0]
            style = _STYLES[style_values.index(str(values[-1])) % len(_STYLES)] if style_by else "-"
            mean, std = line["mean"] * y_scale, line["std"] * y_scale
            label = group_label(keys, values) if keys else y
            ax.plot(line[x], mean, marker="o", markersize=3.5, label=label, color=colour, linestyle=style)
            ax.fill_between(line[x], mean - std, mean + std, alpha=0.15, color=colour, linewidth=0)
        if logx:
            ax.set_xscale("log")
        if xtick_labels:
            ticks = sorted(xtick_labels)
            ax.set_xticks(ticks, [xtick_labels[t] for t in ticks])
            ax.minorticks_off()
        ax.set_xlabel((panel_xlabels or {}).get(panel) or xlabel or x)
        ax.grid(True, alpha=0.3)
        if panel is not None:
            ax.set_title(f"{panel_by} = {panel}", fontsize=9)
        if after is not None:
            after(ax)
        ax.legend(fontsize=7)
    for row in axes:
        row[0].set_ylabel(ylabel or y)
    if title:
        fig.suptitle(textwrap.fill(title, width=int(78 * ncols)), fontsize=9)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    return Path(path)
