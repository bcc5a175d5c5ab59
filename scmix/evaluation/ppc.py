"""Posterior-predictive checks (PPCs): statistics that compare real held-out cells with replicated cells (counts
a model generated for the same cells), accumulated a chunk of cells at a time (numpy/scipy/pandas), so memory
follows the chunk: a sparse chunk stays sparse except its ``top_genes`` columns, a dense chunk is used as given.

Per gene, for the real and the replicated counts separately (``CheckAccumulator.genes``): the mean over cells,
the population variance (ddof=0), the coefficient of variation sd / mean (NaN where the mean is 0) and the
fraction of cells with a zero count.

Summary (``CheckAccumulator.summary``), real against replicated:

- ``n_cells``, ``n_genes``, ``n_top_genes`` (ints);
- ``{stat}_corr`` for stat in mean, var, cv, zero_fraction: Pearson r across genes between the real and the
  replicated per-gene values, on log1p of the values for mean and var and on the values themselves for cv and
  zero_fraction; a gene with NaN on either side is left out (only cv has NaNs: genes with mean 0); NaN where
  fewer than 3 genes are left or either side is constant across them;
- ``{stat}_mae``: the mean absolute difference across the same genes, also on the log1p scale for mean and var
  (NaN where no gene is left);
- ``library_ks``: the two-sample Kolmogorov-Smirnov statistic (``scipy.stats.ks_2samp``) between the real and
  the replicated library sizes (counts per cell); ``library_log_ratio``: log(median replicated library size /
  median real one), +-inf where one median is 0 and NaN where both are;
- ``corr_distance``: ||C_real - C_rep||_F / n_top, with C the Pearson correlation matrix of log1p(counts) among
  the ``top_genes`` (diagonal included, so n_top^2 entries): the root mean square of the entrywise differences,
  between 0 and 2 whatever n_top. A gene constant over the cells on one side gets correlation 0 with the other
  genes and 1 with itself on that side. NaN without top genes.

Numerics: per column, plain float64 sums of the values and of their squares (and, for the top genes, of the
cross-products of log1p) over all cells, with moments from them at the end (var = E[x^2] - E[x]^2, clipped at
0). Integer counts sum exactly in float64 up to 2^53; the subtraction loses about log10(1 + mean^2 / var) of the
~16 digits, a few at most for counts, whose variance is not far below their mean, and for log1p values, which
are below ~15. A column whose minimum equals its maximum (also tracked) gets variance exactly 0, so a constant
gene is told from one that varies by rounding alone.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.stats import ks_2samp

from scmix.errors import ScmixInputError
from scmix.evaluation.metrics import top_variable_genes

GENE_STATS = ("mean", "var", "cv", "zero_fraction")
# stats whose per-gene values are compared on the log1p scale (the others as they are)
LOG_STATS = ("mean", "var")
# the keys of CheckAccumulator.summary, in order
CHECKS = ("n_cells", "n_genes", "n_top_genes", *(f"{stat}_{kind}" for stat in GENE_STATS for kind in ("corr", "mae")),
          "library_ks", "library_log_ratio", "corr_distance")  # fmt: skip


def _chunk(X, name: str):
    """A chunk as a canonical float64 CSR matrix (sparse input) or a 2-d float64 array (dense input)."""
    if sp.issparse(X):
        X = sp.csr_matrix(X, dtype=np.float64)
        if not X.has_canonical_format:
            X = X.copy()
            X.sum_duplicates()
        return X
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ScmixInputError(f"{name}: expected a cells x genes matrix, got {X.ndim} dimension(s)")
    return X


class _Columns:
    """Per column over all rows added: the row count, float64 sums of the values and of their squares, the
    number of non-zero values, and the minimum and maximum (a column is constant iff they are equal)."""

    def __init__(self, n_cols: int):
        self.n = 0
        self.sum, self.sumsq, self.nonzero = np.zeros(n_cols), np.zeros(n_cols), np.zeros(n_cols)
        self.min, self.max = np.full(n_cols, np.inf), np.full(n_cols, -np.inf)

    def add(self, X) -> None:
        """``X``: a float64 CSR matrix (canonical) or array, rows x the columns."""
        n_rows, n_cols = X.shape
        if not n_rows:
            return
        if sp.issparse(X):
            data, cols = X.data, X.indices
            self.sum += np.bincount(cols, weights=data, minlength=n_cols)
            self.sumsq += np.bincount(cols, weights=data * data, minlength=n_cols)
            self.nonzero += np.bincount(cols[data != 0], minlength=n_cols)
            lo, hi = X.min(axis=0), X.max(axis=0)
            lo, hi = (np.asarray(v.toarray() if sp.issparse(v) else v, dtype=np.float64).ravel() for v in (lo, hi))
        else:
            self.sum += X.sum(axis=0)
            self.sumsq += (X * X).sum(axis=0)
            self.nonzero += np.count_nonzero(X, axis=0)
            lo, hi = X.min(axis=0), X.max(axis=0)
        np.minimum(self.min, lo, out=self.min)
        np.maximum(self.max, hi, out=self.max)
        self.n += n_rows

    @property
    def mean(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.sum / self.n

    @property
    def var(self) -> np.ndarray:
        """Population variance (ddof=0); exactly 0 for a constant column, NaN without rows."""
        mean = self.mean
        with np.errstate(invalid="ignore", divide="ignore"):
            var = np.maximum(self.sumsq / self.n - mean * mean, 0.0)
        return np.where(self.min == self.max, 0.0, var) if self.n else var

    @property
    def zero_fraction(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return 1.0 - self.nonzero / self.n


class _Side:
    """What ``CheckAccumulator`` keeps for one side (real or replicated)."""

    def __init__(self, n_genes: int, n_top: int):
        self.genes = _Columns(n_genes)
        self.top = _Columns(n_top)
        self.cross = np.zeros((n_top, n_top))  # sum over cells of log1p(x_i) * log1p(x_j), top genes
        self.libraries: list[np.ndarray] = []

    def add(self, X, top_genes: np.ndarray) -> None:
        self.genes.add(X)
        self.libraries.append(np.asarray(X.sum(axis=1), dtype=np.float64).ravel())
        logx = np.log1p(X[:, top_genes].toarray() if sp.issparse(X) else X[:, top_genes])
        self.top.add(logx)
        self.cross += logx.T @ logx

    def correlation(self) -> np.ndarray:
        """Pearson correlation matrix of log1p(counts) among the top genes; a constant gene: 0 with the others,
        1 with itself."""
        top, n = self.top, self.top.n
        mean, var = top.mean, top.var
        varies = var > 0
        sd = np.sqrt(np.where(varies, var, 1.0))
        with np.errstate(invalid="ignore", divide="ignore"):
            cov = self.cross / n - np.outer(mean, mean)
        corr = np.clip(cov / np.outer(sd, sd), -1.0, 1.0)
        corr[~varies, :] = 0.0
        corr[:, ~varies] = 0.0
        np.fill_diagonal(corr, 1.0)
        return corr

    @property
    def library_sizes(self) -> np.ndarray:
        return np.concatenate(self.libraries) if self.libraries else np.zeros(0)


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson r of two vectors; NaN under 3 values or where either is constant."""
    if len(a) < 3 or a.min() == a.max() or b.min() == b.max():
        return float("nan")
    a, b = a - a.mean(), b - b.mean()
    return float(np.clip((a @ b) / np.sqrt((a @ a) * (b @ b)), -1.0, 1.0))


