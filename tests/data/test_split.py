import numpy as np
import pytest

from scmix.data.split import describe, split_heldout, split_indices
from scmix.errors import ScmixInputError


def test_split_is_disjoint_sized_stratified_and_deterministic(blood):
    train, held = split_heldout(blood, 0.25, seed=0)
    assert set(train.obs_names).isdisjoint(held.obs_names)
    assert train.n_obs + held.n_obs == blood.n_obs
    assert held.n_obs == pytest.approx(0.25 * blood.n_obs, abs=1)
    frac = held.obs["cell_type"].value_counts(normalize=True)
    full = blood.obs["cell_type"].value_counts(normalize=True)
    assert np.allclose(frac[full.index], full, atol=0.02)
    again, _ = split_heldout(blood, 0.25, seed=0)
    assert list(again.obs_names) == list(train.obs_names)
    other, _ = split_heldout(blood, 0.25, seed=1)
    assert list(other.obs_names) != list(train.obs_names)


def test_split_rejects_bad_fraction(blood):
    with pytest.raises(ValueError, match="eval_fraction"):
        split_heldout(blood, 1.0, seed=0)


def test_split_on_real_pbmc3k_keeps_every_cell_type_on_both_sides(pbmc3k):
    train, held = split_heldout(pbmc3k, 0.2, seed=0)
    assert held.n_obs == round(0.2 * 2638)
    assert set(held.obs["cell_type"]) == set(train.obs["cell_type"]) == set(pbmc3k.obs["cell_type"])


def test_group_split_keeps_every_donor_on_one_side(blood):
    train, held = split_heldout(blood, 0.3, seed=0, method="group", group_key="donor")  # ceil(0.9) = 1 donor
    assert set(train.obs["donor"]).isdisjoint(held.obs["donor"])
    assert held.obs["donor"].nunique() == 1 and train.obs["donor"].nunique() == 2


def test_holdout_cell_types_go_to_eval_only(blood):
    train, held = split_heldout(blood, 0.2, seed=0, holdout_cell_types=["B"])
    assert "B" not in set(train.obs["cell_type"])
    assert (held.obs["cell_type"] == "B").sum() == (blood.obs["cell_type"] == "B").sum()
    assert set(held.obs["cell_type"]) == {"T", "B", "Mono"}  # the seen types are evaluated too
    assert (held.obs["holdout_cell_type"] == (held.obs["cell_type"] == "B")).all()


def test_a_split_without_holdout_types_says_so_as_before(blood):
    train, held = split_heldout(blood, 0.25, seed=0)
    assert not held.obs["holdout_cell_type"].any()
    assert held.uns["split"]["n_eval_holdout_cell_types"] == 0 and held.uns["split"]["n_eval_split"] == held.n_obs
    assert (
        describe(held.uns["split"], "blood")
        == f"blood: {train.n_obs} training cells, {held.n_obs} held-out cells (random split)"
    )


def test_split_errors_name_the_problem(blood):
    from scmix.errors import ScmixInputError

    with pytest.raises(ScmixInputError, match=r"dataset 'b'.*holdout_cell_types \['Plasma'\] not found"):
        split_heldout(blood, 0.2, seed=0, holdout_cell_types=["Plasma"], dataset="b")
    with pytest.raises(ScmixInputError, match="needs an obs column group_key"):
        split_heldout(blood, 0.2, seed=0, method="group", group_key="patient", dataset="b")


def test_real_kang2018_split_by_donor(shared_data):
    import anndata as ad
    import pandas as pd
    import scanpy as sc

    kang = sc.read_10x_mtx(shared_data / "kang2018")
    meta = pd.read_csv(shared_data / "kang2018" / "cell_metadata.csv", index_col=0)
    kang.obs = meta.loc[kang.obs_names]
    train, held = split_heldout(ad.AnnData(kang.X, obs=kang.obs), 0.25, seed=0, method="group", group_key="donor")
    assert set(train.obs["donor"]).isdisjoint(set(held.obs["donor"]))
    assert held.obs["donor"].nunique() == 2 and train.obs["donor"].nunique() == 6  # 25 % of 8 donors
    assert train.n_obs + held.n_obs == 12261


