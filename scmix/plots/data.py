"""Figures of the data stages: QC (``qc_scatter``, rule plot_qc)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.colors import Normalize
from matplotlib.lines import Line2D

# ---------------------------------------------------------------------------------------------------------------
# QC


def qc_scatter(
    before: pd.DataFrame,
    after: pd.DataFrame,
    path,
    *,
    dataset: str,
    unit: str = "cell",
    x: str = "total_counts",
    y: str = "n_genes_by_counts",
    colour: str = "pct_counts_mt",
    thresholds=(),
    max_points: int = 200_000,
    seed: int = 0,
    genes: tuple[int, int] | None = None,
) -> dict:
    """Total counts vs detected genes per cell (``obs`` tables), before and after QC side by side.

    Points are coloured by ``colour`` (mitochondrial %, one scale for both panels, high values drawn on
    top); both axes are logarithmic and shared. ``thresholds`` are ``(axis, value, label)`` with axis
    ``x``, ``y`` (dashed lines in both panels) or ``colour`` (a line on the colour bar). Cells with a
    zero on either axis cannot sit on a log axis and are counted in the panel title instead; above
    ``max_points`` a random subset (fixed ``seed``) is drawn and the title says so. Returns the number of
    points drawn per panel: ``{"before": n, "after": n}``. ``genes`` (before, after) adds the gene
    numbers to the title.
    """
    colours = pd.to_numeric(before[colour], errors="coerce").to_numpy(dtype=float) if len(before) else np.zeros(0)
    finite = colours[np.isfinite(colours)]
    limits = [value for axis, value, _ in thresholds if axis == "colour"]
    vmax = max([np.percentile(finite, 99.5) if finite.size else 0.0, *(1.5 * v for v in limits), 1.0])
    norm = Normalize(vmin=0.0, vmax=min(vmax, 100.0) if colour.startswith("pct") else vmax)
    rng = np.random.default_rng(seed)
    palette = ["crimson", "darkorange", "black", "magenta", "royalblue"]
    styles = [{"color": palette[i % len(palette)], "ls": "--", "lw": 1.3} for i in range(len(thresholds))]

    fig, axes = plt.subplots(1, 2, figsize=(12, 5), sharex=True, sharey=True, constrained_layout=True)
    drawn, scatter = {}, None
    for ax, (key, table, name) in zip(
        axes, [("before", before, "before QC"), ("after", after, "after QC")], strict=True
    ):
        xs = pd.to_numeric(table[x], errors="coerce").to_numpy(dtype=float)
        ys = pd.to_numeric(table[y], errors="coerce").to_numpy(dtype=float)
        cs = pd.to_numeric(table[colour], errors="coerce").to_numpy(dtype=float)
        ok = np.isfinite(xs) & np.isfinite(ys) & (xs > 0) & (ys > 0)
        idx = np.flatnonzero(ok)
        notes = []
        if (~ok).sum():
            notes.append(f"{int((~ok).sum()):,} with 0 counts not shown")
        if idx.size > max_points:
            idx = np.sort(rng.choice(idx, size=max_points, replace=False))
            notes.append(f"a random {max_points:,} shown")
        idx = idx[np.argsort(np.nan_to_num(cs[idx], nan=-1.0), kind="stable")]  # high mito on top
        size = float(np.clip(3000.0 / max(idx.size, 1), 2.0, 40.0))
        scatter = ax.scatter(
            xs[idx], ys[idx], c=cs[idx], cmap="viridis", norm=norm, s=size, alpha=0.8, linewidths=0, rasterized=True
        )
        drawn[key] = len(scatter.get_offsets())
        for (axis, value, _label), style in zip(thresholds, styles, strict=True):
            if axis == "x":
                ax.axvline(value, **style)
            elif axis == "y":
                ax.axhline(value, **style)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(f"total counts per {unit}")
        ax.set_ylabel(f"detected genes per {unit}")
        ax.set_title(
            "\n".join([f"{name}: {len(table):,} {unit}s", *(["; ".join(notes)] if notes else [])]), fontsize=10
        )
        ax.grid(True, which="major", color="0.9", lw=0.6)
        ax.set_axisbelow(True)
    if thresholds:
        handles = [
            Line2D([], [], label=label + (" (on the colour bar)" if axis == "colour" else ""), **style)
            for (axis, _, label), style in zip(thresholds, styles, strict=True)
        ]
        axes[0].legend(handles=handles, title="QC thresholds", fontsize=8, title_fontsize=8, loc="lower right")
    cbar = fig.colorbar(
        scatter, ax=axes, shrink=0.9, extend="max" if finite.size and finite.max() > norm.vmax else "neither"
    )
    label = "mitochondrial counts (%)" if colour == "pct_counts_mt" else colour
    if finite.size and finite.max() == 0:
        label += f": 0 for every {unit}"
    cbar.set_label(label)
    for (axis, value, _label), style in zip(thresholds, styles, strict=True):
        if axis == "colour":
            cbar.ax.axhline(value, color=style["color"], lw=2.5)
    removed = len(before) - len(after)
    title = f"{dataset}: {len(before):,} {unit}s before QC, {len(after):,} after ({removed:,} removed)"
    if genes is not None:
        title += f"; genes {genes[0]:,} before, {genes[1]:,} after"
    fig.suptitle(title, fontsize=12)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return drawn