class CheckAccumulator:
    """The PPC statistics of the module docstring, accumulated chunk by chunk: ``add(real, replicated)`` per
    chunk of cells, then ``genes()`` and ``summary()``. ``top_genes``: the column indices of the genes whose
    correlation structure is compared (chosen outside, e.g. ``top_variable``). Memory: O(genes + top_genes^2)
    plus the library sizes (one float per cell and side)."""

    def __init__(self, n_genes: int, top_genes: np.ndarray):
        top = np.asarray(top_genes)
        if top.ndim != 1 or (top.size and top.dtype.kind not in "iu"):
            raise ScmixInputError("top_genes: expected a 1-d array of integer gene indices")
        top = top.astype(np.intp)
        if top.size and (top.min() < 0 or top.max() >= n_genes):
            raise ScmixInputError(f"top_genes: indices must lie in [0, {n_genes}), got {top.min()}..{top.max()}")
        self.n_genes, self.top_genes = int(n_genes), top
        self.real, self.rep = _Side(self.n_genes, len(top)), _Side(self.n_genes, len(top))

    @property
    def n_cells(self) -> int:
        return self.real.genes.n

    def add(self, real, replicated) -> CheckAccumulator:
        """Add a chunk: ``real`` and ``replicated`` are the same cells (rows) x all genes, raw counts, each a
        scipy.sparse matrix or a dense array of any numeric dtype."""
        real, replicated = _chunk(real, "real"), _chunk(replicated, "replicated")
        if real.shape != replicated.shape or real.shape[1] != self.n_genes:
            raise ScmixInputError(f"real {real.shape} and replicated {replicated.shape} must both be cells x "
                                  f"{self.n_genes} genes, the same cells")  # fmt: skip
        self.real.add(real, self.top_genes)
        self.rep.add(replicated, self.top_genes)
        return self

    def genes(self) -> pd.DataFrame:
        """One row per gene: real_/rep_ mean, var (ddof=0), cv (sd / mean, NaN where the mean is 0) and
        zero_fraction."""
        out = {}
        for stat in GENE_STATS:
            for side, acc in (("real", self.real.genes), ("rep", self.rep.genes)):
                if stat == "cv":
                    mean = acc.mean
                    value = np.full(self.n_genes, np.nan)
                    np.divide(np.sqrt(acc.var), mean, out=value, where=(mean != 0) & ~np.isnan(mean))
                else:
                    value = getattr(acc, stat)
                out[f"{side}_{stat}"] = value
        cols = [f"{side}_{stat}" for stat in GENE_STATS for side in ("real", "rep")]
        return pd.DataFrame(out)[cols]

    def summary(self) -> dict[str, float]:
        """The summary statistics of the module docstring (keys: n_cells, n_genes, n_top_genes, {stat}_corr and
        {stat}_mae for mean, var, cv, zero_fraction, library_ks, library_log_ratio, corr_distance)."""
        n_top = len(self.top_genes)
        out: dict[str, float] = {"n_cells": self.n_cells, "n_genes": self.n_genes, "n_top_genes": n_top}
        table = self.genes()
        for stat in GENE_STATS:
            a, b = table[f"real_{stat}"].to_numpy(), table[f"rep_{stat}"].to_numpy()
            keep = ~(np.isnan(a) | np.isnan(b))
            a, b = a[keep], b[keep]
            if stat in LOG_STATS:
                a, b = np.log1p(a), np.log1p(b)
            out[f"{stat}_corr"] = _pearson(a, b)
            out[f"{stat}_mae"] = float(np.abs(a - b).mean()) if len(a) else float("nan")
        real_lib, rep_lib = self.real.library_sizes, self.rep.library_sizes
        if len(real_lib):
            out["library_ks"] = float(ks_2samp(real_lib, rep_lib).statistic)
            with np.errstate(invalid="ignore", divide="ignore"):
                out["library_log_ratio"] = float(np.log(np.median(rep_lib) / np.median(real_lib)))
        else:
            out["library_ks"] = out["library_log_ratio"] = float("nan")
        if n_top and self.n_cells:
            diff = self.real.correlation() - self.rep.correlation()
            out["corr_distance"] = float(np.linalg.norm(diff) / n_top)
        else:
            out["corr_distance"] = float("nan")
        return out


