"""Plots of sweep results: mean +- standard deviation bands over seeds, one line per configuration.

:func:`summarise` reduces a tidy results frame to mean, std and count per (group, x);
:func:`plot_bands` draws it (optionally one panel per value of a column) and saves a PNG atomically.
Matplotlib runs on the non-interactive ``Agg`` backend, so plotting works without a display.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display needed; must precede pyplot
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from aimc_lsh.utils import atomic_path  # noqa: E402

__all__ = ["summarise", "plot_bands", "group_label"]


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
    """Legend text of a group: ``value`` for one key, ``key=value, ...`` for several."""
    if len(keys) == 1:
        return str(values[0])
    return ", ".join(f"{k}={v}" for k, v in zip(keys, values, strict=True))


def plot_bands(
    frame: pd.DataFrame,
    *,
    x: str,
    y: str,
    path: str | os.PathLike[str],
    group_by: str | Sequence[str] | None = None,
    panel_by: str | None = None,
    logx: bool = False,
    xlabel: str | None = None,
    ylabel: str | None = None,
    title: str | None = None,
    xtick_labels: Mapping[float, str] | None = None,
    y_scale: float = 1.0,
) -> Path:
    """Plot mean +- std of ``y`` against ``x``, one line (with a shaded band) per group; save a PNG.

    Args:
        frame: Tidy results.
        x: Column on the x axis (numeric).
        y: Column on the y axis (averaged over the remaining rows of each group and x, e.g. seeds).
        path: PNG destination (written atomically).
        group_by: Columns distinguishing lines.
        panel_by: Column with one subplot per value (shared y axis).
        logx: Logarithmic x axis (e.g. time after programming).
        xlabel: X axis label (default: ``x``).
        ylabel: Y axis label (default: ``y``).
        title: Figure title.
        xtick_labels: Tick positions -> labels (e.g. ``{3600: "1h"}``); default ticks otherwise.
        y_scale: Factor applied to ``y`` before plotting (e.g. 100 for percent).

    Returns:
        The path written.

    """
    panels = sorted(frame[panel_by].dropna().unique().tolist()) if panel_by else [None]
    fig, axes = plt.subplots(
        1, len(panels), figsize=(5.2 * len(panels), 3.8), sharey=True, squeeze=False, constrained_layout=True
    )
    groups = _as_list(group_by)
    for ax, panel in zip(axes[0], panels, strict=True):
        part = frame if panel is None else frame[frame[panel_by] == panel]
        stats = summarise(part, x, y, groups)
        for values, line in stats.groupby(groups, sort=True, dropna=False) if groups else [((), stats)]:
            values = values if isinstance(values, tuple) else (values,)
            mean, std = line["mean"] * y_scale, line["std"] * y_scale
            label = group_label(groups, values) if groups else y
            (handle,) = ax.plot(line[x], mean, marker="o", markersize=3.5, label=label)
            ax.fill_between(line[x], mean - std, mean + std, alpha=0.2, color=handle.get_color(), linewidth=0)
        if logx:
            ax.set_xscale("log")
        if xtick_labels:
            ticks = sorted(xtick_labels)
            ax.set_xticks(ticks, [xtick_labels[t] for t in ticks])
            ax.minorticks_off()
        ax.set_xlabel(xlabel or x)
        ax.grid(True, alpha=0.3)
        if panel is not None:
            ax.set_title(f"{panel_by} = {panel}")
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel(ylabel or y)
    if title:
        fig.suptitle(title, fontsize=10)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return Path(path)
