"""Metrics on held-out cells: reconstruction accuracy as the datamix study defines it, per-gene residuals
and zero calibration, and their summaries (numpy/pandas, scanpy for the study's gene selection; the model's
outputs come from a trained model, scmix.models.trained).

Reconstruction accuracy, per cell: Pearson r between log1p(CP10k) of the observed counts and
log1p(1e4 * rho) of the model's normalised expression, over ``n_top_genes`` genes of the eval set (already
reindexed to the model's genes, missing ones zero). r2 is the square of that Pearson r. The genes
(``evaluation.reconstruction_genes``):

- ``seurat`` (default), the datamix study's (microsoft/scFM-datamix, ``Evaluations/ldvae/LDVAE_eval_class.py``,
  ``get_reconstruction_r2``): a ``log1p_cp10k`` layer made by ``scanpy.pp.normalize_total(target_sum=1e4)`` and
  ``scanpy.pp.log1p`` (float32, as scanpy makes of integer counts), then
  ``scanpy.pp.highly_variable_genes(n_top_genes=N, layer="log1p_cp10k")`` with scanpy's default flavor
  ``seurat`` (dispersion normalised within bins of mean expression); the observed values are that layer's;
- ``variance``: the genes of highest variance of log1p(CP10k) (float64) across the eval set's cells.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import scipy.sparse as sp

from scmix.data.expression import cp10k, sparse_log1p_cp10k
from scmix.settings import HOLDOUT_COLUMN

log = logging.getLogger("scmix.evaluation.metrics")


def column_variance(X) -> np.ndarray:
    """Per-column variance over rows (population, as ``np.var``) of a dense or sparse matrix; a sparse one
    stays sparse (two passes over its non-zeros: the mean, then squared deviations plus the zeros' share)."""
    if not sp.issparse(X):
        return np.asarray(X).var(axis=0)
    X = sp.csc_matrix(X)
    n = X.shape[0]
    mean = np.asarray(X.sum(axis=0), dtype=np.float64).ravel() / max(n, 1)
    nnz = np.diff(X.indptr)
    col = np.repeat(np.arange(X.shape[1]), nnz)
    dev = X.data.astype(np.float64) - mean[col]
    sq = np.bincount(col, weights=dev * dev, minlength=X.shape[1])
    return (sq + (n - nnz) * mean**2) / max(n, 1)


def top_variable_genes(logx, n_top: int) -> np.ndarray:
    """Indices of the ``n_top`` genes with the highest variance across cells (ties by gene order); ``logx``
    dense or sparse."""
    var = column_variance(logx)
    n_top = min(n_top, logx.shape[1])
    return np.sort(np.argsort(-var, kind="stable")[:n_top])


def pearson_per_cell(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise Pearson correlation; NaN where a row has zero variance."""
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    num = (a * b).sum(axis=1)
    den = np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / den, np.nan)


# how the reconstruction metric picks its genes (evaluation.reconstruction_genes; the first is the default)
RECONSTRUCTION_GENES = ("seurat", "variance")


def study_log1p_cp10k(counts):
    """The datamix study's ``log1p_cp10k`` (an AnnData, sparse float32 ``X``): scanpy's normalize_total to 10,000
    then log1p, on the counts as float32 (what scanpy makes of integer counts). Per cell, so a chunk of cells
    gets the values it has in the whole set."""
    import anndata as ad
    import scanpy as sc

    adata = ad.AnnData(sp.csr_matrix(counts, dtype=np.float32))
    sc.pp.normalize_total(adata, target_sum=1e4)
    sc.pp.log1p(adata)
    return adata


def study_genes(logx, n_top_genes: int) -> np.ndarray:
    """Sorted indices of the genes ``scanpy.pp.highly_variable_genes(n_top_genes=...)`` (flavor ``seurat``, the
    study's call) selects on the log1p_cp10k AnnData ``logx``; every gene when there are no more than that."""
    import scanpy as sc

    if n_top_genes >= logx.n_vars:
        return np.arange(logx.n_vars)
    hvg = sc.pp.highly_variable_genes(logx, n_top_genes=n_top_genes, flavor="seurat", inplace=False)
    return np.flatnonzero(hvg["highly_variable"].to_numpy())


def reconstruction_genes(counts, n_top_genes: int = 1000, genes: str = RECONSTRUCTION_GENES[0]) -> np.ndarray:
    """The genes (sorted indices) the reconstruction r is computed over, chosen on all cells of ``counts``
    (sparse throughout; see the module docstring)."""
    if genes == "seurat":
        return study_genes(study_log1p_cp10k(counts), n_top_genes)
    if genes == "variance":
        return top_variable_genes(sparse_log1p_cp10k(counts), n_top_genes)
    raise ValueError(f"unknown reconstruction_genes {genes!r} ({', '.join(RECONSTRUCTION_GENES)})")


def observed_log(counts, idx: np.ndarray, genes: str = RECONSTRUCTION_GENES[0]) -> np.ndarray:
    """The observed values the reconstruction r compares against (cells x ``idx``, dense float64): the study's
    float32 log1p_cp10k (``seurat``) or float64 log1p(CP10k) (``variance``). Per cell: a chunk's rows equal
    the whole set's."""
    logx = study_log1p_cp10k(counts).X if genes == "seurat" else sparse_log1p_cp10k(counts)
    return sp.csr_matrix(logx)[:, idx].toarray().astype(np.float64)


def reconstruction_scores(observed: np.ndarray, rho: np.ndarray) -> pd.DataFrame:
    """Per cell: Pearson r (and r2) between ``observed`` (``observed_log``) and log1p(1e4 * ``rho``) on the
    same genes."""
    r = pearson_per_cell(observed, np.log1p(1e4 * np.asarray(rho, dtype=np.float64)))
    return pd.DataFrame({"pearson": r, "r2": r**2})


def reconstruction_accuracy(counts, rho: np.ndarray, n_top_genes: int = 1000,
                            genes: str = RECONSTRUCTION_GENES[0]) -> pd.DataFrame:  # fmt: skip
    """Per-cell Pearson r and r2 between observed log1p(CP10k) and log1p(1e4 * rho), over the genes ``genes``
    selects (``RECONSTRUCTION_GENES``; see the module docstring), for a whole set at once (``evaluate_cells``
    does it a chunk at a time). Only those genes are densified."""
    idx = reconstruction_genes(counts, n_top_genes, genes)
    return reconstruction_scores(observed_log(counts, idx, genes), np.asarray(rho)[:, idx])


class _Moments:
    """Per-column count, mean and sum of squared deviations, merged chunk by chunk (Chan et al.'s update),
    so the variance over all rows never needs them at once."""

    def __init__(self, n_cols: int):
        self.n, self.mean, self.m2 = 0, np.zeros(n_cols), np.zeros(n_cols)

    def add(self, X: np.ndarray) -> None:
        n_b = X.shape[0]
        if not n_b:
            return
        mean_b = X.mean(axis=0)
        m2_b = ((X - mean_b) ** 2).sum(axis=0)
        n = self.n + n_b
        delta = mean_b - self.mean
        self.mean = self.mean + delta * (n_b / n)
        self.m2 = self.m2 + m2_b + delta**2 * (self.n * n_b / n)
        self.n = n

    @property
    def var(self) -> np.ndarray:
        return self.m2 / max(self.n, 1)


class GeneFit:
    """``gene_fit`` accumulated over chunks of cells: ``add(counts, rho)`` per chunk, then ``table()``."""

    def __init__(self, n_genes: int):
        self.obs, self.resid = _Moments(n_genes), _Moments(n_genes)
        self.nonzero = np.zeros(n_genes)

    def add(self, counts, rho: np.ndarray) -> GeneFit:
        obs = cp10k(counts)
        self.obs.add(obs)
        self.resid.add(obs - 1e4 * np.asarray(rho, dtype=np.float64))
        self.nonzero += np.asarray((sp.csr_matrix(counts) != 0).sum(axis=0)).ravel()
        return self

    def table(self, expected_zero: np.ndarray | None = None) -> pd.DataFrame:
        var_obs, var_resid, n_genes = self.obs.var, self.resid.var, len(self.nonzero)
        with np.errstate(invalid="ignore", divide="ignore"):
            explained = np.where(var_obs > 0, 1.0 - var_resid / var_obs, np.nan)
        return pd.DataFrame({
            "mean_cp10k": self.obs.mean,
            "var_cp10k": var_obs,
            "mean_residual": self.resid.mean,
            "var_residual": var_resid,
            "explained_variance": explained,
            "observed_zero_fraction": 1.0 - self.nonzero / max(self.obs.n, 1),
            "expected_zero_fraction": np.full(n_genes, np.nan) if expected_zero is None else expected_zero,
        })  # fmt: skip


def gene_fit(counts, rho: np.ndarray, expected_zero: np.ndarray | None = None) -> pd.DataFrame:
    """Per gene: the residual observed - expected on the CP10k scale (expected = 1e4 * rho), its mean and
    variance over cells, the variance of the observed CP10k and the share of it the model explains
    (1 - var(residual) / var(observed); NaN for a gene that does not vary); the observed fraction of zero
    counts and, given ``expected_zero`` (the model's mean P(x = 0) per gene), the expected one. All cells at
    once; ``GeneFit`` is the same a chunk at a time."""
    return GeneFit(counts.shape[1]).add(counts, rho).table(expected_zero)


def evaluate_cells(model, cells, *, n_top_genes: int = 1000, genes: str = RECONSTRUCTION_GENES[0],
                   chunk_cells: int = 2048, sample: bool = False, seed: int = 0):  # fmt: skip
    """Reconstruction accuracy per cell and the per-gene fit of ``model`` (a ``scmix.models.trained.TrainedModel``) on
    ``cells`` (its ``prepare``d ``Cells``), ``chunk_cells`` cells at a time: the genes are chosen on the sparse
    counts of all cells, then each chunk's expression (chunk x genes) is scored and added to the per-gene
    moments, so memory is the cells' sparse counts plus O(chunk x genes). Returns (per-cell table, ``GeneFit``),
    equal to ``reconstruction_accuracy`` and ``gene_fit`` on the whole set (to float rounding of the moments)."""
    counts = cells.counts
    idx = reconstruction_genes(counts, n_top_genes, genes)
    fit, parts, done = GeneFit(counts.shape[1]), [], 0
    n_chunks = -(-counts.shape[0] // chunk_cells)
    for i, (start, rho) in enumerate(model.expression_chunks(cells, chunk_cells=chunk_cells, sample=sample,
                                                             seed=seed)):  # fmt: skip
        part = counts[start : start + len(rho)]
        parts.append(reconstruction_scores(observed_log(part, idx, genes), rho[:, idx]))
        fit.add(part, rho)
        done += len(rho)
        if n_chunks > 1 and ((i + 1) % max(n_chunks // 10, 1) == 0 or i + 1 == n_chunks):
            log.info("reconstruction and gene fit: %d of %d cells (chunk %d of %d)", done, counts.shape[0], i + 1,
                     n_chunks)  # fmt: skip
    per_cell = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame({"pearson": [], "r2": []})
    return per_cell, fit


def gene_fit_summary(genes: pd.DataFrame, keys: dict) -> pd.DataFrame:
    """One row: median explained variance over genes that vary, and the zero calibration: the mean and mean
    absolute (observed - expected) zero fraction over genes (positive: more zeros than the model expects)."""
    gap = genes["observed_zero_fraction"] - genes["expected_zero_fraction"]
    return pd.DataFrame([{
        **keys,
        "n_genes": len(genes),
        "median_explained_variance": genes["explained_variance"].median(),
        "mean_zero_excess": gap.mean(),
        "mean_abs_zero_error": gap.abs().mean(),
    }])  # fmt: skip


def _holdout(per_cell: pd.DataFrame) -> pd.Series:
    """Per cell, whether ``split.holdout_cell_types`` sent it to the eval set (False where the table does not say)."""
    if HOLDOUT_COLUMN not in per_cell:
        return pd.Series(False, index=per_cell.index)
    return per_cell[HOLDOUT_COLUMN].astype(bool)


def likelihood_summary(per_cell: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Mean reconstruction NLL, ELBO and importance-sampled log p(x) per cell over each ``keys`` group, with its
    cells and how many of them ``split.holdout_cell_types`` sent to the eval set (``n_holdout_cell_types``)."""
    cols = ["recon_nll", "elbo", "marginal_ll"]
    groups = per_cell.groupby(keys, observed=True, sort=True)
    out = groups[cols].mean().reset_index()
    out.insert(len(keys), "n_cells", groups.size().to_numpy())
    out["n_holdout_cell_types"] = _holdout(per_cell).groupby([per_cell[k] for k in keys], observed=True,
                                                             sort=True).sum().to_numpy().astype(int)  # fmt: skip
    return out


def summarise(per_cell: pd.DataFrame, keys: list[str], by: str = "cell_type") -> pd.DataFrame:
    """One row per ``keys`` x ``by`` value plus an ``all`` row: n_cells, pearson mean/median, r2 mean, and
    ``n_holdout_cell_types``, how many of the row's cells ``split.holdout_cell_types`` sent to the eval set (cell
    types kept out of the dataset's training cells: in an ``all`` row, the unseen part of the mean)."""

    def agg(df):
        scored = df["pearson"].notna()
        return pd.Series(
            {
                "n_cells": int(scored.sum()),
                "pearson_mean": df["pearson"].mean(),
                "pearson_median": df["pearson"].median(),
                "r2_mean": df["r2"].mean(),
                "n_holdout_cell_types": int((scored & df["_holdout"]).sum()),
            }
        )

    cells = per_cell.assign(_holdout=_holdout(per_cell))
    cols = ["pearson", "r2", "_holdout"]
    per_type = cells.groupby(keys + [by], observed=True, sort=True)[cols].apply(agg).reset_index()
    overall = cells.groupby(keys, observed=True, sort=True)[cols].apply(agg).reset_index()
    overall[by] = "all"
    out = pd.concat([per_type, overall[per_type.columns]], ignore_index=True)
    out[["n_cells", "n_holdout_cell_types"]] = out[["n_cells", "n_holdout_cell_types"]].astype(int)
    return out
