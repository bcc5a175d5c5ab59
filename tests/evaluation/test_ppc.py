import tracemalloc
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.stats import ks_2samp

from scmix.errors import ScmixInputError
from scmix.evaluation.ppc import CheckAccumulator, posterior_checks, top_variable

KEYS = [
    "n_cells", "n_genes", "n_top_genes",
    "mean_corr", "mean_mae", "var_corr", "var_mae", "cv_corr", "cv_mae", "zero_fraction_corr", "zero_fraction_mae",
    "library_ks", "library_log_ratio", "corr_distance",
]  # fmt: skip


def _counts(rng, n_cells, n_genes, scale=3.0):
    mu = rng.gamma(0.5, scale, size=n_genes)
    return rng.poisson(mu * rng.gamma(2.0, 0.5, size=(n_cells, 1))).astype(np.int64)


def _corr(L):
    """Plain Pearson correlation matrix with the documented rule for constant genes."""
    sd = L.std(axis=0)
    C = np.zeros((L.shape[1], L.shape[1]))
    v = sd > 0
    C[np.ix_(v, v)] = np.corrcoef(L[:, v], rowvar=False)
    np.fill_diagonal(C, 1.0)
    return C


def _reference(real, rep, top):
    """Straightforward computation on the full dense arrays."""
    real, rep = np.asarray(real, dtype=float), np.asarray(rep, dtype=float)
    out = {"n_cells": real.shape[0], "n_genes": real.shape[1], "n_top_genes": len(top)}
    stats = {}
    for side, X in (("real", real), ("rep", rep)):
        mean, var = X.mean(axis=0), X.var(axis=0)
        cv = np.full(X.shape[1], np.nan)
        cv[mean > 0] = np.sqrt(var[mean > 0]) / mean[mean > 0]
        stats[side] = {"mean": mean, "var": var, "cv": cv, "zero_fraction": (X == 0).mean(axis=0)}
    for stat in ("mean", "var", "cv", "zero_fraction"):
        a, b = stats["real"][stat], stats["rep"][stat]
        keep = ~np.isnan(a) & ~np.isnan(b)
        a, b = a[keep], b[keep]
        if stat in ("mean", "var"):
            a, b = np.log1p(a), np.log1p(b)
        out[f"{stat}_corr"] = np.corrcoef(a, b)[0, 1]
        out[f"{stat}_mae"] = np.abs(a - b).mean()
    lr, lp = real.sum(axis=1), rep.sum(axis=1)
    out["library_ks"] = ks_2samp(lr, lp).statistic
    out["library_log_ratio"] = np.log(np.median(lp) / np.median(lr))
    diff = _corr(np.log1p(real[:, top])) - _corr(np.log1p(rep[:, top]))
    out["corr_distance"] = np.sqrt((diff**2).sum()) / len(top)
    return out, stats


