import numpy as np
import pandas as pd
import pytest
import scanpy as sc

from scmix.data.mix import check_no_leak, make_mix, manifest, recipe_counts
from scmix.data.simulate import simulate_dataset
from scmix.data.split import split_heldout
from scmix.errors import ScmixInputError


@pytest.fixture(scope="module")
def parts(universe, blood):
    tumour = simulate_dataset("tumour", {"n_cells": 500, "cell_types": {"T": 0.3, "Malignant": 0.7}}, universe)
    tumour = tumour[:, 5:].copy()  # a dataset missing some genes
    return {"blood": blood, "tumour": tumour}


def test_recipe_counts_are_exact_and_sum_to_total():
    counts = recipe_counts({"total_cells": 1001, "datasets": {"a": 1 / 3, "b": 1 / 3, "c": 1 / 3}},
                           {"a": 500, "b": 500, "c": 500}, "m")  # fmt: skip
    assert sum(counts.values()) == 1001 and sorted(counts.values()) == [333, 334, 334]


def test_oversubscription_fails_with_the_numbers():
    with pytest.raises(ScmixInputError, match=r"asks for 600 cells of dataset 'a'.*holds only 500"):
        recipe_counts({"total_cells": 600, "datasets": {"a": 1.0}}, {"a": 500}, "m")
    # with replacement it is allowed
    assert recipe_counts({"total_cells": 600, "datasets": {"a": 1.0}, "replace": True}, {"a": 500}, "m") == {"a": 600}


def test_fractions_must_sum_to_one():
    with pytest.raises(ScmixInputError, match="sum to 0.9"):
        recipe_counts({"total_cells": 10, "datasets": {"a": 0.5, "b": 0.4}}, {"a": 9, "b": 9}, "m")


def test_mix_follows_recipe_on_shared_genes_and_is_reproducible(parts):
    recipe = {"total_cells": 400, "datasets": {"blood": 0.5, "tumour": 0.5}}
    mix = make_mix("m", recipe, parts, seed=0)
    assert mix.obs["dataset"].value_counts().to_dict() == {"blood": 200, "tumour": 200}
    assert list(mix.var_names) == list(parts["tumour"].var_names)  # the intersection, in order
    assert mix.obs_names.is_unique
    again = make_mix("m", recipe, parts, seed=0)
    assert list(again.obs_names) == list(mix.obs_names) and (again.X != mix.X).nnz == 0
    other = make_mix("m", recipe, parts, seed=1)
    assert set(other.obs_names) != set(mix.obs_names)
    tab = manifest(mix)
    assert tab.groupby("dataset", observed=True)["n_cells"].sum().to_dict() == {"blood": 200, "tumour": 200}


def test_same_seed_draws_nested_subsets_of_a_dataset(parts):
    small = make_mix("a", {"total_cells": 100, "datasets": {"blood": 1.0}}, parts, seed=5)
    big = make_mix("b", {"total_cells": 300, "datasets": {"blood": 0.5, "tumour": 0.5}}, parts, seed=5)
    blood_in_big = list(big.obs_names[big.obs["dataset"] == "blood"])
    assert list(small.obs_names) == blood_in_big[:100]


def test_leak_check_fails_when_an_eval_cell_is_in_the_mix(blood):
    train, held = split_heldout(blood, 0.2, seed=0)
    mix = make_mix("m", {"total_cells": 100, "datasets": {"blood": 1.0}}, {"blood": train}, seed=0)
    check_no_leak(mix.obs["source_cell_id"], {"blood": held.obs_names}, "m")  # disjoint: passes
    with pytest.raises(ScmixInputError, match="leaked"):
        check_no_leak(list(mix.obs["source_cell_id"]) + [held.obs_names[0]], {"blood": held.obs_names}, "m")


def test_mix_on_real_pbmc3k_train_split(pbmc3k):
    train, held = split_heldout(pbmc3k, 0.2, seed=0)
    mix = make_mix("base", {"total_cells": 1000, "datasets": {"pbmc3k": 1.0}}, {"pbmc3k": train}, seed=0)
    assert mix.n_obs == 1000 and mix.n_vars == pbmc3k.n_vars
    check_no_leak(mix.obs["source_cell_id"], {"pbmc3k": held.obs_names}, "base")
    with pytest.raises(ScmixInputError, match="holds only 2110"):
        make_mix("big", {"total_cells": 3000, "datasets": {"pbmc3k": 1.0}}, {"pbmc3k": train}, seed=0)


