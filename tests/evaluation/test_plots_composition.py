"""Figures of composition_effects.tsv: dose_response, scaling_curve, effects_heatmap (scmix.plots.composition)."""

import matplotlib.image as mpimg
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PathCollection, PolyCollection

from scmix.plots.composition import dose_response, effects_heatmap, scaling_curve
from scmix.plots.style import DPI, MAX_FIGSIZE, METRIC_LABELS, category_colours

MODELS = ["linear", "scvi"]
ADDED = ["atlasA", "atlasB"]
SHARES = [0.0, 0.25, 0.5]
SIZES = [250, 500, 1000]
EVALS = ["ev1", "ev2", "ev3"]


def image(path, min_px=200):
    assert path.is_file()
    img = mpimg.imread(path)
    assert img.ndim == 3 and img.shape[2] in (3, 4) and img.std() > 0
    h, w = img.shape[:2]
    assert min_px <= h <= MAX_FIGSIZE[1] * DPI + 1
    assert min_px <= w <= MAX_FIGSIZE[0] * DPI + 1
    return img


def row(**kw):
    base = {"model": "linear", "eval_set": "ev1", "cell_type": "all", "metric": "pearson", "sweep": "mixing",
            "kind": "share", "added": np.nan, "share": np.nan, "total_cells": 1000, "mix": "base",
            "reference": "base", "n_seeds": 3, "n_cells": 200, "mean": 0.5, "seed_sd": 0.01,
            "reference_mean": 0.5, "delta": 0.0, "ci_low": 0.0, "ci_high": 0.0, "p_value": np.nan,
            "verdict": "reference"}  # fmt: skip
    base.update(kw)
    return base


def verdict_of(delta):
    return "helps" if delta > 0.02 else "hurts" if delta < -0.02 else "no detectable effect"


def effects_table():
    """2 models x 3 eval sets x 2 metrics x 2 cell types of: share sweep "mixing" (2 added datasets, shares
    0/0.25/0.5), share sweep "other" (1 added dataset, shares 0/0.1) and size sweep "size" (250/500/1000 cells)."""
    rng = np.random.default_rng(0)
    rows = []
    for model in MODELS:
        for metric, level in [("pearson", 0.5), ("marginal_ll", -900.0)]:
            for cell_type in ["all", "B cell"]:
                for e, ev in enumerate(EVALS):
                    common = {"model": model, "metric": metric, "cell_type": cell_type, "eval_set": ev}
                    ref_mean = level + 0.05 * e
                    for a, added in enumerate(ADDED):
                        for share in SHARES:
                            delta = 0.0 if share == 0 else (0.1 if a == 0 else -0.01) * share * (1 + e)
                            rows.append(row(**common, added=added, share=share, total_cells=1000,
                                            mix="base" if share == 0 else f"base+{added}{share}",
                                            mean=ref_mean + delta, reference_mean=ref_mean, delta=delta,
                                            ci_low=delta - 0.01, ci_high=delta + 0.01,
                                            p_value=np.nan if share == 0 else 0.01,
                                            verdict="reference" if share == 0 else verdict_of(delta),
                                            seed_sd=abs(rng.normal(0.01, 0.002))))  # fmt: skip
                    for share in [0.0, 0.1]:
                        delta = 0.0 if share == 0 else -0.05
                        rows.append(row(**common, sweep="other", added="atlasC", share=share, mean=ref_mean + delta,
                                        mix="base" if share == 0 else "base+atlasC", delta=delta,
                                        reference_mean=ref_mean, p_value=np.nan if share == 0 else 0.001,
                                        verdict="reference" if share == 0 else verdict_of(delta)))  # fmt: skip
                    for size in SIZES:
                        delta = 0.0 if size == 1000 else -0.03 * (1000 / size - 1)
                        rows.append(row(**common, sweep="size", kind="size", total_cells=size, mix=f"n{size}",
                                        reference="n1000", mean=ref_mean + delta, reference_mean=ref_mean,
                                        delta=delta, p_value=np.nan if size == 1000 else 0.02,
                                        verdict="reference" if size == 1000 else verdict_of(delta)))  # fmt: skip
    return pd.DataFrame(rows)


