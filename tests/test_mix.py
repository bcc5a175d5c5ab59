import pandas as pd
import pytest

from scmix.errors import ScmixInputError
from scmix.mix import check_no_leak, make_mix, manifest, recipe_counts
from scmix.simulate import simulate_dataset
from scmix.split import split_heldout


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
    from scmix.mix import manifest_summary

    recipe = {"total_cells": 100, "datasets": {"blood": 0.5, "tumour": 0.5}}
    mix = make_mix("m", recipe, parts, seed=0)
    info = manifest_summary(mix, recipe)
    assert info["cells_per_dataset"] == {"blood": 50, "tumour": 50} and info["n_cells"] == 100
    assert sum(info["cells_per_cell_type"].values()) == 100 and sum(info["cells_per_donor"].values()) == 100
    assert info["seed"] == 0 and info["n_genes"] == mix.n_vars


def test_shared_barcodes_across_datasets_are_distinct_cells(blood):
    """10x barcodes repeat across datasets: a cell is (dataset, barcode), never the barcode alone."""
    from scmix.mix import mix_cell_ids, qualified_ids

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