def test_absolute_cells_and_parts_of_a_dataset(parts):
    recipe = {"datasets": {"blood": {"cells": 120, "part": 2, "parts": 2}, "tumour": {"cells": 80}}}
    mix = make_mix("m", recipe, parts, seed=3)
    assert mix.obs["dataset"].value_counts().to_dict() == {"blood": 120, "tumour": 80}
    half1 = make_mix("h1", {"datasets": {"blood": {"cells": 120, "part": 1, "parts": 2}}}, parts, seed=3)
    blood2 = set(mix.obs_names[mix.obs["dataset"] == "blood"])
    assert blood2.isdisjoint(half1.obs_names)  # the two halves of one seed share no cell
    with pytest.raises(ScmixInputError, match="part 1 of 2 of its training split holds only 300"):
        make_mix("x", {"datasets": {"blood": {"cells": 301, "part": 1, "parts": 2}}}, parts, seed=0)
    with pytest.raises(ScmixInputError, match="a fraction or every dataset a number of cells"):
        recipe_counts({"total_cells": 10, "datasets": {"a": 0.5, "b": {"cells": 5}}}, {"a": 9, "b": 9}, "m")


def test_manifest_summary_counts(parts):
    from scmix.data.mix import manifest_summary

    recipe = {"total_cells": 100, "datasets": {"blood": 0.5, "tumour": 0.5}}
    mix = make_mix("m", recipe, parts, seed=0)
    info = manifest_summary(mix, recipe)
    assert info["cells_per_dataset"] == {"blood": 50, "tumour": 50} and info["n_cells"] == 100
    assert sum(info["cells_per_cell_type"].values()) == 100 and sum(info["cells_per_donor"].values()) == 100
    assert info["seed"] == 0 and info["n_genes"] == mix.n_vars


def test_shared_barcodes_across_datasets_are_distinct_cells(blood):
    """10x barcodes repeat across datasets: a cell is (dataset, barcode), never the barcode alone."""
    from scmix.data.mix import mix_cell_ids, qualified_ids

    other = blood.copy()  # same barcodes, another dataset
    train_a, held_a = split_heldout(blood, 0.2, seed=0)
    train_b, held_b = split_heldout(other, 0.2, seed=1)
    mix = make_mix("m", {"total_cells": 800, "datasets": {"a": 0.5, "b": 0.5}}, {"a": train_a, "b": train_b}, seed=0)
    assert mix.obs_names.is_unique and mix.n_obs == 800
    ids = mix_cell_ids(mix)
    eval_ids = {"a": qualified_ids("a", held_a.obs_names), "b": qualified_ids("b", held_b.obs_names)}
    check_no_leak(ids, eval_ids, "m")  # b's training barcodes are a's held-out ones, but other cells
    with pytest.raises(ScmixInputError, match="leaked"):
        check_no_leak(ids.append(pd.Index([f"a:{held_a.obs_names[0]}"])), eval_ids, "m")


# ----------------------------------------------------------------------- labels across sources (real PBMC data)
def test_a_mix_of_labelled_and_unlabelled_real_datasets_keeps_every_label(pbmc3k, kang2018, tmp_path, caplog):
    import anndata as ad

    unlabelled = kang2018[:3000].copy()
    unlabelled.obs = unlabelled.obs[[]]  # no labels at all
    parts = {"pbmc3k": pbmc3k, "kang": kang2018[3000:].copy(), "bare": unlabelled}
    recipe = {"total_cells": 600, "datasets": {"pbmc3k": 1 / 3, "kang": 1 / 3, "bare": 1 / 3}}
    with caplog.at_level("WARNING", logger="scmix.data.mix"):
        mix = make_mix("m", recipe, parts, seed=0)
    by = mix.obs.groupby("dataset", observed=True)
    # Kang's donors and cell types survive; PBMC 3k (no donor) and the bare set are NA, not dropped or invented
    assert by["donor"].apply(lambda s: s.notna().all()).to_dict() == {"pbmc3k": False, "kang": True, "bare": False}
    assert by["donor"].apply(lambda s: s.isna().sum()).to_dict() == {"pbmc3k": 200, "kang": 0, "bare": 200}
    assert by["cell_type"].apply(lambda s: s.isna().sum()).to_dict() == {"pbmc3k": 0, "kang": 0, "bare": 200}
    from_kang = mix.obs[mix.obs["dataset"] == "kang"]
    source = kang2018.obs.loc[from_kang["source_cell_id"]]
    assert (from_kang["donor"].astype(str).to_numpy() == source["donor"].astype(str).to_numpy()).all()
    assert mix.obs["donor"].dtype == "category" and mix.obs["cell_type"].dtype == "category"
    warned = "obs column 'donor' is missing in dataset 'pbmc3k', dataset 'bare'; NA for the 400 cells"
    assert warned in caplog.text
    # written and read back unchanged; the manifest counts the unlabelled cells as NA
    mix.write_h5ad(tmp_path / "m.h5ad")
    back = ad.read_h5ad(tmp_path / "m.h5ad")
    assert back.obs["donor"].isna().sum() == 400 and back.obs["donor"].dtype == "category"
    tab = manifest(mix)
    assert tab["n_cells"].sum() == 600
    assert tab.loc[tab["dataset"] == "bare", ["cell_type", "donor"]].drop_duplicates().values.tolist() == [["NA", "NA"]]


