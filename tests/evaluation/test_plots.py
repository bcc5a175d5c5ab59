import matplotlib.image as mpimg
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_hex

from scmix.plots.evaluation import (
    accuracy_heatmap,
    celltype_boxplot,
    metric_heatmap,
    synthetic_f1_bars,
    umap_panels,
    zero_calibration,
)
from scmix.plots.style import category_colours
from scmix.plots.training import loss_curve, training_curves


def image(path):
    assert path.is_file()
    img = mpimg.imread(path)
    assert img.ndim == 3 and img.std() > 0
    return img


def texts(fig):
    return [t for ax in fig.axes for t in ax.texts]


# ---------------------------------------------------------------------------------------------------------------
# category_colours


def test_category_colours_deterministic_order_independent_and_distinct():
    names = [f"type_{i}" for i in range(20)]
    rng = np.random.default_rng(0)
    shuffled = list(rng.permutation(names)) + names[:5]  # order and repeats do not matter
    assert category_colours(names) == category_colours(shuffled)
    colours = category_colours(names)
    assert len(set(colours.values())) == 20
    small = category_colours(["b", "a", np.nan, "c", "a"])
    assert list(small) == ["a", "b", "c"]
    assert small["a"] == to_hex(plt.get_cmap("tab10")(0)) and small["c"] == to_hex(plt.get_cmap("tab10")(2))
    many = category_colours([f"c{i:02d}" for i in range(45)])
    assert len(set(many.values())) == 45
    assert category_colours([]) == {}


# ---------------------------------------------------------------------------------------------------------------
# metric_heatmap / accuracy_heatmap