def test_tiny_hand_values():
    real = np.array([[0, 2], [1, 0], [2, 4]])
    rep = np.array([[1, 1], [0, 0], [1, 3]])
    summary, genes = posterior_checks(real, rep, np.array([0, 1]))
    assert list(summary) == KEYS
    # gene 0: real 0,1,2 -> mean 1, var 2/3, one zero; rep 1,0,1 -> mean 2/3, var 2/9
    # gene 1: real 2,0,4 -> mean 2, var 8/3, one zero; rep 1,0,3 -> mean 4/3, var 14/9
    np.testing.assert_allclose(genes["real_mean"], [1, 2])
    np.testing.assert_allclose(genes["rep_mean"], [2 / 3, 4 / 3])
    np.testing.assert_allclose(genes["real_var"], [2 / 3, 8 / 3])
    np.testing.assert_allclose(genes["rep_var"], [2 / 9, 14 / 9])
    np.testing.assert_allclose(genes["real_cv"], [np.sqrt(2 / 3), np.sqrt(8 / 3) / 2])
    np.testing.assert_allclose(genes["real_zero_fraction"], [1 / 3, 1 / 3])
    np.testing.assert_allclose(genes["rep_zero_fraction"], [1 / 3, 1 / 3])
    assert summary["n_cells"] == 3 and summary["n_genes"] == 2 and summary["n_top_genes"] == 2
    # only 2 genes: no correlation across genes
    assert all(np.isnan(summary[f"{s}_corr"]) for s in ("mean", "var", "cv", "zero_fraction"))
    assert summary["mean_mae"] == pytest.approx((np.log1p(1) - np.log1p(2 / 3) + np.log1p(2) - np.log1p(4 / 3)) / 2)
    assert summary["zero_fraction_mae"] == 0.0
    # libraries: real 2, 1, 6; rep 2, 0, 4 -> ECDFs differ most at 0 and 1 (by 1/3)
    assert summary["library_ks"] == pytest.approx(1 / 3)
    assert summary["library_log_ratio"] == pytest.approx(np.log(2 / 2))
    # log1p of the top genes: real (0, l2), (l1, 0), (l2, l4); rep (l1, l1), (0, 0), (l1, l3)
    l1, l2, l3, l4 = np.log1p([1, 2, 3, 4])
    r_real = np.corrcoef([0, l1, l2], [l2, 0, l4])[0, 1]
    r_rep = np.corrcoef([l1, 0, l1], [l1, 0, l3])[0, 1]
    assert summary["corr_distance"] == pytest.approx(np.sqrt(2 * (r_real - r_rep) ** 2) / 2)


def test_matches_dense_reference():
    rng = np.random.default_rng(1)
    real, rep = _counts(rng, 60, 25), _counts(rng, 60, 25, scale=4.0)
    real[:, 3] = 0
    rep[:, 3] = 0
    rep[:, 5] = 7  # constant: correlation 0 with the others on the replicated side
    top = np.array([0, 2, 5, 7, 11, 19])
    summary, genes = posterior_checks(sp.csr_matrix(real), rep, top, chunk_cells=7)
    ref, stats = _reference(real, rep, top)
    assert list(summary) == KEYS
    for key in KEYS:
        assert summary[key] == pytest.approx(ref[key], rel=1e-10, abs=1e-12), key
    for side in ("real", "rep"):
        for stat in ("mean", "var", "cv", "zero_fraction"):
            np.testing.assert_allclose(genes[f"{side}_{stat}"], stats[side][stat], rtol=1e-10, atol=1e-12)
    assert genes.loc[5, "rep_var"] == 0.0 and genes.loc[5, "rep_cv"] == 0.0


def test_chunking_and_format_do_not_change_results():
    rng = np.random.default_rng(2)
    real, rep = _counts(rng, 40, 30), _counts(rng, 40, 30, scale=2.0)
    top = top_variable(real, 8)
    base_summary, base_genes = posterior_checks(real, rep, top, chunk_cells=10_000)
    variants = [
        (sp.csr_matrix(real), sp.csr_matrix(rep), 1),
        (sp.csc_matrix(real), rep.astype(np.float32), 3),
        (real.astype(np.uint16), sp.coo_matrix(rep), 16),
        (sp.csr_array(real), sp.csr_array(rep), 40),
    ]
    for r, p, chunk in variants:
        summary, genes = posterior_checks(r, p, top, chunk_cells=chunk)
        for key in KEYS:
            assert summary[key] == pytest.approx(base_summary[key], rel=1e-10, abs=1e-12), (key, chunk)
        np.testing.assert_allclose(genes.to_numpy(), base_genes.to_numpy(), rtol=1e-10, atol=1e-12)


def test_identical_sets():
    rng = np.random.default_rng(3)
    real = _counts(rng, 50, 20)
    summary, _ = posterior_checks(sp.csr_matrix(real), real.copy(), top_variable(real, 6), chunk_cells=8)
    for stat in ("mean", "var", "cv", "zero_fraction"):
        assert summary[f"{stat}_corr"] == pytest.approx(1.0)
        assert summary[f"{stat}_mae"] == 0.0
    assert summary["library_ks"] == 0.0
    assert summary["library_log_ratio"] == 0.0
    assert summary["corr_distance"] == pytest.approx(0.0, abs=1e-12)


