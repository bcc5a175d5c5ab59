"""What every figure shares: one colour per category name in every figure of a run (``category_colours``), the
figure size and legend limits, saving at one dpi, an empty figure that says why, and the small helpers of grids,
ticks, legends, error bars and heatmap panels. matplotlib, numpy and pandas only."""

from __future__ import annotations

import math
from collections.abc import Iterable

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.colors import to_hex, to_rgb

DPI = 120
MAX_FIGSIZE = (24.0, 18.0)  # inches; larger grids shrink their panels instead of growing further
MAX_LEGEND_ENTRIES = 30
METRIC_LABELS = {
    "pearson_mean": "mean per-cell Pearson r",
    "spearman_mean": "mean per-cell Spearman r",
    "marginal_ll": "held-out log p(x) per cell (nats)",
}


# ---------------------------------------------------------------------------------------------------------------
# shared helpers


def category_colours(names: Iterable) -> dict[str, str]:
    """Colour (hex string) per category name, a function of the sorted unique names only.

    Names are compared as strings; NaN/None are ignored. tab10 for up to 10 names, tab20 for up to 20,
    evenly spaced husl hues beyond that. The same set of names always gives the same mapping, whatever
    the order or repetition of the input.
    """
    unique = sorted({str(n) for n in names if not _is_missing(n)})
    n = len(unique)
    if n <= 10:
        colours = [plt.get_cmap("tab10")(i) for i in range(n)]
    elif n <= 20:
        colours = [plt.get_cmap("tab20")(i) for i in range(n)]
    else:
        import seaborn as sns

        colours = sns.husl_palette(n, s=0.85, l=0.6)
    return {name: to_hex(c) for name, c in zip(unique, colours, strict=True)}


def _is_missing(value) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _figsize(ncols: int, nrows: int, panel_w: float, panel_h: float, extra_w: float = 0.0, extra_h: float = 0.0):
    """Size that grows with the number of panels, capped at MAX_FIGSIZE."""
    return (
        min(ncols * panel_w + extra_w, MAX_FIGSIZE[0]),
        min(nrows * panel_h + extra_h, MAX_FIGSIZE[1]),
    )


def _grid(n: int, max_cols: int) -> tuple[int, int]:
    ncols = max(1, min(n, max_cols))
    return ncols, max(1, math.ceil(n / ncols))


def _save(fig, path) -> None:
    try:
        fig.savefig(path, dpi=DPI)
    finally:
        plt.close(fig)


def _empty_figure(path, title: str, message: str) -> None:
    fig, ax = plt.subplots(figsize=(6, 3), constrained_layout=True)
    ax.text(0.5, 0.5, message, ha="center", va="center", fontsize=11, color="0.3", transform=ax.transAxes)
    ax.set_axis_off()
    ax.set_title(title)
    _save(fig, path)


def _finite(table: pd.DataFrame, *columns: str) -> pd.DataFrame:
    """Rows whose ``columns`` are all finite numbers (converted to float)."""
    out = table.copy()
    keep = np.ones(len(out), dtype=bool)
    for c in columns:
        out[c] = pd.to_numeric(out[c], errors="coerce").astype(float)
        keep &= np.isfinite(out[c].to_numpy())
    return out[keep]


def _as_str(table: pd.DataFrame, *columns: str) -> pd.DataFrame:
    """Drop rows missing any of ``columns`` and turn those columns into strings."""
    out = table.dropna(subset=list(columns)).copy()
    for c in columns:
        out[c] = out[c].astype(str)
    return out


def _heatmap_panels(n_panels: int, max_cols: int, rows: list[str], n_columns: int, cell: tuple[float, float],
                    extra_h: float):  # fmt: skip
    """A grid of heatmap panels (one per model) with ``rows`` labelled rows and ``n_columns`` columns of cells of
    ``cell`` (width, height) inches: (figure, axes, font size of the cell labels)."""
    ncols, nrows = _grid(n_panels, max_cols)
    label_w = 0.07 * max(len(r) for r in rows)
    fig, axes = plt.subplots(nrows, ncols, squeeze=False, constrained_layout=True,
                             figsize=_figsize(ncols, nrows, 1.0 + label_w + cell[0] * n_columns,
                                              1.4 + cell[1] * len(rows), 1.3, extra_h))  # fmt: skip
    return fig, axes, 8 if n_columns * len(rows) * n_panels <= 120 else 6


def _label_ticks(ax, axis: str, positions, labels) -> None:
    """Tick labels, rotated when long or many so that they do not overlap."""
    labels = [str(label) for label in labels]
    if axis == "x":
        longest = max((len(label) for label in labels), default=0)
        if longest * len(labels) > 40 or longest > 10:
            ax.set_xticks(positions, labels, rotation=40, ha="right", rotation_mode="anchor")
        else:
            ax.set_xticks(positions, labels)
    else:
        ax.set_yticks(positions, labels)


def _legend_width(labels, ncol: int = 1) -> float:
    """Rough width in inches of a legend with these labels (for sizing the figure)."""
    longest = max((len(str(label)) for label in labels), default=0)
    return ncol * (0.6 + 0.07 * longest)


def _figure_legend(fig, handles, title: str) -> None:
    """The figure's one legend, right of the panels and centred on them, so that it stays clear of the
    figure title above (which is centred on the whole figure, legend included)."""
    fig.legend(handles=handles, title=title, loc="outside right center", fontsize=8, title_fontsize=9)


def _text_colour(rgba) -> str:
    """Black or white, whichever reads better on this background colour."""
    r, g, b = to_rgb(rgba)
    return "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white"


def _decimals(value: float) -> int:
    magnitude = abs(value)
    return 0 if magnitude >= 100 else 1 if magnitude >= 10 else 2 if magnitude >= 1 else 3


def _error_bars(ax, x, mean, sd) -> None:
    """± sd whiskers where the sd is defined (none for a single seed)."""
    ok = np.isfinite(np.asarray(sd, dtype=float))
    if ok.any():
        x, mean, sd = (np.asarray(v, dtype=float)[ok] for v in (x, mean, sd))
        ax.errorbar(x, mean, yerr=sd, fmt="none", ecolor="0.2", elinewidth=0.8, capsize=2)


def _mean_sd(table: pd.DataFrame, by: list[str], value: str) -> pd.DataFrame:
    """Mean, sd (NaN for one observation) and count of ``value`` per group, groups as columns."""
    stats = table.groupby(by, observed=True)[value].agg(["mean", "std", "count"]).reset_index()
    return stats.rename(columns={"std": "sd", "count": "n"})