def metric_table(models=("m1", "m2"), seeds=(0, 1, 2), seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for model in models:
        for mix in ("real_only", "real_plus_synthetic"):
            for s in seeds:
                for j, ev in enumerate(("heldout_a", "heldout_b", "heldout_c")):
                    rows.append({"model": model, "mix": mix, "seed": s, "eval_set": ev, "cell_type": "all",
                                 "pearson_mean": 0.4 + 0.1 * j + 0.05 * rng.normal()})  # fmt: skip
    return pd.DataFrame(rows)


def test_metric_heatmap_means_and_annotations(tmp_path, closed):
    table = metric_table()
    table.loc[0, "pearson_mean"] = np.nan  # skipped, not a crash
    out = metric_heatmap(table, tmp_path / "h.png", "pearson_mean", label="Pearson r")
    image(tmp_path / "h.png")
    assert set(out) == {"m1", "m2"}
    clean = table.dropna(subset=["pearson_mean"])
    stats = clean.groupby(["model", "mix", "eval_set"])["pearson_mean"].agg(["mean", "std"])
    for model, mean in out.items():
        expected = stats.loc[model, "mean"].unstack()
        pd.testing.assert_frame_equal(mean, expected, check_names=False)
    m, s = stats.loc[("m1", "real_only", "heldout_b")]
    annotations = [t.get_text() for t in texts(closed[-1])]
    assert f"{m:.3f}\n±{s:.3f}" in annotations
    # text colour contrasts with the cell: viridis is dark at the low end, bright at the high end
    by_text = {t.get_text(): t.get_color() for t in texts(closed[-1])}
    means = stats["mean"]
    lowest, highest = stats.loc[means.idxmin()], stats.loc[means.idxmax()]
    assert by_text[f"{lowest['mean']:.3f}\n±{lowest['std']:.3f}"] == "white"
    assert by_text[f"{highest['mean']:.3f}\n±{highest['std']:.3f}"] == "black"


def test_metric_heatmap_single_seed_has_no_spread_and_lower_is_better(tmp_path, closed):
    table = metric_table(models=("m1",), seeds=(0,)).rename(columns={"pearson_mean": "nll"})
    out = metric_heatmap(table, tmp_path / "h.png", "nll", higher_is_better=False)
    image(tmp_path / "h.png")
    annotations = [t.get_text() for t in texts(closed[-1])]
    assert len(annotations) == 6 and not any("±" in a for a in annotations)
    assert out["m1"].shape == (2, 3)
    assert "lower is better" in closed[-1]._suptitle.get_text()


def test_loglikelihood_heatmap_colours_each_eval_set_against_its_own_best(tmp_path, closed):
    """log p(x) of eval sets with other genes and depths is not comparable: each column's best mean is the bright
    end of the scale, whatever its absolute value; the cells still show the values."""
    table = metric_table(seeds=(0,)).rename(columns={"pearson_mean": "marginal_ll"})
    scale = {"heldout_a": -600.0, "heldout_b": -1200.0, "heldout_c": -2400.0}
    table["marginal_ll"] = table["eval_set"].map(scale) + 10 * table["marginal_ll"]
    out = metric_heatmap(table, tmp_path / "h.png", "marginal_ll")
    image(tmp_path / "h.png")
    fig = closed[-1]
    panels = [ax for ax in fig.axes if ax.images]  # the colour bar has none
    shades = {model: np.ma.filled(ax.images[0].get_array(), np.nan) for ax, model in zip(panels, sorted(out),
                                                                                         strict=True)}  # fmt: skip
    best = pd.concat(out.values()).max()  # per eval set over every model and mix
    for model, mean in out.items():
        np.testing.assert_allclose(shades[model], (mean - best).to_numpy(), atol=1e-9)
    assert max(np.nanmax(s) for s in shades.values()) == 0.0  # the best of each column at the top of the scale
    assert any("minus the best of its eval set" in ax.get_ylabel() for ax in fig.axes)
    assert f"{out['m1'].iat[0, 0]:.0f}" in [t.get_text() for t in texts(fig)]


def test_accuracy_heatmap_uses_overall_rows_only(tmp_path):
    table = metric_table()
    per_type = table.assign(cell_type="T", pearson_mean=-5.0)
    out = accuracy_heatmap(pd.concat([table, per_type]), tmp_path / "a.png")
    image(tmp_path / "a.png")
    assert all((mean.to_numpy() > 0).all() for mean in out.values())


# ---------------------------------------------------------------------------------------------------------------
# celltype_boxplot


def cells_table(seeds=(0, 1)):
    rng = np.random.default_rng(1)
    rows = []
    for model in ("nb_vae", "gauss_vae"):
        for mix in ("real_only", "mixed"):
            for seed in seeds:
                for ev in ("e1", "e2", "e3", "e4"):
                    for ct in ("T cell", "B cell", "CD14+ monocyte"):
                        for _ in range(15):
                            rows.append((model, mix, seed, ev, ct, rng.uniform(0.2, 0.9)))
    return pd.DataFrame(rows, columns=["model", "mix", "seed", "eval_set", "cell_type", "pearson"])


def test_celltype_boxplot_one_panel_per_eval_set_wrapped(tmp_path, closed):
    cells = cells_table()
    cells.loc[cells.index[:10], "pearson"] = np.nan
    drawn = celltype_boxplot(cells, tmp_path / "b.png", "nb_vae")
    img = image(tmp_path / "b.png")
    assert drawn == ["e1", "e2", "e3", "e4"]
    fig = closed[-1]
    assert len(fig.axes) == 4
    assert fig.axes[0].get_ylabel() == "per-cell Pearson r"
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["B cell", "CD14+ monocyte", "T cell"]
    assert fig._suptitle.get_text().startswith("nb_vae: reconstruction accuracy per cell type")
    assert img.shape[0] > 0.5 * img.shape[1]  # 4 panels wrap into two rows

    one = celltype_boxplot(cells_table(seeds=(0,)).query("eval_set == 'e2'"), tmp_path / "one.png", "gauss_vae")
    assert one == ["e2"]
    image(tmp_path / "one.png")
    assert celltype_boxplot(cells, tmp_path / "none.png", "absent") == []
    image(tmp_path / "none.png")


# ---------------------------------------------------------------------------------------------------------------
# training_curves


def history_table(val=True, scale=1.0, seeds=(0, 1)):
    rows = []
    for model in ("nb_vae", "gauss_vae"):
        for mix in ("real_only", "mixed"):
            for seed in seeds:
                epochs = np.arange(1, 21)
                train = scale * (500 / epochs + 100 + seed)
                vals = train + 5 + 0.3 * (epochs - 12) ** 2
                best = epochs == epochs[np.argmin(vals)]
                for e, t, v, b in zip(epochs, train, vals, best, strict=True):
                    row = {"model": model, "mix": mix, "seed": seed, "epoch": e, "train_elbo": t, "best": b}
                    if val:
                        row["val_elbo"] = v
                    rows.append(row)
    return pd.DataFrame(rows)


def test_training_curves_lines_dots_and_scale(tmp_path, closed):
    history = history_table()
    history.loc[3, "val_elbo"] = np.nan
    out = training_curves(history, tmp_path / "t.png")
    image(tmp_path / "t.png")
    assert out["y"] == "val_elbo" and out["runs"] == {"gauss_vae": 4, "nb_vae": 4}
    assert out["log_scale"] == {"gauss_vae": False, "nb_vae": False}
    fig = closed[-1]
    assert fig.axes[0].get_ylabel() == "validation negative ELBO per cell"
    ax = fig.axes[0]
    assert len(ax.lines) == 4 and len(ax.collections) == 4  # one line and one best-epoch dot per run
    (best_epoch,) = ax.collections[0].get_offsets()[:, 0]
    first = history.query("model == 'gauss_vae' and mix == 'mixed' and seed == 0")  # first run drawn, sorted
    assert best_epoch == first.loc[first["best"], "epoch"].item()

    wide = history_table(val=False, seeds=(0,))
    nb = wide["model"] == "nb_vae"
    wide.loc[nb, "train_elbo"] = np.logspace(3, 0, 20)[wide.loc[nb, "epoch"] - 1]  # three decades
    out = training_curves(wide, tmp_path / "w.png")
    image(tmp_path / "w.png")
    assert out["y"] == "train_elbo" and out["runs"] == {"gauss_vae": 2, "nb_vae": 2}
    assert out["log_scale"] == {"gauss_vae": False, "nb_vae": True}


def test_the_mix_legend_stays_clear_of_the_title_with_one_panel(tmp_path, closed):
    """The demo's case: one model, so one narrow panel; the figure title must not run under the legend."""
    history = history_table(seeds=(0, 1, 2))
    history = history[history["model"] == "nb_vae"]
    history = pd.concat([history.assign(mix=name) for name in ("base", "base+blood2", "base+tumour", "tumour_alone")])
    training_curves(history, tmp_path / "t.png")
    fig = closed[-1]
    renderer = FigureCanvasAgg(fig).get_renderer()  # the closed figure has lost its canvas
    fig.draw(renderer)
    (legend,) = fig.legends
    title = fig.get_suptitle()
    assert title.startswith("Training curves")
    assert not legend.get_window_extent(renderer).overlaps(fig._suptitle.get_window_extent(renderer))
    assert not legend.get_window_extent(renderer).overlaps(fig.axes[0].get_window_extent(renderer))


# ---------------------------------------------------------------------------------------------------------------
# umap_panels


def test_umap_panels_legends_and_colours(tmp_path, closed):
    rng = np.random.default_rng(2)
    n = 600
    coords = pd.DataFrame({
        "umap1": rng.normal(size=n), "umap2": rng.normal(size=n),
        "cell_type": rng.choice(["T", "B", "NK", "Mono"], size=n),
        "dataset": rng.choice(["pbmc3k", "synthetic"], size=n),
        "donor": [f"donor_{i % 40:02d}" for i in range(n)],
    })  # fmt: skip
    coords.loc[0, "umap1"] = np.nan
    coords.loc[1, "cell_type"] = None
    out = umap_panels(coords, ["cell_type", "dataset", "donor"], tmp_path / "u.png", title="test UMAP")
    image(tmp_path / "u.png")
    assert out == {"cell_type": 4, "dataset": 2, "donor": 40}
    fig = closed[-1]
    ax_ct, ax_ds, ax_donor = fig.axes
    assert ax_ct.get_legend() is not None and ax_donor.get_legend() is None
    assert "too many for a legend" in ax_donor.get_title()
    assert ax_ct.get_xlabel() == "UMAP1" and ax_ct.get_ylabel() == "UMAP2" and len(ax_ct.get_xticks()) == 0
    assert len(ax_ct.collections[0].get_offsets()) == n - 2
    colours = category_colours(["T", "B", "NK", "Mono"])
    leg = ax_ct.get_legend()
    legend = {t.get_text(): to_hex(h.get_color()) for t, h in zip(leg.get_texts(), leg.legend_handles, strict=True)}
    assert legend == colours


# ---------------------------------------------------------------------------------------------------------------
# synthetic_f1_bars


def f1_table(seeds=(0, 1, 2), discriminator=True):
    rng = np.random.default_rng(3)
    rows = []
    for model in ("nb_vae", "gauss_vae"):
        for mix in ("real_only", "mixed"):
            for seed in seeds:
                for ev in ("e1", "e2"):
                    for level in ("fine", "coarse"):
                        for setting in ("real_to_real", "real_to_synthetic", "synthetic_to_real"):
                            for cls in ("T", "B", "macro", "micro"):
                                for metric in ("precision", "recall", "f1", "support"):
                                    rows.append((model, mix, seed, ev, level, setting, cls, metric, rng.uniform()))
                    if discriminator:
                        rows.append((model, mix, seed, ev, "all", "discriminator", "all", "auc", rng.uniform(0.5, 1)))
    return pd.DataFrame(rows, columns=["model", "mix", "seed", "eval_set", "level", "setting", "class", "metric",
                                       "value"])  # fmt: skip


def test_synthetic_f1_bars_means_match_pandas(tmp_path, closed):
    table = f1_table()
    first_macro = table.index[(table["class"] == "macro") & (table["metric"] == "f1")][0]
    table.loc[first_macro, "value"] = np.nan
    out = synthetic_f1_bars(table, tmp_path / "f.png")
    img = image(tmp_path / "f.png")
    sel = table[(table["class"] == "macro") & (table["metric"] == "f1")].dropna(subset=["value"])
    expected = sel.groupby(["level", "eval_set", "model", "mix", "setting"])["value"].agg(["mean", "std"])
    f1 = out[out["setting"] != "discriminator"].set_index(["level", "eval_set", "model", "mix", "setting"])
    assert len(f1) == len(expected) == 2 * 2 * 2 * 2 * 3
    np.testing.assert_allclose(f1.loc[expected.index, "mean"], expected["mean"])
    np.testing.assert_allclose(f1.loc[expected.index, "sd"], expected["std"])
    disc = out[out["setting"] == "discriminator"]
    auc = table[table["setting"] == "discriminator"].groupby(["eval_set", "model", "mix"])["value"].mean()
    np.testing.assert_allclose(disc.set_index(["eval_set", "model", "mix"]).loc[auc.index, "mean"], auc)
    fig = closed[-1]
    assert len(fig.axes) == 6  # fine, coarse and the AUC row, for two eval sets
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == ["real → real", "real → synthetic", "synthetic → real"]
    assert all(ax.get_ylim() == (0, 1) for ax in fig.axes)
    assert any(t.get_text() == "indistinguishable" for t in fig.axes[-1].texts)
    assert fig.axes[0].get_ylabel() == "macro F1 (fine labels)"
    assert img.shape[0] > 0.5 * img.shape[1]


def test_synthetic_f1_bars_single_seed_without_discriminator(tmp_path, closed):
    out = synthetic_f1_bars(f1_table(seeds=(0,), discriminator=False), tmp_path / "f.png")
    image(tmp_path / "f.png")
    assert out["sd"].isna().all() and (out["n"] == 1).all() and "discriminator" not in set(out["setting"])
    assert len(closed[-1].axes) == 4


def test_synthetic_f1_bars_title_fits_a_one_eval_set_figure(tmp_path, closed):
    """The demo's case: one model, one eval set, one level; the figure title stays inside the figure."""
    table = f1_table()
    table = table[(table["model"] == "nb_vae") & (table["eval_set"] == "e1") & (table["level"] != "coarse")]
    synthetic_f1_bars(table, tmp_path / "f.png")
    fig = closed[-1]
    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)
    title, box = fig._suptitle.get_window_extent(renderer), fig.bbox
    assert box.x0 <= title.x0 and title.x1 <= box.x1, (title, box)