def _rows(X):
    """``X`` ready for row slicing: CSR if sparse (a sparse copy at most, never dense), else as given."""
    return X if not sp.issparse(X) or X.format == "csr" else sp.csr_matrix(X)


def _chunk_size(chunk_cells: int) -> int:
    if int(chunk_cells) < 1:
        raise ScmixInputError(f"chunk_cells must be at least 1, got {chunk_cells}")
    return int(chunk_cells)


def posterior_checks(real, replicated, top_genes: np.ndarray,
                     chunk_cells: int = 2048) -> tuple[dict[str, float], pd.DataFrame]:  # fmt: skip
    """``CheckAccumulator.summary()`` and ``.genes()`` of ``real`` and ``replicated`` (the same cells x genes,
    sparse or dense counts), fed ``chunk_cells`` cells at a time."""
    chunk = _chunk_size(chunk_cells)
    if real.shape != replicated.shape:
        raise ScmixInputError(f"real {real.shape} and replicated {replicated.shape} must have the same shape")
    real, replicated = _rows(real), _rows(replicated)
    acc = CheckAccumulator(real.shape[1], top_genes)
    for start in range(0, real.shape[0], chunk):
        acc.add(real[start : start + chunk], replicated[start : start + chunk])
    return acc.summary(), acc.genes()


def top_variable(real, n_top: int) -> np.ndarray:
    """Indices (ascending) of the ``n_top`` genes with the highest population variance of log1p(counts) over the
    cells of ``real`` (sparse or dense), ties broken by the lower index; all genes if there are fewer
    (``scmix.evaluation.metrics.top_variable_genes`` on log1p; a sparse matrix stays sparse, log1p(0) = 0)."""
    if n_top < 0:
        raise ScmixInputError(f"n_top must not be negative, got {n_top}")
    real = _rows(real)
    if sp.issparse(real):
        logx = real.astype(np.float64, copy=True)
        logx.data = np.log1p(logx.data)
    else:
        logx = np.log1p(np.asarray(real, dtype=np.float64))
    return top_variable_genes(logx, int(n_top))