def collections(fig, kind):
    return [c for ax in fig.axes for c in ax.collections if isinstance(c, kind)]


def stars(fig):
    return sum(len(c.get_offsets()) for c in collections(fig, PathCollection))


def keys(table, *columns):
    return sorted(map(tuple, table[list(columns)].astype(str).to_numpy().tolist()))


# ---------------------------------------------------------------------------------------------------------------
# dose_response


def test_dose_response_plots_the_share_sweep_rows(tmp_path, closed):
    effects = effects_table()
    # a NaN mean is skipped; rows of the other sweep, the size sweep, another metric or a cell type are not drawn
    nan_row = (effects["sweep"] == "mixing") & (effects["metric"] == "pearson") & (effects["cell_type"] == "all")
    nan_row &= (effects["model"] == "scvi") & (effects["added"] == "atlasB") & (effects["share"] == 0.25)
    nan_row &= effects["eval_set"] == "ev2"
    assert nan_row.sum() == 1
    effects.loc[nan_row, "mean"] = np.nan

    out = dose_response(effects, tmp_path / "dose.png", "mixing")
    image(tmp_path / "dose.png", min_px=400)
    expected = effects[(effects["sweep"] == "mixing") & (effects["metric"] == "pearson")
                       & (effects["cell_type"] == "all") & effects["mean"].notna()]  # fmt: skip
    assert len(out) == len(MODELS) * len(ADDED) * len(SHARES) * len(EVALS) - 1 == len(expected)
    assert keys(out, "model", "added", "eval_set", "share") == keys(expected, "model", "added", "eval_set", "share")
    assert set(out["sweep"]) == {"mixing"} and set(out["cell_type"]) == {"all"} and set(out["metric"]) == {"pearson"}
    assert set(out["kind"]) == {"share"} and out["mean"].notna().all()
    # the share-0 base once per added dataset
    assert (out["share"] == 0).sum() == len(MODELS) * len(ADDED) * len(EVALS)

    fig = closed[-1]
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert len(panels) == len(MODELS) * len(ADDED)
    assert {ax.get_title() for ax in panels} == {f"{m}: + {a}" for m in MODELS for a in ADDED}
    assert stars(fig) == out["verdict"].isin(["helps", "hurts"]).sum() > 0
    assert len(collections(fig, PolyCollection)) == len(MODELS) * len(ADDED) * len(EVALS)  # one band per line
    assert "mixing" in fig._suptitle.get_text()
    assert any(ax.get_ylabel() == "mean per-cell Pearson r" for ax in panels)
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == [*EVALS, "significant vs share 0%"]
    # x in percent
    xs = sorted({x for ax in panels for line in ax.get_lines() for x in line.get_xdata()})
    assert xs == [0.0, 25.0, 50.0]


def test_dose_response_other_metric_and_colours_over_all_eval_sets(tmp_path, closed):
    effects = effects_table()
    extra = row(eval_set="ev0", sweep="size", kind="size", total_cells=500)  # an eval set of another sweep only
    effects = pd.concat([effects, pd.DataFrame([extra])], ignore_index=True)
    out = dose_response(effects, tmp_path / "dose_ll.png", "other", metric="marginal_ll")
    image(tmp_path / "dose_ll.png")
    assert set(out["metric"]) == {"marginal_ll"} and set(out["sweep"]) == {"other"}
    assert len(out) == len(MODELS) * 2 * len(EVALS) and (out["mean"] < -800).all()
    fig = closed[-1]
    colours = category_colours(effects["eval_set"])
    assert colours != category_colours(EVALS)
    drawn = {plt.matplotlib.colors.to_hex(line.get_color()) for ax in fig.axes for line in ax.get_lines()}
    assert drawn == {colours[ev] for ev in EVALS}
    assert any(ax.get_ylabel() == METRIC_LABELS["marginal_ll"] for ax in fig.axes)


