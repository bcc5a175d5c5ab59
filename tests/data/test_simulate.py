import numpy as np
import scipy.sparse as sp

from scmix.data.simulate import simulate_dataset
from scmix.io import check_integer_counts


def mean_profile(adata, mask):
    X = adata.X[mask]
    cp10k = sp.diags(1e4 / np.asarray(X.sum(1)).ravel()) @ X
    return np.log1p(np.asarray(cp10k.mean(0)).ravel())


def test_counts_are_sparse_integers_with_realistic_sparsity(blood):
    assert sp.isspmatrix_csr(blood.X) or sp.issparse(blood.X)
    assert blood.X.dtype == np.int32
    check_integer_counts(blood.X)
    assert set(blood.obs["cell_type"].cat.categories) == {"T", "B", "Mono"}
    assert blood.obs["donor"].nunique() == 3


def test_same_seed_same_data_other_universe_seed_differs(universe, blood):
    from scmix.data.simulate import Universe

    spec = {"n_cells": 600, "donors": 3, "cell_types": {"T": 0.5, "B": 0.2, "Mono": 0.3}}
    again = simulate_dataset("blood", spec, universe)
    assert (again.X != blood.X).nnz == 0
    other = simulate_dataset("blood", spec, Universe(n_genes=800, seed=4))
    assert (other.X != blood.X).nnz > 0


def test_shared_cell_types_share_programmes_across_datasets(universe, blood):
    tumour = simulate_dataset(
        "tumour", {"n_cells": 600, "cell_types": {"T": 0.5, "Malignant": 0.5}, "batch_effect": 0.1}, universe
    )
    t_blood = mean_profile(blood, (blood.obs["cell_type"] == "T").to_numpy())
    t_tumour = mean_profile(tumour, (tumour.obs["cell_type"] == "T").to_numpy())
    malignant = mean_profile(tumour, (tumour.obs["cell_type"] == "Malignant").to_numpy())
    b_blood = mean_profile(blood, (blood.obs["cell_type"] == "B").to_numpy())
    same = np.corrcoef(t_blood, t_tumour)[0, 1]
    assert same > np.corrcoef(t_blood, malignant)[0, 1] + 0.02
    assert same > np.corrcoef(t_blood, b_blood)[0, 1] + 0.02


def test_low_quality_cells_fail_in_the_expected_direction(blood):
    X = blood.X
    total = np.asarray(X.sum(1)).ravel()
    mito = np.asarray(X[:, :13].sum(1)).ravel() / np.maximum(total, 1)
    q = blood.obs["simulated_quality"].to_numpy()
    assert np.median(mito[q == "high_mito"]) > 3 * np.median(mito[q == "ok"])
    assert np.median(total[q == "empty_like"]) < 0.2 * np.median(total[q == "ok"])


def test_perturbation_knocks_its_target_down(universe):
    screen = simulate_dataset(
        "screen",
        {"n_cells": 1500, "donors": 1, "cell_types": {"K562": 1.0},
         "perturbations": {"n_targets": 3, "control_fraction": 0.4, "knockdown": 0.1}},
        universe,
    )  # fmt: skip
    pert = screen.obs["perturbation"].astype(str)
    ctrl = (pert == "non-targeting").to_numpy()
    share = screen.X.toarray() / np.asarray(screen.X.sum(1))
    for target in set(pert) - {"non-targeting"}:
        g = screen.var_names.get_loc(target)
        hit = (pert == target).to_numpy()
        assert share[hit, g].mean() < 0.35 * share[ctrl, g].mean()


def test_demo_universe_is_about_ninety_percent_zeros():
    from scmix.data.simulate import Universe

    demo = simulate_dataset("d", {"n_cells": 500, "cell_types": {"T": 0.5, "B": 0.5}}, Universe(4000, 7))
    zeros = 1 - demo.X.nnz / np.prod(demo.shape)
    assert 0.85 < zeros < 0.95
    totals = np.asarray(demo.X.sum(1)).ravel()
    assert 1000 < np.median(totals) < 4000  # log-normal library sizes around the configured mean