def test_doubled_counts_log_ratio():
    rng = np.random.default_rng(4)
    real = _counts(rng, 31, 12) + 1
    summary, genes = posterior_checks(real, 2 * real, np.arange(12), chunk_cells=5)
    assert summary["library_log_ratio"] == pytest.approx(np.log(2))
    np.testing.assert_allclose(genes["rep_mean"], 2 * genes["real_mean"])
    np.testing.assert_allclose(genes["rep_cv"], genes["real_cv"])


def test_zero_gene_no_warnings_or_undocumented_nan():
    rng = np.random.default_rng(5)
    real, rep = _counts(rng, 30, 10), _counts(rng, 30, 10)
    real[:, 0] = 0
    rep[:, 0] = 0
    real[:, 1] = 0  # zero on one side only
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        summary, genes = posterior_checks(sp.csr_matrix(real), sp.csr_matrix(rep), np.array([0, 1, 2, 3]), 4)
    assert not any(np.isnan(v) for v in summary.values())
    assert np.isnan(genes.loc[0, "real_cv"]) and np.isnan(genes.loc[0, "rep_cv"]) and np.isnan(genes.loc[1, "real_cv"])
    assert genes.loc[0, "real_var"] == 0.0 and genes.loc[0, "real_zero_fraction"] == 1.0
    assert genes.drop(columns=["real_cv", "rep_cv"]).notna().all().all()


def test_empty_and_bad_input():
    acc = CheckAccumulator(4, np.array([0, 1]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        summary = acc.summary()
    assert summary["n_cells"] == 0 and np.isnan(summary["library_ks"]) and np.isnan(summary["corr_distance"])
    with pytest.raises(ScmixInputError):
        acc.add(np.zeros((2, 4)), np.zeros((3, 4)))
    with pytest.raises(ScmixInputError):
        CheckAccumulator(4, np.array([4]))
    with pytest.raises(ScmixInputError):
        CheckAccumulator(4, np.array([0.5]))
    with pytest.raises(ScmixInputError):
        posterior_checks(np.zeros((2, 4)), np.zeros((2, 4)), np.array([0]), chunk_cells=0)


def test_top_variable():
    X = np.array([[0, 5, 1, 0, 3], [0, 0, 1, 9, 0], [0, 5, 1, 0, 3]])
    assert list(top_variable(X, 2)) == [1, 3]
    assert list(top_variable(sp.csr_matrix(X), 2)) == [1, 3]
    # genes 1 and 4 share their zeros but not their values: the variance of log1p decides
    v = np.log1p(X).var(axis=0)
    assert list(top_variable(X, 3)) == sorted(np.argsort(-v, kind="stable")[:3])
    # exact tie between genes 1 and 2: the lower index wins
    T = np.array([[0, 4, 4, 0], [1, 0, 0, 1]])
    assert list(top_variable(T, 1)) == [1]
    assert list(top_variable(T, 10)) == [0, 1, 2, 3]
    rng = np.random.default_rng(6)
    Y = _counts(rng, 300, 80)
    v = np.log1p(Y).var(axis=0)
    assert list(top_variable(sp.csr_matrix(Y), 15)) == sorted(np.argsort(-v, kind="stable")[:15])


def test_large_sparse_stays_sparse():
    n_cells, n_genes = 50_000, 2_000
    rng = np.random.default_rng(7)
    real = sp.random(n_cells, n_genes, density=0.01, format="csr", random_state=rng, dtype=np.float64)
    real.data = np.ceil(real.data * 5)
    rep = real.copy()
    rep.data = rep.data + 1
    top = np.arange(0, n_genes, 10)
    tracemalloc.start()
    try:
        summary, genes = posterior_checks(real, rep, top, chunk_cells=4096)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # the whole matrix dense would be 800 MB; chunks of it ~65 MB
    assert peak < 150e6
    assert summary["n_cells"] == n_cells and len(genes) == n_genes
    assert summary["library_log_ratio"] > 0
    np.testing.assert_allclose(genes["real_zero_fraction"], genes["rep_zero_fraction"])