def test_dose_response_nan_seed_sd_draws_no_band(tmp_path, closed):
    effects = effects_table()
    effects["seed_sd"] = np.nan
    effects["n_seeds"] = 1
    out = dose_response(effects, tmp_path / "dose.png", "mixing")
    image(tmp_path / "dose.png")
    assert len(out) == len(MODELS) * len(ADDED) * len(SHARES) * len(EVALS)
    assert collections(closed[-1], PolyCollection) == []
    assert "one seed" in closed[-1]._suptitle.get_text()


def test_dose_response_partial_nan_seed_sd(tmp_path):
    effects = effects_table()
    effects.loc[effects["share"] == 0.25, "seed_sd"] = np.nan
    out = dose_response(effects, tmp_path / "dose.png", "mixing")
    image(tmp_path / "dose.png")
    assert out["seed_sd"].isna().sum() == len(MODELS) * len(ADDED) * len(EVALS)


@pytest.mark.parametrize("case", ["unknown sweep", "size sweep", "no rows", "no columns", "all nan"])
def test_dose_response_empty_selection_writes_empty_figure(tmp_path, closed, case):
    effects = effects_table()
    if case == "all nan":
        effects["mean"] = np.nan
    table = {"no rows": effects.iloc[0:0], "no columns": pd.DataFrame()}.get(case, effects)
    sweep = {"unknown sweep": "nope", "size sweep": "size"}.get(case, "mixing")
    out = dose_response(table, tmp_path / "empty.png", sweep)
    image(tmp_path / "empty.png", min_px=100)
    assert out.empty
    assert not closed[-1].axes[0].axison and "no finite pearson" in closed[-1].axes[0].texts[0].get_text()


# ---------------------------------------------------------------------------------------------------------------
# scaling_curve


def test_scaling_curve_plots_the_size_sweep_rows(tmp_path, closed):
    effects = effects_table()
    effects.loc[(effects["kind"] == "size") & (effects["total_cells"] == 500) & (effects["model"] == "linear")
                & (effects["eval_set"] == "ev3"), "mean"] = np.nan  # fmt: skip
    out = scaling_curve(effects, tmp_path / "scaling.png", "size")
    image(tmp_path / "scaling.png", min_px=300)
    expected = effects[(effects["sweep"] == "size") & (effects["metric"] == "pearson")
                       & (effects["cell_type"] == "all") & effects["mean"].notna()]  # fmt: skip
    expected = expected.assign(total_cells=expected["total_cells"].astype(float))
    assert len(out) == len(MODELS) * len(SIZES) * len(EVALS) - 1 == len(expected)
    assert keys(out, "model", "eval_set", "total_cells") == keys(expected, "model", "eval_set", "total_cells")
    assert set(out["kind"]) == {"size"} and set(out["cell_type"]) == {"all"}
    fig = closed[-1]
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert sorted(ax.get_title() for ax in panels) == MODELS
    assert all(ax.get_xscale() == "log" for ax in panels)
    assert stars(fig) == out["verdict"].isin(["helps", "hurts"]).sum() > 0
    assert [t.get_text() for t in fig.legends[0].get_texts()] == [*EVALS, "significant vs 1,000 cells"]
    assert [t.get_text() for t in panels[0].get_xticklabels()] == ["250", "500", "1,000"]


def test_scaling_curve_nan_seed_sd_and_empty(tmp_path, closed):
    effects = effects_table()
    effects["seed_sd"] = np.nan
    out = scaling_curve(effects, tmp_path / "scaling.png", "size", metric="marginal_ll")
    image(tmp_path / "scaling.png")
    assert len(out) == len(MODELS) * len(SIZES) * len(EVALS) and set(out["metric"]) == {"marginal_ll"}
    assert collections(closed[-1], PolyCollection) == []

    out = scaling_curve(effects, tmp_path / "empty.png", "mixing")  # a share sweep: nothing to draw
    image(tmp_path / "empty.png", min_px=100)
    assert out.empty and not closed[-1].axes[0].axison


# ---------------------------------------------------------------------------------------------------------------
# effects_heatmap