def test_real_pbmc3k_held_out_b_cells_are_in_no_training_mix(pbmc3k, tmp_path):
    from scmix.data.mix import check_no_leak, make_mix
    from scmix.io import read_h5ad, write_h5ad

    train, held = split_heldout(pbmc3k, 0.2, seed=0, holdout_cell_types=["B"])
    assert (held.obs["cell_type"] == "B").sum() == 344
    # the split says how many held-out cells are an unseen type, not only how many were held out
    n_split = round(0.2 * (2638 - 344))
    assert held.uns["split"] == train.uns["split"] == {
        "method": "random", "eval_fraction": 0.2, "seed": 0, "n_train": 2638 - 344 - n_split,
        "n_eval": n_split + 344, "n_eval_split": n_split, "n_eval_holdout_cell_types": 344,
        "holdout_cell_types": ["B"]}  # fmt: skip
    assert describe(held.uns["split"], "pbmc3k") == (
        f"pbmc3k: {train.n_obs} training cells, {held.n_obs} held-out cells: {n_split} by the random split and 344 "
        "of holdout_cell_types (B), cell types kept out of training")  # fmt: skip
    assert held.obs["holdout_cell_type"].sum() == 344
    write_h5ad(held, tmp_path / "eval.h5ad")  # as the split rule writes it, and the evaluate rule reads it
    again = read_h5ad(tmp_path / "eval.h5ad")
    assert again.obs["holdout_cell_type"].sum() == 344 and again.uns["split"]["n_eval_holdout_cell_types"] == 344
    for seed in (0, 1, 2):
        mix = make_mix("base", {"total_cells": 1500, "datasets": {"pbmc3k": 1.0}}, {"pbmc3k": train}, seed=seed)
        assert "B" not in set(mix.obs["cell_type"])
        check_no_leak(mix.obs["source_cell_id"], {"pbmc3k": held.obs_names}, "base")


# --------------------------------------------------- which strategy a split used, and why (real PBMC 3k, Kang)
def test_split_says_how_it_stratified_and_never_falls_back_silently(pbmc3k, caplog):
    with caplog.at_level("INFO", logger="scmix.data.split"):
        split_indices(pbmc3k, 0.2, 0, "cell_type", dataset="pbmc3k")
    assert "dataset 'pbmc3k': random split stratified by 'cell_type' (9 classes)" in caplog.text
    bare = pbmc3k.copy()
    bare.obs = bare.obs.rename(columns={"cell_type": "cluster_id"})
    caplog.clear()
    with caplog.at_level("INFO", logger="scmix.data.split"):
        split_indices(bare, 0.2, 0, "cell_type", dataset="pbmc3k")  # the package default: a loud warning
    warning = next(r for r in caplog.records if r.levelname == "WARNING").getMessage()
    assert "has no obs column 'cell_type'" in warning and "NOT stratified" in warning and "obs_keys" in warning
    # named by the config: it stops, with what to change
    with pytest.raises(ScmixInputError, match=r"dataset 'pbmc3k': split.stratify is 'cell_type' but the dataset has "
                       r"no obs column 'cell_type' \(it has \['cluster_id'\]\); map one of its columns"):  # fmt: skip
        split_indices(bare, 0.2, 0, "cell_type", dataset="pbmc3k", stratify_required=True)
    # a class too small to stratify by is named
    caplog.clear()
    rare = pbmc3k.copy()
    rare.obs["cell_type"] = rare.obs["cell_type"].astype(str)
    rare.obs.iloc[0, rare.obs.columns.get_loc("cell_type")] = "Erythrocyte"
    with caplog.at_level("WARNING", logger="scmix.data.split"):
        split_indices(rare, 0.2, 0, "cell_type", dataset="pbmc3k")
    assert "class 'Erythrocyte' of 'cell_type' has 1 cell" in caplog.text
