"""Input transforms of the Gaussian baseline, and the way back to per-cell proportions.

* ``log1p_cp10k``: log1p of counts scaled to 10,000 per cell;
* ``size_factor``: log1p of counts divided by the cell's size factor (total / median total);
* ``pearson_residuals``: analytic Pearson residuals of an NB null with theta 100
  (``scanpy.experimental.pp.normalize_pearson_residuals``, Lause et al. 2021), clipped at sqrt(n_cells).

``to_proportions`` maps a model's output in one of these spaces back to estimated proportions per cell
(rows sum to one), so a Gaussian model is scored by the same reconstruction metric as a count model.
"""

from __future__ import annotations

import anndata as ad
import numpy as np
import scipy.sparse as sp

from scmix.models.modelspec import TRANSFORMS

PEARSON_THETA = 100.0


def _dense(counts) -> np.ndarray:
    return (counts.toarray() if sp.issparse(counts) else np.asarray(counts)).astype(np.float64)


def _totals(X: np.ndarray) -> np.ndarray:
    return X.sum(axis=1, keepdims=True)


def _size_factors(totals: np.ndarray) -> np.ndarray:
    positive = totals[totals > 0]
    median = np.median(positive) if positive.size else 1.0
    return np.where(totals > 0, totals / median, 1.0)


def _pearson_mu(X: np.ndarray) -> np.ndarray:
    return _totals(X) @ X.sum(axis=0, keepdims=True) / max(X.sum(), 1.0)


def transform(counts, name: str) -> np.ndarray:
    """The transformed input (cells x genes, float32, dense)."""
    X = _dense(counts)
    if name == "log1p_cp10k":
        from scmix.data.expression import log1p_cp10k  # the metric's own input transform, one definition

        return log1p_cp10k(X).astype(np.float32)
    if name == "size_factor":
        return np.log1p(X / _size_factors(_totals(X))).astype(np.float32)
    if name == "pearson_residuals":
        import scanpy as sc

        absent = X.sum(axis=0) == 0  # the residual of a gene without counts is 0/0; it carries no signal
        with np.errstate(invalid="ignore", divide="ignore"):
            out = sc.experimental.pp.normalize_pearson_residuals(ad.AnnData(X), theta=PEARSON_THETA, inplace=False)
        residuals = np.asarray(out["X"], dtype=np.float32)
        residuals[:, absent] = 0.0
        return residuals
    raise ValueError(f"unknown transform '{name}'; known: {list(TRANSFORMS)}")


def to_proportions(values: np.ndarray, name: str, counts, gene_totals: np.ndarray | None = None) -> np.ndarray:
    """Per-cell proportions implied by ``values`` in transform space, given the cells' counts (for totals,
    size factors and the Pearson null); negative implied counts are set to zero. ``gene_totals``: the per-gene
    count totals of the whole set the cells are a chunk of (the Pearson null's; default the cells' own)."""
    values = np.asarray(values, dtype=np.float64)
    if name in ("log1p_cp10k", "size_factor"):
        implied = np.expm1(values)  # proportional to counts within a cell in both spaces
    elif name == "pearson_residuals":
        X = _dense(counts)
        if gene_totals is None:
            mu = _pearson_mu(X)
        else:
            gene_totals = np.asarray(gene_totals, dtype=np.float64).reshape(1, -1)
            mu = _totals(X) @ gene_totals / max(gene_totals.sum(), 1.0)
        implied = mu + values * np.sqrt(mu + mu**2 / PEARSON_THETA)
    else:
        raise ValueError(f"unknown transform '{name}'; known: {list(TRANSFORMS)}")
    implied = np.clip(implied, 0.0, None)
    totals = implied.sum(axis=1, keepdims=True)
    return np.divide(implied, totals, out=np.full_like(implied, 1.0 / implied.shape[1]), where=totals > 0)
