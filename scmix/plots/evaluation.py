"""Figures of evaluation: accuracy and likelihood heatmaps over models and mixes (rule plot_heatmap), accuracy per
cell type (rule plot_celltypes), the latent space's UMAP (rule plot_umap), synthetic cells' F1 (rule
plot_synthetic), zero calibration (rule plot_zero_calibration) and posterior-predictive checks (rule
plot_posterior_checks)."""

from __future__ import annotations

import warnings

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from scmix.plots.style import (
    MAX_LEGEND_ENTRIES,
    METRIC_LABELS,
    _as_str,
    _decimals,
    _empty_figure,
    _error_bars,
    _figsize,
    _figure_legend,
    _finite,
    _grid,
    _heatmap_panels,
    _label_ticks,
    _legend_width,
    _mean_sd,
    _save,
    _text_colour,
    category_colours,
)

SETTING_LABELS = {
    "real_to_real": "real → real",
    "real_to_synthetic": "real → synthetic",
    "synthetic_to_real": "synthetic → real",
}
# metrics whose values are comparable within an eval set only (a log-likelihood depends on the set's genes and
# library sizes): their heatmaps colour each eval set against its best value
PER_EVAL_SET_METRICS = {"marginal_ll", "elbo", "recon_nll"}


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
