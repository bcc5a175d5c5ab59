"""Figures of training: one model's loss curve (``loss_curve``, rule plot_loss) and every model's curves side by side
(``training_curves``, rule plot_training)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from scmix.plots.style import (
    _as_str,
    _empty_figure,
    _figsize,
    _figure_legend,
    _finite,
    _grid,
    _legend_width,
    _save,
    category_colours,
)

# ---------------------------------------------------------------------------------------------------------------
# per-run figures


def loss_curve(history: pd.DataFrame, path, title: str = "") -> None:
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    panels = [("elbo", "negative ELBO"), ("recon", "reconstruction NLL"), ("kl", "KL")]
    for ax, (key, label) in zip(axes, panels, strict=True):
        ax.plot(history["epoch"], history[f"train_{key}"], label="train")
        if f"val_{key}" in history:
            ax.plot(history["epoch"], history[f"val_{key}"], label="validation")
        best = history.loc[history["best"], "epoch"]
        for b in best:
            ax.axvline(b, color="grey", ls=":", lw=1)
        ax.set_xlabel("epoch")
        ax.set_ylabel(f"{label} per cell")
    axes[0].legend(frameon=False)
    fig.suptitle(title)
    fig.tight_layout()
    _save(fig, path)


# ---------------------------------------------------------------------------------------------------------------
# training


def training_curves(history: pd.DataFrame, path, *, colours: dict | None = None) -> dict:
    """Negative ELBO per cell vs epoch, one panel per model, a thin line per (mix, seed) coloured by mix.

    ``history`` has columns model, mix, seed, epoch, train_elbo, optionally val_elbo, and best (the epoch
    whose weights were kept, marked with a dot). Validation ELBO is drawn when present, else training ELBO.
    A panel uses a log y axis only when its positive values span more than two decades. Returns
    ``{"y": column drawn, "log_scale": {model: bool}, "runs": {model: number of lines}}``.
    """
    ycol = (
        "val_elbo"
        if "val_elbo" in history and pd.to_numeric(history["val_elbo"], errors="coerce").notna().any()
        else "train_elbo"
    )
    which = "validation" if ycol == "val_elbo" else "training"
    title = f"Training curves: {which} negative ELBO per cell"
    colours = colours or category_colours(_as_str(history, "mix")["mix"])
    data = _as_str(_finite(history, "epoch", ycol), "model", "mix")
    if "seed" not in data:
        data["seed"] = 0
    best = (
        data["best"].astype(str).str.lower().isin(["true", "1", "1.0"])
        if "best" in data
        else pd.Series(False, index=data.index)
    )
    data = data.assign(_best=best.to_numpy())
    if data.empty:
        _empty_figure(path, title, f"no finite values of {ycol}")
        return {"y": ycol, "log_scale": {}, "runs": {}}
    models = sorted(data["model"].unique())
    mixes = sorted(data["mix"].unique())
    ncols, nrows = _grid(len(models), 3)
    fig, axes = plt.subplots(
        nrows,
        ncols,
        figsize=_figsize(ncols, nrows, 4.6, 3.6, _legend_width(mixes + ["best epoch (kept)"]), 0.5),
        squeeze=False,
        constrained_layout=True,
    )
    log_scale, runs = {}, {}
    for k, (ax, model) in enumerate(zip(axes.flat, models, strict=False)):
        sub = data[data["model"] == model]
        n = 0
        for (mix, _seed), run in sub.groupby(["mix", "seed"], sort=True):
            run = run.sort_values("epoch")
            ax.plot(run["epoch"], run[ycol], color=colours[mix], lw=0.9, alpha=0.8)
            kept = run[run["_best"]]
            ax.scatter(
                kept["epoch"], kept[ycol], color=colours[mix], s=28, edgecolors="black", linewidths=0.6, zorder=3
            )
            n += 1
        runs[model] = n
        values = sub[ycol].to_numpy()
        log_scale[model] = bool((values > 0).all() and values.max() / values.min() > 100)
        if log_scale[model]:
            ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(f"{which} negative ELBO per cell" if k % ncols == 0 else "")
        seeds = sub["seed"].nunique()
        ax.set_title(f"{model} ({seeds} seed{'s' if seeds != 1 else ''} per mix)", fontsize=10)
        ax.grid(True, color="0.92", lw=0.6)
    for ax in axes.flat[len(models) :]:
        fig.delaxes(ax)
    handles = [Line2D([], [], color=colours[m], lw=1.5, label=m) for m in mixes]
    handles.append(Line2D([], [], ls="", marker="o", color="0.6", mec="black", label="best epoch (kept)"))
    _figure_legend(fig, handles, "training mix")
    fig.suptitle(title, fontsize=11)
    _save(fig, path)
    return {"y": ycol, "log_scale": log_scale, "runs": runs}