# ------------------------------------------------------------ the same cell in two sources (real PBMC 3k copies)
def pbmc_copy(pbmc3k, n_cells=300, n_genes=9000, seed=0):
    """A second source holding some of PBMC 3k's very cells: a subset of cells in another order, a subset of the
    genes in another order (as an atlas's copy of a study would)."""
    rng = np.random.default_rng(seed)
    cells = rng.choice(pbmc3k.n_obs, n_cells, replace=False)
    genes = rng.choice(pbmc3k.n_vars, n_genes, replace=False)
    return pbmc3k[cells][:, genes].copy()


def test_real_cells_copied_into_another_source_are_caught_as_leaks(pbmc3k, kang2018):
    from scmix.data.mix import (
        check_no_duplicate_leak,
        cross_source_duplicates,
        drop_cross_source_duplicates,
        mix_cell_ids,
        qualified_ids,
        same_cells,
    )

    copy = pbmc_copy(pbmc3k, n_cells=500)
    _, held = split_heldout(pbmc3k, 0.2, seed=0)
    copy_train, _ = split_heldout(copy, 0.2, seed=1)
    parts, evals = {"copy": copy_train}, {"pbmc3k": held}
    mix = make_mix("m", {"total_cells": 200, "datasets": {"copy": 1.0}}, parts, seed=0)
    # the check by ID passes: these are another source's cells
    check_no_leak(mix_cell_ids(mix), {"pbmc3k": qualified_ids("pbmc3k", held.obs_names)}, "m")
    found = cross_source_duplicates(parts, evals)
    pairs, n_genes = found["copy", "pbmc3k"]
    expected = set(copy_train.obs_names) & set(held.obs_names)  # the copy keeps PBMC 3k's barcodes
    assert set(pairs["a"]) == expected and (pairs["a"] == pairs["b"]).all() and pairs["same_barcode"].all()
    assert n_genes == 9000 and len(expected) > 20
    drawn = len(set(mix.obs["source_cell_id"]) & expected)
    assert drawn > 0
    message = (rf"mix 'm': {drawn} cells drawn from dataset 'copy' are the same cells as held-out cells of eval set "
               r"'pbmc3k' \(identical counts on all 9,000 genes.*split.drop_cross_source_duplicates: true")  # fmt: skip
    with pytest.raises(ScmixInputError, match=message):
        check_no_duplicate_leak(mix, found, "m")
    # dropped from the training side: the mix keeps its size and holds none of them
    kept, left = drop_cross_source_duplicates(parts, found, {"copy": True})
    assert len(kept["copy"]) == copy_train.n_obs - len(expected) and left == {}
    clean = make_mix("m", {"total_cells": 200, "datasets": {"copy": 1.0}}, parts, seed=0, rows=kept)
    assert clean.n_obs == 200 and not set(clean.obs["source_cell_id"]) & expected
    check_no_duplicate_leak(clean, left, "m")
    # other barcodes: still the same cells
    renamed = copy_train.copy()
    renamed.obs_names = [f"sample2_{b}" for b in renamed.obs_names]
    again, _ = same_cells(renamed, held, "symbols")
    assert len(again) == len(expected) and not again["same_barcode"].any()
    # two real studies of PBMCs share no cell: no false alarm on 12,261 x 528 cells
    assert cross_source_duplicates({"kang": kang2018}, evals) == {}


