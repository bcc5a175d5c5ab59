"""Figures of composition_effects.tsv (rule plot_composition): ``dose_response`` along a share sweep,
``scaling_curve`` along a size sweep, ``effects_heatmap`` over every point."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.lines import Line2D

from scmix.evaluation.effect_table import COLUMNS as EFFECT_COLUMNS
from scmix.evaluation.effect_table import HELPS, HURTS
from scmix.evaluation.effect_table import METRICS as EFFECT_METRICS
from scmix.plots.style import (
    METRIC_LABELS,
    _as_str,
    _empty_figure,
    _figsize,
    _figure_legend,
    _finite,
    _grid,
    _heatmap_panels,
    _label_ticks,
    _legend_width,
    _save,
    _text_colour,
    category_colours,
)

# ---------------------------------------------------------------------------------------------------------------
# composition effects (composition_effects.tsv: each sweep point against its reference)

SIGNIFICANT_VERDICTS = (HELPS, HURTS)


def _composition_label(metric: str) -> str:
    return METRIC_LABELS.get(metric, EFFECT_METRICS.get(metric, metric))


def _composition_rows(effects: pd.DataFrame, metric: str, kind: str, sweep: str | None, *numeric: str) -> pd.DataFrame:
    """Rows of ``effects`` for all cells (cell_type "all"), ``metric``, sweep kind ``kind`` and (unless None)
    ``sweep``, with finite ``numeric`` columns; model and eval_set as strings, seed_sd as float (NaN allowed) and
    verdict as a string ("" where missing)."""
    needed = {"model", "eval_set", "cell_type", "metric", "sweep", "kind", *numeric}
    if effects is None or not needed <= set(effects.columns):
        columns = list(getattr(effects, "columns", []))
        return pd.DataFrame(columns=columns + [c for c in EFFECT_COLUMNS if c not in columns])
    keep = (
        (effects["cell_type"].astype(str) == "all")
        & (effects["metric"].astype(str) == str(metric))
        & (effects["kind"].astype(str) == str(kind))
    )
    if sweep is not None:
        keep &= effects["sweep"].astype(str) == str(sweep)
    rows = _as_str(_finite(effects[keep], *numeric), "model", "eval_set", "sweep")
    sd = rows["seed_sd"] if "seed_sd" in rows else pd.Series(np.nan, index=rows.index)
    rows["seed_sd"] = pd.to_numeric(sd, errors="coerce").astype(float)
    verdict = rows["verdict"] if "verdict" in rows else pd.Series("", index=rows.index)
    rows["verdict"] = verdict.fillna("").astype(str)
    return rows


def _spread_note(rows: pd.DataFrame) -> str:
    seeds = pd.to_numeric(rows["n_seeds"], errors="coerce").max() if "n_seeds" in rows else np.nan
    several = (np.isfinite(seeds) and seeds > 1) or rows["seed_sd"].notna().any()
    return "mean ± sd over seeds" if several else "one seed"


def _significance_label(rows: pd.DataFrame, column: str, fmt, fallback: str) -> str:
    """Legend text of the significance marker: against the reference point when all lines share one."""
    refs = pd.to_numeric(rows.loc[rows["verdict"] == "reference", column], errors="coerce").dropna().unique()
    return f"significant vs {fmt(refs[0])}" if len(refs) == 1 else f"significant vs {fallback}"


def _effect_lines(ax, rows: pd.DataFrame, x: str, evals: list[str], colours: dict) -> None:
    """One line per eval set of ``mean`` against ``x``, a mean ± seed_sd band where the sd is defined and a
    black-edged star on the points whose verdict is helps or hurts."""
    for ev in evals:
        line = rows[rows["eval_set"] == ev].sort_values(x)
        if line.empty:
            continue
        xs, mean, sd = (line[c].to_numpy(dtype=float) for c in (x, "mean", "seed_sd"))
        colour = colours.get(ev, "0.4")
        ok = np.isfinite(sd)
        if ok.any():
            ax.fill_between(
                xs,
                np.where(ok, mean - sd, mean),
                np.where(ok, mean + sd, mean),
                where=ok,
                color=colour,
                alpha=0.18,
                lw=0,
            )
        ax.plot(xs, mean, color=colour, marker="o", ms=3.5, lw=1.4)
        sig = line["verdict"].isin(SIGNIFICANT_VERDICTS).to_numpy()
        if sig.any():
            ax.scatter(
                xs[sig], mean[sig], marker="*", s=120, color=colour, edgecolors="black", linewidths=0.8, zorder=3
            )


def _effect_handles(evals: list[str], colours: dict, significance: str) -> list:
    handles = [Line2D([], [], color=colours.get(ev, "0.4"), marker="o", ms=3.5, lw=1.4, label=ev) for ev in evals]
    handles.append(Line2D([], [], ls="", marker="*", ms=11, color="0.75", mec="black", mew=0.8, label=significance))
    return handles


def dose_response(effects: pd.DataFrame, path, sweep: str, metric: str = "pearson") -> pd.DataFrame:
    """Mean ``metric`` (all cells) against the share of the added dataset in the share sweep ``sweep``.

    ``effects`` is composition_effects.tsv. One panel per model (rows) and added dataset (columns), x the
    share in percent, one line per eval set (colours from :func:`category_colours` over every eval set of
    ``effects``) with a mean ± seed_sd band (none for one seed), a black-edged star where the verdict is helps
    or hurts. Returns the plotted rows (the columns of ``effects``; share, mean and seed_sd as floats), sorted by
    model, added, eval_set, share; the share-0 base appears once per added dataset, as in the table.
    """
    label = _composition_label(metric)
    title = f"{sweep}: {label} by share of the added dataset"
    colours = category_colours(effects["eval_set"]) if "eval_set" in effects else {}
    rows = _composition_rows(effects, metric, "share", sweep, "share", "mean")
    rows = _as_str(rows, "added") if "added" in rows else rows.iloc[0:0]
    if rows.empty:
        _empty_figure(path, title, f"no finite {metric} values of share sweep {sweep} (all cells)")
        return rows.reset_index(drop=True)
    rows = rows.sort_values(["model", "added", "eval_set", "share"], ignore_index=True)
    rows["_x"] = 100.0 * rows["share"]
    models, added = sorted(rows["model"].unique()), sorted(rows["added"].unique())
    evals = sorted(rows["eval_set"].unique())
    significance = _significance_label(rows, "share", lambda s: f"share {100 * s:g}%", "the smallest share")
    handles = _effect_handles(evals, colours, significance)
    nrows, ncols = len(models), len(added)
    fig, axes = plt.subplots(
        nrows,
        ncols,
        figsize=_figsize(ncols, nrows, 3.4, 2.8, _legend_width([h.get_label() for h in handles]), 0.6),
        squeeze=False,
        sharey="row",
        constrained_layout=True,
    )
    for r, model in enumerate(models):
        for c, add in enumerate(added):
            ax = axes[r, c]
            sub = rows[(rows["model"] == model) & (rows["added"] == add)]
            _effect_lines(ax, sub, "_x", evals, colours)
            if sub.empty:
                ax.text(0.5, 0.5, "no data", ha="center", va="center", color="0.4", transform=ax.transAxes)
            shares = sorted(sub["_x"].unique())
            if 0 < len(shares) <= 8:
                ax.set_xticks(shares, [f"{s:g}" for s in shares])
            ax.set_xlabel(f"share of {add} (%)" if r == nrows - 1 else "")
            ax.set_ylabel(label if c == 0 else "")
            ax.set_title(f"{model}: + {add}", fontsize=10)
            ax.grid(True, color="0.92", lw=0.6)
            ax.set_axisbelow(True)
    _figure_legend(fig, handles, "eval set")
    fig.suptitle(f"{title}\n(all cells, {_spread_note(rows)})", fontsize=11)
    _save(fig, path)
    return rows.drop(columns="_x")


def scaling_curve(effects: pd.DataFrame, path, sweep: str, metric: str = "pearson") -> pd.DataFrame:
    """Mean ``metric`` (all cells) against the number of training cells in the size sweep ``sweep``.

    One panel per model, x total_cells on a log scale, one line per eval set with a mean ± seed_sd band and
    the significance stars of :func:`dose_response`. Returns the plotted rows (the columns of ``effects``),
    sorted by model, eval_set, total_cells.
    """
    label = _composition_label(metric)
    title = f"{sweep}: {label} by number of training cells"
    colours = category_colours(effects["eval_set"]) if "eval_set" in effects else {}
    rows = _composition_rows(effects, metric, "size", sweep, "total_cells", "mean")
    rows = rows[rows["total_cells"] > 0]
    if rows.empty:
        _empty_figure(path, title, f"no finite {metric} values of size sweep {sweep} (all cells)")
        return rows.reset_index(drop=True)
    rows = rows.sort_values(["model", "eval_set", "total_cells"], ignore_index=True)
    models, evals = sorted(rows["model"].unique()), sorted(rows["eval_set"].unique())
    significance = _significance_label(rows, "total_cells", lambda n: f"{n:,.0f} cells", "the reference size")
    handles = _effect_handles(evals, colours, significance)
    ncols, nrows = _grid(len(models), 3)
    fig, axes = plt.subplots(
        nrows,
        ncols,
        figsize=_figsize(ncols, nrows, 4.2, 3.2, _legend_width([h.get_label() for h in handles]), 0.6),
        squeeze=False,
        sharey=True,
        constrained_layout=True,
    )
    for k, (ax, model) in enumerate(zip(axes.flat, models, strict=False)):
        sub = rows[rows["model"] == model]
        _effect_lines(ax, sub, "total_cells", evals, colours)
        ax.set_xscale("log")
        sizes = sorted(sub["total_cells"].unique())
        if len(sizes) <= 8:
            _label_ticks(ax, "x", sizes, [f"{s:,.0f}" for s in sizes])
            ax.set_xticks([], minor=True)
        ax.set_xlabel("training cells (log scale)")
        ax.set_ylabel(label if k % ncols == 0 else "")
        ax.set_title(model, fontsize=10)
        ax.grid(True, color="0.92", lw=0.6)
        ax.set_axisbelow(True)
    for ax in axes.flat[len(models) :]:
        fig.delaxes(ax)
    _figure_legend(fig, handles, "eval set")
    fig.suptitle(f"{title}\n(all cells, {_spread_note(rows)})", fontsize=11)
    _save(fig, path)
    return rows


def effects_heatmap(effects: pd.DataFrame, path, metric: str = "pearson") -> pd.DataFrame:
    """Δ of ``metric`` (all cells) against the reference at the largest share of each (sweep, added) line.

    Share sweeps only. One panel per model: rows "sweep: added (share %)", columns eval sets, colour the
    delta on a diverging colour map centred at 0 with limits ± the largest |delta| drawn, each cell annotated
    with the delta (3 decimals) and "*" where the verdict is helps or hurts. The largest share of a line is taken
    over its non-reference rows of every model and eval set. Returns the drawn cells, one per (model, row,
    eval set): the columns of ``effects`` plus ``row`` (the row label), sorted by model, sweep, added, eval_set.
    """
    label = _composition_label(metric)
    title = f"{label}: Δ vs reference at the largest share of each added dataset"
    rows = _composition_rows(effects, metric, "share", None, "share", "delta")
    rows = _as_str(rows, "added") if "added" in rows else rows.iloc[0:0]
    largest = rows[rows["verdict"] != "reference"].groupby(["sweep", "added"])["share"].max().rename("_largest")
    rows = rows.join(largest, on=["sweep", "added"])
    rows = rows[rows["share"] == rows["_largest"]].drop(columns="_largest")
    if rows.empty:
        _empty_figure(path, title, f"no finite {metric} deltas of share sweeps (all cells)")
        return rows.assign(row=pd.Series(dtype=str)).reset_index(drop=True)
    rows["row"] = [
        f"{s}: {a} ({100 * x:g}%)" for s, a, x in zip(rows["sweep"], rows["added"], rows["share"], strict=True)
    ]
    rows = rows.sort_values(["model", "sweep", "added", "eval_set"], ignore_index=True)
    rows = rows.drop_duplicates(subset=["model", "row", "eval_set"], ignore_index=True)
    models, evals = sorted(rows["model"].unique()), sorted(rows["eval_set"].unique())
    lines = rows[["sweep", "added", "row"]].drop_duplicates().sort_values(["sweep", "added"])["row"].tolist()
    limit = float(np.abs(rows["delta"]).max()) or 1e-6
    norm = Normalize(vmin=-limit, vmax=limit)
    cmap = plt.get_cmap("RdBu").with_extremes(bad="0.92")

    fig, axes, fontsize = _heatmap_panels(len(models), 2, lines, len(evals), (0.95, 0.45), extra_h=0.6)
    for ax, model in zip(axes.flat, models, strict=False):
        sub = rows[rows["model"] == model]
        delta = sub.pivot(index="row", columns="eval_set", values="delta").reindex(index=lines, columns=evals)
        verdict = sub.pivot(index="row", columns="eval_set", values="verdict").reindex(index=lines, columns=evals)
        ax.imshow(np.ma.masked_invalid(delta.to_numpy(dtype=float)), cmap=cmap, norm=norm, aspect="auto")
        for i in range(len(lines)):
            for j in range(len(evals)):
                d = float(delta.iat[i, j])
                if np.isnan(d):
                    ax.text(j, i, "n/a", ha="center", va="center", fontsize=fontsize, color="0.4")
                    continue
                mark = "*" if verdict.iat[i, j] in SIGNIFICANT_VERDICTS else ""
                colour = _text_colour(cmap(norm(d)))
                ax.text(j, i, f"{d:+.3f}{mark}", ha="center", va="center", fontsize=fontsize, color=colour)
        _label_ticks(ax, "x", range(len(evals)), evals)
        _label_ticks(ax, "y", range(len(lines)), lines)
        ax.set_xlabel("eval set")
        ax.set_title(model, fontsize=10)
    for ax in axes.flat[len(models) :]:
        fig.delaxes(ax)
    fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=axes, shrink=0.8, label="Δ vs reference")
    fig.suptitle(f"{title}\n(all cells; * helps or hurts)", fontsize=11)
    _save(fig, path)
    return rows