# ---------------------------------------------------------------------------------------------------------------
# zero_calibration


def test_zero_calibration_mean_differences_and_gaussian_panels(tmp_path, closed):
    rng = np.random.default_rng(4)
    rows = []
    for model in ("nb_vae", "gauss_vae"):
        for mix in ("real_only", "mixed"):
            for ev in ("e1", "e2"):
                for g in range(50):
                    expected = rng.uniform(0, 0.9) if model == "nb_vae" else np.nan
                    observed = min(1.0, (expected if model == "nb_vae" else 0.5) + rng.uniform(0, 0.1))
                    rows.append((model, mix, ev, f"g{g}", observed, expected))
    genes = pd.DataFrame(rows, columns=["model", "mix", "eval_set", "gene", "observed_zero_fraction",
                                        "expected_zero_fraction"])  # fmt: skip
    out = zero_calibration(genes, tmp_path / "z.png")
    image(tmp_path / "z.png")
    assert set(out) == {(m, e) for m in ("gauss_vae", "nb_vae") for e in ("e1", "e2")}
    assert out[("gauss_vae", "e1")] == {}
    nb = genes[genes["model"] == "nb_vae"]
    expected = (nb["observed_zero_fraction"] - nb["expected_zero_fraction"]).groupby([nb["eval_set"], nb["mix"]]).mean()
    for (ev, mix), d in expected.items():
        assert out[("nb_vae", ev)][mix] == pytest.approx(d)
        assert d > 0
    fig = closed[-1]
    assert any(t.get_text() == "no count model" for t in fig.axes[0].texts)  # gauss_vae sorts first
    assert "underfits zeros" in fig._supxlabel.get_text()
    assert fig.axes[-1].get_xlim() == (0, 1)
    # one line per mix (and the zero line) in every count-model panel: the mixes side by side, none hidden
    nb_panel = fig.axes[2]  # row nb_vae, column e1
    assert nb_panel.get_title() == "nb_vae | e1" and len(nb_panel.lines) == 1 + 2
    medians = [np.asarray(line.get_ydata()) for line in nb_panel.lines[1:]]
    assert all(len(m) >= 5 and (m > 0).all() for m in medians)  # observed above expected by 0-0.1


def test_loss_curve_and_empty_inputs_still_write_images(tmp_path):
    history = pd.DataFrame({"epoch": np.arange(1, 6), "train_elbo": np.linspace(5, 1, 5),
                            "train_recon": np.linspace(4, 1, 5), "train_kl": np.linspace(1, 0.1, 5),
                            "best": [False, False, False, True, False]})  # fmt: skip
    loss_curve(history, tmp_path / "loss.png", title="m | mix | seed 0")
    image(tmp_path / "loss.png")
    assert metric_heatmap(metric_table().assign(pearson_mean=np.nan), tmp_path / "e.png", "pearson_mean") == {}
    image(tmp_path / "e.png")
