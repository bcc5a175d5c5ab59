"""Metrics on held-out cells: reconstruction accuracy as the datamix study defines it, per-gene residuals
and zero calibration, and their summaries (numpy/pandas, scanpy for the study's gene selection; the model's
outputs come from a trained model, scmix.trained).

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
import warnings

import numpy as np
import pandas as pd
import scipy.sparse as sp

from scmix.errors import ScmixInputError
from scmix.genes import positions

log = logging.getLogger("scmix.evaluate")


def log1p_cp10k(counts) -> np.ndarray:
    """log1p of counts scaled to 10,000 per cell (dense float64); cells with no counts stay zero."""
    return np.log1p(cp10k(counts))


def top_variable_genes(logx: np.ndarray, n_top: int) -> np.ndarray:
    """Indices of the ``n_top`` genes with the highest variance across cells (ties by gene order)."""
    var = logx.var(axis=0)
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
    then log1p, on the counts as float32 (what scanpy makes of integer counts)."""
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


def reconstruction_accuracy(counts, rho: np.ndarray, n_top_genes: int = 1000,
                            genes: str = RECONSTRUCTION_GENES[0]) -> pd.DataFrame:  # fmt: skip
    """Per-cell Pearson r and r2 between observed log1p(CP10k) and log1p(1e4 * rho), over the genes ``genes``
    selects (``RECONSTRUCTION_GENES``; see the module docstring). Only those genes are densified."""
    if genes == "seurat":
        logx = study_log1p_cp10k(counts)
        idx = study_genes(logx, n_top_genes)
        obs = logx.X[:, idx].toarray().astype(np.float64)
    elif genes == "variance":
        full = log1p_cp10k(counts)
        idx = top_variable_genes(full, n_top_genes)
        obs = full[:, idx]
    else:
        raise ValueError(f"unknown reconstruction_genes {genes!r} ({', '.join(RECONSTRUCTION_GENES)})")
    rec = np.log1p(1e4 * np.asarray(rho, dtype=np.float64)[:, idx])
    r = pearson_per_cell(obs, rec)
    return pd.DataFrame({"pearson": r, "r2": r**2})


def cp10k(counts) -> np.ndarray:
    """Counts scaled to 10,000 per cell (dense float64); cells with no counts stay zero."""
    X = counts.toarray() if sp.issparse(counts) else np.asarray(counts)
    X = X.astype(np.float64, copy=False)
    totals = X.sum(axis=1, keepdims=True)
    return X * np.divide(1e4, totals, out=np.zeros_like(totals, dtype=np.float64), where=totals > 0)


def gene_fit(counts, rho: np.ndarray, expected_zero: np.ndarray | None = None) -> pd.DataFrame:
    """Per gene: the residual observed - expected on the CP10k scale (expected = 1e4 * rho), its mean and
    variance over cells, the variance of the observed CP10k and the share of it the model explains
    (1 - var(residual) / var(observed); NaN for a gene that does not vary); the observed fraction of zero
    counts and, given ``expected_zero`` (the model's mean P(x = 0) per gene), the expected one."""
    obs = cp10k(counts)
    resid = obs - 1e4 * np.asarray(rho, dtype=np.float64)
    var_obs, var_resid = obs.var(axis=0), resid.var(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        explained = np.where(var_obs > 0, 1.0 - var_resid / var_obs, np.nan)
    nonzero = np.asarray((sp.csr_matrix(counts) != 0).sum(axis=0)).ravel()
    n_genes = obs.shape[1]
    return pd.DataFrame({
        "mean_cp10k": obs.mean(axis=0),
        "var_cp10k": var_obs,
        "mean_residual": resid.mean(axis=0),
        "var_residual": var_resid,
        "explained_variance": explained,
        "observed_zero_fraction": 1.0 - nonzero / max(obs.shape[0], 1),
        "expected_zero_fraction": np.full(n_genes, np.nan) if expected_zero is None else expected_zero,
    })  # fmt: skip


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


def likelihood_summary(per_cell: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Mean reconstruction NLL, ELBO and importance-sampled log p(x) per cell over each ``keys`` group."""
    cols = ["recon_nll", "elbo", "marginal_ll"]
    out = per_cell.groupby(keys, observed=True, sort=True)[cols].mean().reset_index()
    out.insert(len(keys), "n_cells", per_cell.groupby(keys, observed=True, sort=True).size().to_numpy())
    return out


def reindex_to_genes(adata, genes, *, min_overlap: float, eval_set: str, keys=None, kind: str = "dataset"):
    """Counts of ``adata`` in the order of ``genes``; genes the eval set lacks are zero-padded.

    ``keys`` are the eval set's own gene keys to match ``genes`` against (default its var_names; the
    Ensembl IDs when the model's genes were matched on IDs). Warns when padding happens and fails below
    ``min_overlap`` (fraction of model genes found).
    """
    genes = pd.Index(genes)
    pos = positions(adata.var_names if keys is None else keys, genes)
    found = pos >= 0
    overlap = found.mean()
    if overlap < min_overlap:
        raise ScmixInputError(
            f"only {found.sum()} of the model's {len(genes)} genes ({overlap:.1%}) are in the eval set; "
            f"the minimum is {min_overlap:.0%} (evaluation.min_gene_overlap)",
            **{kind: eval_set},
        )
    if not found.all():
        warnings.warn(
            f"eval set '{eval_set}': {int((~found).sum())} of {len(genes)} model genes are missing and are zero-padded",
            stacklevel=2,
        )
    X = sp.csr_matrix(adata.layers["counts"] if "counts" in adata.layers else adata.X)
    cols = sp.csr_matrix((np.ones(found.sum()), (pos[found], np.flatnonzero(found))), shape=(adata.n_vars, len(genes)))
    return (X @ cols).tocsr(), float(overlap)


def summarise(per_cell: pd.DataFrame, keys: list[str], by: str = "cell_type") -> pd.DataFrame:
    """One row per ``keys`` x ``by`` value plus an ``all`` row: n_cells, pearson mean/median, r2 mean."""

    def agg(df):
        return pd.Series(
            {
                "n_cells": int(df["pearson"].notna().sum()),
                "pearson_mean": df["pearson"].mean(),
                "pearson_median": df["pearson"].median(),
                "r2_mean": df["r2"].mean(),
            }
        )

    per_type = per_cell.groupby(keys + [by], observed=True, sort=True)[["pearson", "r2"]].apply(agg).reset_index()
    overall = per_cell.groupby(keys, observed=True, sort=True)[["pearson", "r2"]].apply(agg).reset_index()
    overall[by] = "all"
    out = pd.concat([per_type, overall[per_type.columns]], ignore_index=True)
    out["n_cells"] = out["n_cells"].astype(int)
    return out
