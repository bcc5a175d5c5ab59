"""Figures (matplotlib, Agg backend). Plotting code only: no modelling, no metrics."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


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
    fig.savefig(path, dpi=120)
    plt.close(fig)


def accuracy_heatmap(summary: pd.DataFrame, path, value: str = "pearson_mean") -> None:
    """Heatmap mix x eval set of the mean over seeds (overall rows), one panel per model.

    Each cell shows mean ± standard deviation over seeds.
    """
    overall = summary[summary["cell_type"] == "all"]
    models = sorted(overall["model"].unique())
    fig, axes = plt.subplots(
        1,
        len(models),
        figsize=(1.6 + 1.5 * overall["eval_set"].nunique() * len(models), 1.4 + 0.6 * overall["mix"].nunique()),
        squeeze=False,
    )
    for ax, model in zip(axes[0], models, strict=True):
        sub = overall[overall["model"] == model]
        mean = sub.pivot_table(index="mix", columns="eval_set", values=value, aggfunc="mean")
        sd = sub.pivot_table(index="mix", columns="eval_set", values=value, aggfunc="std").reindex_like(mean)
        values = mean.to_numpy()
        im = ax.imshow(values, cmap="viridis", vmin=np.nanmin(values), vmax=np.nanmax(values), aspect="auto")
        for i in range(mean.shape[0]):
            for j in range(mean.shape[1]):
                s = sd.iat[i, j]
                text = f"{mean.iat[i, j]:.3f}" + ("" if np.isnan(s) else f"\n±{s:.3f}")
                ax.text(j, i, text, ha="center", va="center", fontsize=8, color="white")
        ax.set_xticks(range(mean.shape[1]), mean.columns, rotation=30, ha="right")
        ax.set_yticks(range(mean.shape[0]), mean.index)
        ax.set_xlabel("eval set")
        ax.set_ylabel("training mix")
        ax.set_title(f"{model}: {value} (mean ± sd over seeds)", fontsize=9)
        fig.colorbar(im, ax=ax, shrink=0.8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
