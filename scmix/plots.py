"""Figures (matplotlib, Agg backend). Plotting code only: no modelling, no metrics, no file reading.

Every function takes tidy pandas tables and an output path and writes one PNG (dpi 120). Categorical
hues (mixes, settings, cell types, datasets) are coloured with :func:`category_colours`, so one name gets
one colour in every figure of a run. Rows with NaN values are skipped; with one seed there is no spread.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.cm import ScalarMappable  # noqa: E402
from matplotlib.colors import Normalize, to_hex, to_rgb  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from scmix.evaluation.effect_table import COLUMNS as EFFECT_COLUMNS  # noqa: E402
from scmix.evaluation.effect_table import HELPS, HURTS  # noqa: E402
from scmix.evaluation.effect_table import METRICS as EFFECT_METRICS  # noqa: E402

DPI = 120
MAX_FIGSIZE = (24.0, 18.0)  # inches; larger grids shrink their panels instead of growing further
MAX_LEGEND_ENTRIES = 30
SETTING_LABELS = {
    "real_to_real": "real → real",
    "real_to_synthetic": "real → synthetic",
    "synthetic_to_real": "synthetic → real",
}
METRIC_LABELS = {
    "pearson_mean": "mean per-cell Pearson r",
    "spearman_mean": "mean per-cell Spearman r",
    "marginal_ll": "held-out log p(x) per cell (nats)",
}
# metrics whose values are comparable within an eval set only (a log-likelihood depends on the set's genes and
# library sizes): their heatmaps colour each eval set against its best value
PER_EVAL_SET_METRICS = {"marginal_ll", "elbo", "recon_nll"}


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
# accuracy summaries


def metric_heatmap(
    table: pd.DataFrame, path, value: str, *, label: str | None = None, higher_is_better: bool = True
) -> dict[str, pd.DataFrame]:
    """Heatmap mix (rows) x eval set (columns) of the mean of ``value`` over seeds, one panel per model.

    ``table`` has columns model, mix, seed, eval_set and ``value``. Cells show "mean\\n±sd" (sd over
    seeds, left out for a single seed); all panels share one colour scale, oriented so that better is
    always the bright end (``higher_is_better``). For ``PER_EVAL_SET_METRICS`` the colour is the distance from
    the best mean of the same eval set (over every model and mix), so that eval sets of different scales do not
    share one; the cells still show the values. Returns ``{model: mean pivot (mix x eval set)}``.
    """
    label = label or METRIC_LABELS.get(value, value)
    data = _as_str(_finite(table, value), "model", "mix", "eval_set")
    if "seed" not in data:
        data["seed"] = 0
    if data.empty:
        _empty_figure(path, label, f"no finite values of {value}")
        return {}
    models = sorted(data["model"].unique())
    mixes = sorted(data["mix"].unique())
    evals = sorted(data["eval_set"].unique())
    stats = _mean_sd(data, ["model", "mix", "eval_set"], value)
    per_eval_set = value in PER_EVAL_SET_METRICS
    best = stats.groupby("eval_set")["mean"].transform("max" if higher_is_better else "min")
    stats["colour"] = stats["mean"] - best if per_eval_set else stats["mean"]
    lo, hi = stats["colour"].min(), stats["colour"].max()
    pad = 0.0 if hi > lo else max(abs(hi) * 0.05, 1e-6)
    norm = Normalize(vmin=lo - pad, vmax=hi + pad)
    cmap = plt.get_cmap("viridis" if higher_is_better else "viridis_r").with_extremes(bad="0.92")

    fig, axes, fontsize = _heatmap_panels(len(models), 4, mixes, len(evals), (1.05, 0.55), extra_h=0.5)
    means = {}
    for k, (ax, model) in enumerate(zip(axes.flat, models, strict=False)):
        sub = stats[stats["model"] == model]
        mean = sub.pivot(index="mix", columns="eval_set", values="mean").reindex(index=mixes, columns=evals)
        sd = sub.pivot(index="mix", columns="eval_set", values="sd").reindex(index=mixes, columns=evals)
        shade = sub.pivot(index="mix", columns="eval_set", values="colour").reindex(index=mixes, columns=evals)
        means[model] = mean
        ax.imshow(np.ma.masked_invalid(shade.to_numpy(dtype=float)), cmap=cmap, norm=norm, aspect="auto")
        for i in range(len(mixes)):
            for j in range(len(evals)):
                m, s = mean.iat[i, j], sd.iat[i, j]
                if np.isnan(m):
                    ax.text(j, i, "n/a", ha="center", va="center", fontsize=fontsize, color="0.4")
                    continue
                d = _decimals(m)
                text = f"{m:.{d}f}" + ("" if np.isnan(s) else f"\n±{s:.{d}f}")
                colour = _text_colour(cmap(norm(shade.iat[i, j])))
                ax.text(j, i, text, ha="center", va="center", fontsize=fontsize, color=colour)
        _label_ticks(ax, "x", range(len(evals)), evals)
        _label_ticks(ax, "y", range(len(mixes)), mixes)
        ax.set_xlabel("eval set")
        ax.set_ylabel("training mix" if k % axes.shape[1] == 0 else "")
        n_seeds = data.loc[data["model"] == model, "seed"].nunique()
        ax.set_title(f"{model} ({n_seeds} seed{'s' if n_seeds != 1 else ''})", fontsize=10)
    for ax in axes.flat[len(models) :]:
        fig.delaxes(ax)
    bar = f"{label}\nminus the best of its eval set" if per_eval_set else label
    fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=axes, shrink=0.8, label=bar)
    better = "higher is better" if higher_is_better else "lower is better"
    spread = "mean ± sd over seeds" if data.groupby("model")["seed"].nunique().max() > 1 else "one seed"
    fig.suptitle(f"{label}: {spread} ({better})", fontsize=11)
    _save(fig, path)
    return means


def accuracy_heatmap(summary: pd.DataFrame, path, value: str = "pearson_mean") -> dict[str, pd.DataFrame]:
    """Heatmap mix x eval set of the mean over seeds of the overall (``cell_type == "all"``) rows, one panel per
    model; see :func:`metric_heatmap`."""
    return metric_heatmap(summary[summary["cell_type"] == "all"], path, value)


def celltype_boxplot(cells: pd.DataFrame, path, model: str, *, colours: dict | None = None) -> list[str]:
    """Box plots of per-cell Pearson r by cell type (x, sorted) and training mix (hue), pooled over seeds.

    ``cells`` has columns model, mix, seed, eval_set, cell_type, pearson; only rows of ``model`` are drawn,
    one panel per eval set (three per row). Mix colours come from :func:`category_colours` over all mixes
    in ``cells`` unless ``colours`` is given. Returns the eval sets drawn, in panel order.
    """
    import seaborn as sns

    title = f"{model}: reconstruction accuracy per cell type"
    all_mixes = _as_str(cells, "mix")["mix"]
    colours = colours or category_colours(all_mixes)
    data = _as_str(_finite(cells[cells["model"].astype(str) == str(model)], "pearson"), "mix", "eval_set", "cell_type")
    if data.empty:
        _empty_figure(path, title, f"no per-cell values for model {model}")
        return []
    evals = sorted(data["eval_set"].unique())
    mixes = sorted(data["mix"].unique())
    n_types = max(data.groupby("eval_set")["cell_type"].nunique())
    ncols, nrows = _grid(len(evals), 3)
    longest = max(len(c) for c in data["cell_type"].unique())
    fig, axes = plt.subplots(
        nrows,
        ncols,
        figsize=_figsize(
            ncols,
            nrows,
            1.2 + n_types * (0.3 + 0.16 * len(mixes)),
            3.2 + 0.06 * min(longest, 30),
            _legend_width(mixes),
            0.5,
        ),
        squeeze=False,
        sharey=True,
        constrained_layout=True,
    )
    n_seeds = data["seed"].nunique() if "seed" in data else 1
    for k, (ax, ev) in enumerate(zip(axes.flat, evals, strict=False)):
        sub = data[data["eval_set"] == ev]
        types = sorted(sub["cell_type"].unique())
        with warnings.catch_warnings():  # seaborn 0.13 passes matplotlib 3.11's deprecated ``vert``
            warnings.filterwarnings("ignore", message="vert: bool", category=DeprecationWarning)
            sns.boxplot(
                data=sub,
                x="cell_type",
                y="pearson",
                hue="mix",
                order=types,
                hue_order=mixes,
                palette=colours,
                fliersize=1,
                linewidth=0.7,
                ax=ax,
                legend=False,
            )
        _label_ticks(ax, "x", range(len(types)), types)
        ax.set_xlabel("cell type")
        ax.set_ylabel("per-cell Pearson r" if k % ncols == 0 else "")
        ax.set_title(f"eval set: {ev}", fontsize=10)
        ax.grid(True, axis="y", color="0.9", lw=0.6)
        ax.set_axisbelow(True)
    for ax in axes.flat[len(evals) :]:
        fig.delaxes(ax)
    handles = [Patch(facecolor=colours[m], edgecolor="0.3", label=m) for m in mixes]
    _figure_legend(fig, handles, "training mix")
    pooled = f"pooled over {n_seeds} seeds" if n_seeds > 1 else "one seed"
    fig.suptitle(f"{title} ({pooled})", fontsize=11)
    _save(fig, path)
    return evals


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


# ---------------------------------------------------------------------------------------------------------------
# embeddings


def umap_panels(coords: pd.DataFrame, keys, path, title: str = "", *, seed: int = 0) -> dict[str, int]:
    """UMAP scatter, one panel per key in ``keys`` (columns of ``coords``), points coloured by category.

    Points are drawn in a fixed random order (``seed``) so that no category hides the others; the point
    size shrinks with the number of cells. Legends sit outside the panels for up to 30 categories; with
    more the panel title says so. Rows with NaN coordinates or a missing category are skipped. Returns
    ``{key: number of categories drawn}``.
    """
    keys = [keys] if isinstance(keys, str) else list(keys)
    missing = [k for k in ["umap1", "umap2", *keys] if k not in coords]
    if missing:
        raise ValueError(f"umap_panels: coords has no column(s) {missing}")
    if not keys:
        _empty_figure(path, title, "no keys to colour by")
        return {}
    xy = _finite(coords, "umap1", "umap2")
    legends = {}
    for key in keys:
        cats = sorted(_as_str(xy, key)[key].unique())
        legends[key] = cats if len(cats) <= MAX_LEGEND_ENTRIES else []
    legend_w = max(_legend_width(c, 1 if len(c) <= 15 else 2) for c in legends.values())
    ncols, nrows = _grid(len(keys), 3)
    fig, axes = plt.subplots(
        nrows,
        ncols,
        figsize=_figsize(ncols, nrows, 4.2 + legend_w, 4.2, 0.0, 0.5 if title else 0.0),
        squeeze=False,
        constrained_layout=True,
    )
    rng = np.random.default_rng(seed)
    drawn = {}
    for ax, key in zip(axes.flat, keys, strict=False):
        sub = _as_str(xy, key)
        sub = sub.iloc[rng.permutation(len(sub))]
        cats = sorted(sub[key].unique())
        colours = category_colours(cats)
        size = float(np.clip(6000.0 / max(len(sub), 1), 0.3, 15.0))
        ax.scatter(sub["umap1"], sub["umap2"], c=sub[key].map(colours).tolist(), s=size, linewidths=0, rasterized=True)
        drawn[key] = len(cats)
        notes = [f"{len(cats)} categories"]
        skipped = len(coords) - len(sub)
        if skipped:
            notes.append(f"{skipped:,} missing not shown")
        if legends[key]:
            handles = [Line2D([], [], ls="", marker="o", ms=5, color=colours[c], label=c) for c in cats]
            ax.legend(
                handles=handles,
                loc="upper left",
                bbox_to_anchor=(1.01, 1.0),
                fontsize=7,
                frameon=False,
                ncol=1 if len(cats) <= 15 else 2,
                handletextpad=0.2,
                borderaxespad=0.0,
            )
        elif cats:
            notes.append("too many for a legend")
        ax.set_title(f"{key} ({', '.join(notes)})", fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlabel("UMAP1")
        ax.set_ylabel("UMAP2")
    for ax in axes.flat[len(keys) :]:
        fig.delaxes(ax)
    if title:
        fig.suptitle(title, fontsize=11)
    _save(fig, path)
    return drawn


# ---------------------------------------------------------------------------------------------------------------
# synthetic data


def synthetic_f1_bars(table: pd.DataFrame, path) -> pd.DataFrame:
    """Macro F1 of the cell-type classifiers (real → real, real → synthetic, synthetic → real), mean ± sd over seeds.

    ``table`` is long: model, mix, seed, eval_set, level, setting, class, metric, value. Facet rows are the
    label levels (fine, coarse), columns the eval sets; bars per "model | mix" coloured by setting. When
    discriminator rows (setting "discriminator", metric "auc") are present an extra row shows their mean
    AUC with 0.5 (real and synthetic indistinguishable) dashed. Returns the plotted statistics: columns
    level, eval_set, model, mix, setting, mean, sd, n (the discriminator rows have setting "discriminator").
    """
    # two lines: one eval set makes a figure narrower than the title on one line
    title = "Cell-type classifiers on real and synthetic cells\nmacro F1"
    data = _as_str(_finite(table, "value"), "model", "mix", "eval_set", "level", "setting", "class", "metric")
    f1 = data[(data["class"] == "macro") & (data["metric"] == "f1") & data["setting"].isin(list(SETTING_LABELS))]
    disc = data[(data["setting"] == "discriminator") & (data["metric"] == "auc")]
    if (disc["class"] == "all").any():
        disc = disc[disc["class"] == "all"]
    columns = ["level", "eval_set", "model", "mix", "setting", "mean", "sd", "n"]
    if f1.empty and disc.empty:
        _empty_figure(path, title, "no macro F1 or discriminator AUC values")
        return pd.DataFrame(columns=columns)
    by = ["level", "eval_set", "model", "mix", "setting"]
    stats = pd.concat([_mean_sd(f1, by, "value"), _mean_sd(disc, by, "value")], ignore_index=True)[columns]
    stats = stats.sort_values(by, ignore_index=True)
    stats["x"] = stats["model"] + " | " + stats["mix"]
    n_seeds = pd.concat([f1, disc])["seed"].nunique() if "seed" in f1 else 1
    title += " (mean ± sd over seeds)" if n_seeds > 1 else " (one seed)"

    levels = [lvl for lvl in ("fine", "coarse") if lvl in set(f1["level"])]
    levels += sorted(set(f1["level"]) - {"fine", "coarse"})
    rows = [("f1", lvl) for lvl in levels] + ([("auc", None)] if len(disc) else [])
    evals = sorted(set(stats["eval_set"]))
    xs = sorted(set(stats["x"]), key=lambda s: tuple(s.split(" | ", 1)))
    pos = {x: i for i, x in enumerate(xs)}
    settings = [s for s in SETTING_LABELS if s in set(f1["setting"])]
    colours = category_colours(SETTING_LABELS)
    longest = max(len(x) for x in xs)
    fig, axes = plt.subplots(
        len(rows),
        len(evals),
        figsize=_figsize(
            len(evals),
            len(rows),
            1.2 + 0.55 * len(xs),
            2.6 + 0.05 * min(longest, 40),
            _legend_width(SETTING_LABELS.values()),
            0.6,
        ),
        squeeze=False,
        sharex=True,
        constrained_layout=True,
    )
    width = 0.8 / max(len(settings), 1)
    for r, (kind, level) in enumerate(rows):
        for c, ev in enumerate(evals):
            ax = axes[r, c]
            if kind == "f1":
                sub = stats[
                    (stats["level"] == level) & (stats["eval_set"] == ev) & (stats["setting"] != "discriminator")
                ]
                for k, setting in enumerate(settings):
                    s = sub[sub["setting"] == setting]
                    offset = (k - (len(settings) - 1) / 2) * width
                    ax.bar(s["x"].map(pos) + offset, s["mean"], width=width, color=colours[setting])
                    _error_bars(ax, s["x"].map(pos) + offset, s["mean"], s["sd"])
                ax.set_ylabel(f"macro F1 ({level} labels)" if c == 0 else "")
                ax.set_title(f"{ev}: {level} cell types", fontsize=10)
            else:
                sub = stats[(stats["setting"] == "discriminator") & (stats["eval_set"] == ev)]
                ax.bar(sub["x"].map(pos), sub["mean"], width=0.5, color="0.55")
                _error_bars(ax, sub["x"].map(pos), sub["mean"], sub["sd"])
                for x, m in zip(sub["x"].map(pos), sub["mean"], strict=True):
                    inside = m > 0.12
                    ax.text(
                        x,
                        0.02 if inside else m + 0.02,
                        f"{m:.2f}",
                        ha="center",
                        va="bottom",
                        fontsize=7,
                        color="white" if inside else "black",
                        fontweight="bold",
                    )
                ax.axhline(0.5, color="black", ls="--", lw=1)
                ax.text(
                    -0.55,
                    0.51,
                    "indistinguishable",
                    ha="left",
                    va="bottom",
                    fontsize=7,
                    bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "none", "pad": 1},
                )
                ax.set_ylabel("discriminator AUC" if c == 0 else "")
                ax.set_title(f"{ev}: real vs synthetic discriminator", fontsize=10)
            if sub.empty:
                ax.text(0.5, 0.5, "no data", ha="center", va="center", color="0.4", transform=ax.transAxes)
            ax.set_ylim(0, 1)
            ax.set_xlim(-0.6, len(xs) - 0.4)
            ax.grid(True, axis="y", color="0.9", lw=0.6)
            ax.set_axisbelow(True)
            if r == len(rows) - 1:
                _label_ticks(ax, "x", range(len(xs)), xs)
                ax.set_xlabel("model | mix")
    handles = [Patch(facecolor=colours[s], label=SETTING_LABELS[s]) for s in settings]
    if handles:
        fig.legend(
            handles=handles,
            title="classifier: trained on → tested on",
            loc="outside lower center",
            ncol=len(handles),
            fontsize=8,
            title_fontsize=8,
            frameon=False,
        )
    fig.suptitle(title, fontsize=11)
    _save(fig, path)
    return stats.drop(columns="x")


# bins of the expected zero fraction in which zero_calibration draws each mix's median residual
ZERO_BINS = np.linspace(0.0, 1.0, 21)


def _binned_residual(expected: np.ndarray, residual: np.ndarray, min_genes: int = 3) -> pd.DataFrame:
    """Per bin of ``ZERO_BINS`` holding at least ``min_genes`` genes: its centre, and the 25th, 50th and 75th
    percentile of the residual (observed − expected zero fraction) of its genes."""
    bins = np.clip(np.digitize(expected, ZERO_BINS[1:-1]), 0, len(ZERO_BINS) - 2)
    frame = pd.DataFrame({"bin": bins, "r": residual})
    q = frame.groupby("bin")["r"].quantile([0.25, 0.5, 0.75]).unstack()
    q = q[frame.groupby("bin").size().reindex(q.index) >= min_genes]
    centres = (ZERO_BINS[:-1] + ZERO_BINS[1:]) / 2
    return pd.DataFrame({"x": centres[q.index], "q25": q[0.25].to_numpy(), "median": q[0.5].to_numpy(),
                         "q75": q[0.75].to_numpy()})  # fmt: skip


def zero_calibration(
    genes: pd.DataFrame, path, *, colours: dict | None = None
) -> dict[tuple[str, str], dict[str, float]]:
    """Zero calibration per gene, rows = model, columns = eval set: the residual observed − expected zero fraction
    against the expected one, one line per mix (the median residual of the genes in each twentieth of the
    expected fraction) with the band of its middle half, so that mixes are compared side by side instead of
    hiding each other's points.

    ``genes`` has columns model, mix, eval_set, gene, observed_zero_fraction, expected_zero_fraction. Rows
    without an expected value (models without a count likelihood) are dropped; a panel left empty says
    "no count model". Each panel lists the mean (observed − expected) per mix. Returns
    ``{(model, eval_set): {mix: mean observed − expected}}`` (empty dict for empty panels).
    """
    obs, exp = "observed_zero_fraction", "expected_zero_fraction"
    title = "Zero calibration per gene: observed − model-expected fraction of zeros"
    named = _as_str(genes, "model", "mix", "eval_set")
    colours = colours or category_colours(named["mix"])
    data = _finite(named, obs, exp)
    models = sorted(named["model"].unique())
    evals = sorted(named["eval_set"].unique())
    if not models:
        _empty_figure(path, title, "no genes")
        return {}
    mixes = sorted(data["mix"].unique())
    fig, axes = plt.subplots(
        len(models),
        len(evals),
        figsize=_figsize(len(evals), len(models), 3.8, 3.0, _legend_width(mixes), 0.9),
        squeeze=False,
        sharex=True,
        sharey=True,
        constrained_layout=True,
    )
    diffs: dict[tuple[str, str], dict[str, float]] = {}
    reach = 0.02
    for r, model in enumerate(models):
        for c, ev in enumerate(evals):
            ax = axes[r, c]
            sub = data[(data["model"] == model) & (data["eval_set"] == ev)]
            ax.axhline(0.0, color="0.3", ls="--", lw=0.9, zorder=1)
            panel = {}
            for mix, part in sub.groupby("mix", sort=True):
                residual = (part[obs] - part[exp]).to_numpy(dtype=float)
                curve = _binned_residual(part[exp].to_numpy(dtype=float), residual)
                ax.fill_between(curve["x"], curve["q25"], curve["q75"], color=colours[mix], alpha=0.18, lw=0)
                ax.plot(curve["x"], curve["median"], color=colours[mix], lw=1.4, marker="o", ms=2.5)
                panel[mix] = float(residual.mean())
                if len(curve):
                    reach = max(reach, float(np.nanmax(np.abs(curve[["q25", "q75"]].to_numpy()))))
            diffs[(model, ev)] = panel
            if panel:
                text = "mean obs − exp\n" + "\n".join(f"{mix}: {d:+.3f}" for mix, d in panel.items())
                ax.text(
                    0.03,
                    0.03,
                    text,
                    ha="left",
                    va="bottom",
                    fontsize=7,
                    transform=ax.transAxes,
                    bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "0.8", "boxstyle": "round,pad=0.3"},
                )
            else:
                ax.text(0.5, 0.5, "no count model", ha="center", va="center", color="0.4", transform=ax.transAxes)
            ax.set_xlim(0, 1)
            ax.set_title(f"{model} | {ev}", fontsize=9)
            ax.grid(True, color="0.92", lw=0.6)
            if r == len(models) - 1:
                ax.set_xlabel("expected zero fraction")
            if c == 0:
                ax.set_ylabel("observed − expected")
    for ax in axes.flat:
        ax.set_ylim(-1.1 * reach, 1.1 * reach)
    if mixes:
        handles = [Line2D([], [], color=colours[m], lw=1.4, marker="o", ms=2.5, label=m) for m in mixes]
        handles.append(Patch(color="0.6", alpha=0.3, label="middle half of genes"))
        _figure_legend(fig, handles, "training mix")
    fig.suptitle(title, fontsize=11)
    fig.supxlabel(
        "Median over the genes of each twentieth of the expected fraction. Above the dashed line: more zeros "
        "observed than the model expects (it underfits zeros).",
        fontsize=8,
        color="0.3",
    )
    _save(fig, path)
    return diffs


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


# ---------------------------------------------------------------------------------------------------------------
# posterior-predictive checks (posterior_checks.tsv)

# the checks drawn, and whether higher is better
POSTERIOR_CHECKS = {"mean_corr": True, "zero_fraction_mae": False, "library_ks": False, "corr_distance": False}
POSTERIOR_CHECK_LABELS = {
    "mean_corr": "gene means: r (log1p)",
    "zero_fraction_mae": "zero fractions: MAE",
    "library_ks": "library sizes: KS",
    "corr_distance": "gene-gene correlations: distance",
}


def posterior_checks(table: pd.DataFrame, path) -> dict[tuple[str, str], pd.DataFrame]:
    """Heatmaps mix (rows) x eval set (columns) of four posterior-predictive checks (columns), one row of panels per
    model: each cell the mean over seeds, coloured within its check so that the bright end is better. Returns
    ``{(model, check): mean pivot}``."""
    checks = [c for c in POSTERIOR_CHECKS if c in table]
    data = _as_str(_finite(table, *checks), "model", "mix", "eval_set") if checks else table.iloc[0:0]
    if data.empty:
        _empty_figure(path, "Posterior-predictive checks", "no count model was checked (no finite values)")
        return {}
    models = sorted(data["model"].unique())
    mixes, evals = sorted(data["mix"].unique()), sorted(data["eval_set"].unique())
    w = max(2.6, 0.55 * len(evals) + 1.2)
    h = max(1.8, 0.4 * len(mixes) + 0.9)
    fig, axes = plt.subplots(len(models), len(checks), squeeze=False,
                             figsize=_figsize(len(checks), len(models), w, h, extra_w=1.5, extra_h=0.6))  # fmt: skip
    out = {}
    for j, check in enumerate(checks):
        means = data.groupby(["model", "mix", "eval_set"], observed=True)[check].mean()
        lo, hi = float(means.min()), float(means.max())
        cmap = plt.get_cmap("viridis" if POSTERIOR_CHECKS[check] else "viridis_r")
        for i, model in enumerate(models):
            ax = axes[i, j]
            pivot = means.loc[model].unstack("eval_set").reindex(index=mixes, columns=evals)
            out[(model, check)] = pivot
            ax.imshow(pivot.to_numpy(dtype=float), cmap=cmap, vmin=lo, vmax=hi if hi > lo else lo + 1e-9,
                      aspect="auto")  # fmt: skip
            for (r, c), v in np.ndenumerate(pivot.to_numpy(dtype=float)):
                if np.isfinite(v):
                    rgba = cmap((v - lo) / (hi - lo) if hi > lo else 0.5)
                    ax.text(c, r, f"{v:.3f}", ha="center", va="center", fontsize=7, color=_text_colour(rgba))
            _label_ticks(ax, "x", range(len(evals)), evals if i == len(models) - 1 else [""] * len(evals))
            _label_ticks(ax, "y", range(len(mixes)), mixes if j == 0 else [""] * len(mixes))
            ax.set_title(f"{model}: {POSTERIOR_CHECK_LABELS[check]}", fontsize=8)
    fig.suptitle("Posterior-predictive checks: real held-out cells against one replicate of each "
                 "(mean over seeds; bright = closer)", fontsize=9)  # fmt: skip
    _save(fig, path)
    return out
