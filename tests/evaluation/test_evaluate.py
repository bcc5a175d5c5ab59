import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from anndata import AnnData

from scmix.data.expression import log1p_cp10k
from scmix.data.genes import reindex_to_genes
from scmix.errors import ScmixInputError
from scmix.evaluation.metrics import (
    likelihood_summary,
    pearson_per_cell,
    reconstruction_accuracy,
    summarise,
    top_variable_genes,
)


def test_log1p_cp10k_hand_value():
    out = log1p_cp10k(sp.csr_matrix([[1, 3], [0, 0]]))
    np.testing.assert_allclose(out, [[np.log1p(2500), np.log1p(7500)], [0, 0]])


def test_pearson_per_cell_hand_values():
    a = np.array([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [1.0, 1.0, 1.0]])
    b = np.array([[2.0, 4.0, 6.0], [3.0, 2.0, 1.0], [1.0, 2.0, 3.0]])
    r = pearson_per_cell(a, b)
    np.testing.assert_allclose(r[:2], [1.0, -1.0])
    assert np.isnan(r[2])
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(5, 40)), rng.normal(size=(5, 40))
    np.testing.assert_allclose(pearson_per_cell(x, y), [np.corrcoef(x[i], y[i])[0, 1] for i in range(5)])


def test_top_variable_genes_picks_highest_variance():
    X = np.array([[0, 5, 1, 0], [0, 0, 1, 9], [0, 5, 1, 0]], dtype=float)
    assert list(top_variable_genes(X, 2)) == [1, 3]


def test_reconstruction_accuracy_perfect_model_scores_one():
    counts = sp.csr_matrix(np.array([[10, 0, 5, 5], [1, 8, 0, 1], [3, 1, 6, 1]]))
    rho = counts.toarray() / counts.toarray().sum(1, keepdims=True)
    acc = reconstruction_accuracy(counts, rho, n_top_genes=3)
    np.testing.assert_allclose(acc["pearson"], 1.0)
    np.testing.assert_allclose(acc["r2"], 1.0)
    # (3 cells x 4 genes is too few for the seurat flavor's bins of mean expression: rank by variance)
    flat = reconstruction_accuracy(counts, np.full((3, 4), 0.25) + np.eye(3, 4) * 1e-3, n_top_genes=3,
                                   genes="variance")  # fmt: skip
    assert (flat["pearson"] < 1).all()


def test_reindex_pads_missing_genes_with_warning_and_fails_below_overlap():
    adata = AnnData(sp.csr_matrix(np.array([[1, 2, 3], [4, 5, 6]])), var=pd.DataFrame(index=["a", "b", "c"]))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        X, overlap = reindex_to_genes(adata, ["c", "zz", "a", "b"], min_overlap=0.7, eval_set="e")
    assert overlap == 0.75 and any("zero-padded" in str(w.message) for w in caught)
    np.testing.assert_array_equal(X.toarray(), [[3, 0, 1, 2], [6, 0, 4, 5]])
    with pytest.raises(ScmixInputError, match="dataset 'e'.*1 of the model's 3 genes"):
        reindex_to_genes(adata, ["a", "x", "y"], min_overlap=0.8, eval_set="e")


def test_summarise_gives_per_type_and_all_rows():
    per_cell = pd.DataFrame({"m": "x", "cell_type": ["T", "T", "B"], "pearson": [0.5, 0.7, 0.9],
                             "r2": [0.25, 0.49, 0.81]})  # fmt: skip
    s = summarise(per_cell, ["m"]).set_index("cell_type")
    assert s.loc["T", "n_cells"] == 2 and s.loc["T", "pearson_mean"] == pytest.approx(0.6)
    assert s.loc["all", "n_cells"] == 3 and s.loc["all", "pearson_median"] == pytest.approx(0.7)
    assert s.loc["all", "r2_mean"] == pytest.approx((0.25 + 0.49 + 0.81) / 3)
    assert (s["n_holdout_cell_types"] == 0).all()  # a table that does not mark held-out types: none


def test_summaries_count_the_cells_of_holdout_cell_types():
    # B was kept out of training (split.holdout_cell_types): the all row says how many of its cells are B
    per_cell = pd.DataFrame({"m": "x", "cell_type": ["T", "T", "B", "B", "B"], "pearson": [0.5, 0.7, 0.9, 0.8, np.nan],
                             "r2": [0.25, 0.49, 0.81, 0.64, np.nan], "recon_nll": 1.0, "elbo": -1.0,
                             "marginal_ll": -1.0, "holdout_cell_type": [False, False, True, True, True]})  # fmt: skip
    s = summarise(per_cell, ["m"]).set_index("cell_type")
    assert s["n_holdout_cell_types"].to_dict() == {"B": 2, "T": 0, "all": 2}  # of the scored cells
    assert s.loc["all", "n_cells"] == 4 and list(s.columns[:5]) == ["m", "n_cells", "pearson_mean", "pearson_median",
                                                                     "r2_mean"]  # fmt: skip
    like = likelihood_summary(per_cell, ["m"])
    assert like.loc[0, "n_cells"] == 5 and like.loc[0, "n_holdout_cell_types"] == 3
