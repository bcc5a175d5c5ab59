"""Expression values derived from raw counts: CP10k and log1p(CP10k), dense or kept sparse.

Derived on demand, never written over counts. The one definition that data (highly variable genes), models (the
Gaussian baseline's ``log1p_cp10k`` input) and evaluation (the reconstruction metric's observed values, the
synthetic-cell classifiers' input) share. numpy/scipy only.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def cp10k(counts) -> np.ndarray:
    """Counts scaled to 10,000 per cell (dense float64); cells with no counts stay zero."""
    X = counts.toarray() if sp.issparse(counts) else np.asarray(counts)
    X = X.astype(np.float64, copy=False)
    totals = X.sum(axis=1, keepdims=True)
    return X * np.divide(1e4, totals, out=np.zeros_like(totals, dtype=np.float64), where=totals > 0)


def log1p_cp10k(counts) -> np.ndarray:
    """log1p of counts scaled to 10,000 per cell (dense float64); cells with no counts stay zero."""
    return np.log1p(cp10k(counts))


def sparse_log1p_cp10k(counts, dtype=np.float64) -> sp.csr_matrix:
    """``log1p_cp10k`` kept sparse (log1p(0) = 0): the same values, the counts' non-zeros only."""
    X = sp.csr_matrix(counts, dtype=np.float64, copy=True)
    totals = np.asarray(X.sum(axis=1)).ravel()
    scale = np.divide(1e4, totals, out=np.zeros_like(totals), where=totals > 0)
    X.data = np.log1p(X.data * np.repeat(scale, np.diff(X.indptr)))
    return X.astype(dtype, copy=False)