def test_the_same_real_cells_drawn_from_two_datasets_of_a_mix_are_named(pbmc3k, kang2018, caplog):
    from scmix.data.mix import warn_same_cells_within

    train, _ = split_heldout(pbmc3k, 0.2, seed=0)
    parts = {"pbmc3k": train, "copy": pbmc_copy(train, n_cells=1500, n_genes=12000)}
    mix = make_mix("m", {"total_cells": 1000, "datasets": {"pbmc3k": 0.5, "copy": 0.5}}, parts, seed=0)
    truth = len(set(mix.obs.loc[mix.obs["dataset"] == "pbmc3k", "source_cell_id"])
                & set(mix.obs.loc[mix.obs["dataset"] == "copy", "source_cell_id"]))  # fmt: skip
    assert truth > 50
    with caplog.at_level("WARNING", logger="scmix.data.mix"):
        assert warn_same_cells_within(mix, "m") == 2 * truth
    assert f"{2 * truth} cells are the same cell drawn from more than one dataset" in caplog.text
    other = make_mix("k", {"total_cells": 1000, "datasets": {"pbmc3k": 0.5, "kang": 0.5}},
                     {"pbmc3k": train, "kang": kang2018}, seed=0)  # fmt: skip
    assert warn_same_cells_within(other, "k") == 0


def test_mix_rule_stops_on_a_cross_source_leak_and_drops_it_when_asked(pbmc3k, shared_data, tmp_path):
    """End to end: a second real source holding PBMC 3k cells; the mix stops with one line, then the option drops
    them."""
    import json

    import yaml
    from conftest import write_mex
    from snakerun import snakemake

    write_mex(pbmc_copy(pbmc3k, n_cells=600), tmp_path / "copy_mex")
    cfg = {
        "seeds": [0],
        "datasets": {
            "pbmc3k": {"source": "tenx",
                       "url": f"file:{shared_data}/pbmc3k/pbmc3k_filtered_gene_bc_matrices.tar.gz"},
            "copy": {"source": "tenx", "url": f"file:{tmp_path}/copy_mex"},
        },
        "qc": {"min_genes": 200, "min_cells": 3, "max_pct_mito": 10, "min_counts": 500},
        "split": {"eval_fraction": 0.2, "seed": 0, "stratify": None},
        "mixes": {"copy_only": {"total_cells": 300, "datasets": {"copy": 1.0}}},
        "models": {"ldvae": {"architecture": "ldvae", "epochs": 1}},
    }  # fmt: skip
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(cfg))
    target = "results/mixes/copy_only/seed0.h5ad"
    res = snakemake(tmp_path, "--cores", "2", target, config=config)
    assert res.returncode != 0
    line = next(x for x in res.stderr.splitlines() if "same cells as held-out cells" in x)
    assert "mix 'copy_only': " in line and "eval set 'pbmc3k'" in line and "Traceback" not in res.stderr
    assert not (tmp_path / target).exists()
    cfg["datasets"]["copy"]["split"] = {"drop_cross_source_duplicates": True}
    config.write_text(yaml.safe_dump(cfg))
    res = snakemake(tmp_path, "--cores", "2", target, config=config)
    assert res.returncode == 0, res.stderr[-3000:]
    import anndata as ad

    mix = ad.read_h5ad(tmp_path / target, backed="r")
    held = ad.read_h5ad(tmp_path / "results/split/pbmc3k/eval.h5ad", backed="r").obs_names
    assert mix.n_obs == 300 and not set(mix.obs["source_cell_id"]) & set(held)
    log = (tmp_path / "logs/mix/copy_only/seed0.log").read_text()
    assert "training cells dropped, the same cells as held-out cells of eval set 'pbmc3k'" in log
    assert json.loads((tmp_path / "results/mixes/copy_only/seed0.manifest.json").read_text())["n_cells"] == 300


def test_a_mix_drawn_from_backed_files_equals_the_one_drawn_in_memory(pbmc3k, kang2018, tmp_path):
    """The mix rule leaves the training parts and eval sets on disk and reads only the rows it draws: the same
    duplicates found, the same rows dropped, the same mix cell for cell, with and without replacement."""
    from scmix.data.mix import cross_source_duplicates, drop_cross_source_duplicates
    from scmix.io import read_h5ad, write_h5ad

    train, held = split_heldout(pbmc3k, 0.2, seed=0)
    copy_train, _ = split_heldout(pbmc_copy(pbmc3k, n_cells=500), 0.2, seed=1)
    memory = {"pbmc3k": train, "copy": copy_train, "kang": kang2018}
    for d, a in {**memory, "held": held}.items():
        write_h5ad(a, tmp_path / f"{d}.h5ad")
    backed = {d: read_h5ad(tmp_path / f"{d}.h5ad", backed=True) for d in memory}
    evals = {"pbmc3k": held}
    found = cross_source_duplicates({"copy": copy_train}, evals)
    found_backed = cross_source_duplicates({"copy": backed["copy"]}, {"pbmc3k": read_h5ad(tmp_path / "held.h5ad",
                                                                                           backed=True)})  # fmt: skip
    assert found.keys() == found_backed.keys() == {("copy", "pbmc3k")}
    pd.testing.assert_frame_equal(found["copy", "pbmc3k"][0], found_backed["copy", "pbmc3k"][0])
    rows, _ = drop_cross_source_duplicates({"copy": copy_train}, found, {"copy": True})
    for recipe in ({"total_cells": 900, "datasets": {"pbmc3k": 0.5, "copy": 0.1, "kang": 0.4}},
                   {"total_cells": 3000, "replace": True, "datasets": {"copy": 0.5, "kang": 0.5}}):  # fmt: skip
        one = make_mix("m", recipe, memory, seed=4, rows=rows, n_top_genes=300)
        other = make_mix("m", recipe, backed, seed=4, rows=rows, n_top_genes=300)
        assert not other.isbacked and one.n_obs == recipe["total_cells"] and one.n_vars == 300
        assert (one.X != other.X).nnz == 0 and one.X.nnz > 0
        pd.testing.assert_frame_equal(one.obs, other.obs)
        pd.testing.assert_frame_equal(one.var, other.var)
        dropped = set(found["copy", "pbmc3k"][0]["a"])
        assert not dropped & set(one.obs.loc[one.obs["dataset"] == "copy", "source_cell_id"])