def test_effects_heatmap_takes_the_largest_share_of_each_line(tmp_path, closed):
    effects = effects_table()
    # a NaN delta at the largest share is skipped (the cell shows n/a), not replaced by a smaller share
    gap = (effects["sweep"] == "other") & (effects["share"] == 0.1) & (effects["metric"] == "pearson")
    gap &= (effects["cell_type"] == "all") & (effects["model"] == "scvi") & (effects["eval_set"] == "ev1")
    assert gap.sum() == 1
    effects.loc[gap, "delta"] = np.nan

    out = effects_heatmap(effects, tmp_path / "heat.png")
    image(tmp_path / "heat.png", min_px=300)
    assert set(out["kind"]) == {"share"} and set(out["metric"]) == {"pearson"} and set(out["cell_type"]) == {"all"}
    largest = {("mixing", "atlasA"): 0.5, ("mixing", "atlasB"): 0.5, ("other", "atlasC"): 0.1}
    assert {(s, a): x for s, a, x in zip(out["sweep"], out["added"], out["share"], strict=True)} == largest
    assert len(out) == len(MODELS) * len(largest) * len(EVALS) - 1
    assert set(out["row"]) == {"mixing: atlasA (50%)", "mixing: atlasB (50%)", "other: atlasC (10%)"}
    assert not out.duplicated(["model", "row", "eval_set"]).any()

    fig = closed[-1]
    panels = [ax for ax in fig.axes if ax.get_title() in MODELS]
    assert len(panels) == len(MODELS)
    cells = [t.get_text() for ax in panels for t in ax.texts]
    assert len(cells) == len(MODELS) * len(largest) * len(EVALS) and cells.count("n/a") == 1
    assert sum(c.endswith("*") for c in cells) == out["verdict"].isin(["helps", "hurts"]).sum() > 0
    d = out.loc[(out["model"] == "linear") & (out["row"] == "mixing: atlasA (50%)") & (out["eval_set"] == "ev3")]
    assert f"{d['delta'].item():+.3f}*" in cells
    colourbar = [ax for ax in fig.axes if ax.get_ylabel() == "Δ vs reference"]
    assert len(colourbar) == 1
    image_norm = panels[0].images[0].norm
    assert image_norm.vmin == -image_norm.vmax == -np.abs(out["delta"]).max()


def test_effects_heatmap_empty_and_other_metric(tmp_path, closed):
    effects = effects_table()
    out = effects_heatmap(effects, tmp_path / "ll.png", metric="marginal_ll")
    image(tmp_path / "ll.png")
    assert set(out["metric"]) == {"marginal_ll"} and len(out) == len(MODELS) * 3 * len(EVALS)

    only_size = effects[effects["kind"] == "size"]
    out = effects_heatmap(only_size, tmp_path / "empty.png")
    image(tmp_path / "empty.png", min_px=100)
    assert out.empty and "row" in out and not closed[-1].axes[0].axison
    out = effects_heatmap(pd.DataFrame(), tmp_path / "empty2.png")
    assert out.empty and (tmp_path / "empty2.png").is_file()


def test_effects_figures_stay_within_max_figsize(tmp_path, closed):
    """~2 models x 4 added datasets x 5 eval sets: the figures are capped at MAX_FIGSIZE."""
    effects = effects_table()
    effects = pd.concat(
        [effects.assign(added=effects["added"].str.replace("atlas", prefix), eval_set=effects["eval_set"] + suffix)
         for prefix in ["atlas", "dataset_with_a_long_name_"] for suffix in ["", "_b"]], ignore_index=True
    )  # fmt: skip
    dose_response(effects, tmp_path / "dose.png", "mixing")
    effects_heatmap(effects, tmp_path / "heat.png")
    for fig in closed[-2:]:
        w, h = fig.get_size_inches()
        assert w <= MAX_FIGSIZE[0] and h <= MAX_FIGSIZE[1]
    image(tmp_path / "dose.png", min_px=400)
    image(tmp_path / "heat.png", min_px=400)