def test_a_label_that_is_numbers_in_one_dataset_and_text_in_another_is_written_as_text(pbmc3k, kang2018, tmp_path,
                                                                                        caplog):  # fmt: skip
    """Kang 2018's donors are numbers (1016, as its parser reads them), PBMC 3k's a name: the mix writes the column as
    text, each label as it reads, with a warning (h5ad cannot store a column of mixed types)."""
    import anndata as ad

    from scmix.io import write_h5ad

    train, _ = split_heldout(pbmc3k, 0.2, seed=0)
    train = train.copy()
    train.obs["donor"] = pd.Categorical(["pbmc3k_donor"] * train.n_obs)
    kang = kang2018.copy()
    kang.obs["donor"] = kang.obs["donor"].astype(int)
    with caplog.at_level("WARNING", logger="scmix.data.mix"):
        mix = make_mix("m", {"total_cells": 600, "datasets": {"pbmc3k": 0.5, "kang": 0.5}},
                       {"pbmc3k": train, "kang": kang}, seed=0)  # fmt: skip
    assert "obs column 'donor' holds numbers in dataset 'kang' and text in dataset 'pbmc3k'; written as text" in (
        caplog.text)  # fmt: skip
    write_h5ad(mix, tmp_path / "m.h5ad")
    back = ad.read_h5ad(tmp_path / "m.h5ad").obs
    drawn = back.loc[back["dataset"] == "kang", "source_cell_id"]
    assert (back.loc[back["dataset"] == "kang", "donor"].astype(str).to_numpy()
            == kang2018.obs.loc[drawn, "donor"].astype(str).to_numpy()).all()  # fmt: skip
    assert set(back.loc[back["dataset"] == "pbmc3k", "donor"]) == {"pbmc3k_donor"}


def test_a_seurat_v3_fit_that_fails_on_a_small_real_mix_says_what_to_change(pbmc3k):
    """scanpy's seurat_v3 flavour fits a loess (scikit-misc) that fails on 200 PBMC 3k cells; the mix stops with one
    line naming the mix and the settings to change, and the seurat flavour works on the same cells."""
    recipe = {"total_cells": 200, "datasets": {"pbmc3k": 1.0}}
    with pytest.raises(ScmixInputError) as err:
        make_mix("small", recipe, {"pbmc3k": pbmc3k}, seed=0, n_top_genes=500)
    text = str(err.value)
    assert text.startswith("mix 'small': genes.n_top_genes 500 with hvg_flavor seurat_v3: scanpy's fit on the mix's")
    assert "set genes.hvg_flavor: seurat" in text and "\n" not in text
    mix = make_mix("small", recipe, {"pbmc3k": pbmc3k}, seed=0, n_top_genes=500, hvg_flavor="seurat")
    # the seurat flavour expects log data: scanpy's own choice on a normalised, log1p copy of the same cells
    cells = pbmc3k[mix.obs["source_cell_id"].to_numpy()].copy()
    sc.pp.normalize_total(cells, target_sum=1e4)
    sc.pp.log1p(cells)
    expected = sc.pp.highly_variable_genes(cells, n_top_genes=500, flavor="seurat", inplace=False)["highly_variable"]
    assert mix.n_vars == 500 and set(mix.var_names) == set(pbmc3k.var_names[expected.to_numpy()])
    raw = pbmc3k[mix.obs["source_cell_id"].to_numpy()][:, mix.var_names].X
    assert (mix.X != raw).nnz == 0  # the counts stay counts
