"""Cell and gene QC with scanpy's metrics; every step's removals are reported.

Two modes (``params["mode"]``):

- ``single_cell`` (default): cells with too few detected genes or counts, too many counts or too high a
  mitochondrial share are removed, and cells whose counts are mostly spike-ins (``max_pct_spikein``: the share
  of the ``drop_features`` features), then genes detected in fewer than ``min_cells`` of the cells left.
- ``bulk`` (recount3, GEO supplementary counts, csv/h5ad bulk tables): the library size of each sample
  (its total counts, exact) is recorded in ``obs["library_size"]`` before any filter; the per-cell
  filters (``min_genes``, ``min_counts``, ``max_counts``, ``max_pct_mito``, ``max_pct_spikein``, ``min_cells``) do
  not apply;
  samples below an optional ``min_library_size`` are removed, then genes with fewer than ``min_samples``
  samples of at least ``min_count`` counts (edgeR's min-samples rule, as ``R/recount3.R`` applies it).

In both modes, features that are not genes (ERCC spike-ins; ``drop_features``, regular expressions matched against
each feature's symbol and ID) are removed first, before any library size or metric is computed; their share of
each cell's counts is recorded (``obs["pct_counts_dropped"]``) and reported. The genes QC removes are listed in
``uns["qc_removed_genes"]`` (gene, gene_id, step), so a gene list that names one can say why it is missing.

Raw counts are never changed: metrics go to ``obs``/``var`` only. Sparse counts stay sparse.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from scmix.errors import ScmixInputError
from scmix.io import counts_matrix
from scmix.settings import QC_DEFAULTS, QC_MODES, require

log = logging.getLogger("scmix.data.qc")
SINGLE_CELL_KEYS = ("drop_features", "min_genes", "min_counts", "max_counts", "max_pct_mito", "max_pct_spikein",
                    "min_cells", "mito_prefix")  # fmt: skip
BULK_KEYS = ("drop_features", "min_count", "min_samples", "min_library_size", "mito_prefix")

# rows of the sparse/dense matrix handled at once when counting (bounds the temporary memory)
_CHUNK = 100_000


def feature_names(adata: ad.AnnData) -> pd.Series:
    """Each feature's symbol (``var["gene_symbols"]`` where the source has it, else the var name)."""
    symbols = adata.var["gene_symbols"] if "gene_symbols" in adata.var else adata.var_names.to_series()
    return symbols.astype(str)


def matching_features(adata: ad.AnnData, patterns) -> np.ndarray:
    """Features whose symbol, var name or gene ID matches one of the regular expressions ``patterns``."""
    hit = np.zeros(adata.n_vars, dtype=bool)
    columns = [feature_names(adata), adata.var_names.to_series().astype(str)]
    if "gene_ids" in adata.var:
        columns.append(adata.var["gene_ids"].astype(str))
    for pattern in patterns or ():
        for col in columns:
            hit |= col.str.contains(pattern, regex=True).to_numpy()
    return hit


def qc_metrics(adata: ad.AnnData, mito_prefix: str, genes: np.ndarray | None = None, *,
               dataset: str | None = None) -> None:  # fmt: skip
    """Add scanpy's per-cell and per-gene QC metrics (on raw counts) to ``adata`` in place, computed on the
    features ``genes`` (a mask; default all): the dropped features count toward no library size."""
    import scanpy as sc

    symbols = feature_names(adata)
    adata.var["mt"] = symbols.str.startswith(mito_prefix).to_numpy()
    if genes is not None:
        adata.var["mt"] &= genes
    if not adata.var["mt"].any():
        near = symbols[symbols.str.lower().str.startswith(mito_prefix.lower())]
        hint = ""
        if len(near):
            first = near.iloc[0]
            hint = f"; '{first}' matches it but for case: set qc.mito_prefix: '{first[: len(mito_prefix)]}'"
        log.warning("dataset '%s': qc.mito_prefix '%s' matches no gene (genes: %s, ...), so every cell's mitochondrial "
                    "share is 0 and max_pct_mito removes nothing%s", dataset, mito_prefix,
                    ", ".join(symbols.iloc[:5]), hint)  # fmt: skip
    layer = "counts" if "counts" in adata.layers else None
    if genes is None or genes.all():
        sc.pp.calculate_qc_metrics(adata, qc_vars=["mt"], layer=layer, percent_top=None, log1p=False, inplace=True)
        return
    obs, var = sc.pp.calculate_qc_metrics(adata[:, genes], qc_vars=["mt"], layer=layer, percent_top=None,
                                          log1p=False, inplace=False)  # fmt: skip
    for column in obs:
        adata.obs[column] = obs[column].to_numpy()
    for column in var:
        adata.var[column] = var[column].reindex(adata.var_names).to_numpy()


def drop_features(adata: ad.AnnData, patterns, dataset: str | None = None) -> np.ndarray:
    """The mask of features to keep; the dropped ones' share of each cell's counts goes to
    ``obs["pct_counts_dropped"]`` and to the log."""
    dropped = matching_features(adata, patterns)
    if not dropped.any():
        return ~dropped
    X = counts_matrix(adata)
    total = library_sizes(X).astype(np.float64)
    spike = library_sizes(X[:, np.flatnonzero(dropped)]).astype(np.float64)
    pct = np.divide(100.0 * spike, total, out=np.zeros_like(spike), where=total > 0)
    adata.obs["pct_counts_dropped"] = pct
    log.info("dataset '%s': qc.drop_features %s removed %d features (e.g. %s) holding %.2f %% of all counts "
             "(per cell: median %.2f %%, max %.2f %%), before library sizes are computed", dataset, list(patterns),
             int(dropped.sum()), ", ".join(feature_names(adata)[dropped].iloc[:3]),
             100.0 * spike.sum() / max(total.sum(), 1.0), float(np.median(pct)), float(pct.max()))  # fmt: skip
    return ~dropped


def library_sizes(X) -> np.ndarray:
    """Total counts per row, summed exactly: int64 when the counts are integers (also float-stored ones).

    scanpy's ``total_counts`` sums float32 counts in float32, which is off by a few counts above 2**24
    (bulk libraries of 20 million reads); this sums in float64 or int64.
    """
    integer_dtype = np.issubdtype(X.dtype, np.integer) or X.dtype == bool
    acc = np.int64 if integer_dtype else np.float64
    if sp.issparse(X):
        # scipy's X.sum(dtype=float64) still accumulates float32 data in float32: sum the stored values in
        # float64 (np.bincount's weights), a chunk at a time so no full-size copy of the data is made
        if X.format not in ("csr", "csc"):
            X = X.tocsr()
        n_obs, ptr = X.shape[0], X.indptr
        sums = np.zeros(n_obs, dtype=np.float64)
        if X.format == "csr":
            for i in range(0, n_obs, _CHUNK):
                stop = min(i + _CHUNK, n_obs)
                rows = np.repeat(np.arange(i, stop), np.diff(ptr[i : stop + 1]))
                sums[i:stop] = np.bincount(rows - i, weights=X.data[ptr[i] : ptr[stop]], minlength=stop - i)
        else:
            for j in range(0, X.shape[1], _CHUNK):
                lo, hi = ptr[j], ptr[min(j + _CHUNK, X.shape[1])]
                sums += np.bincount(X.indices[lo:hi], weights=X.data[lo:hi], minlength=n_obs)
        if integer_dtype:
            sums = sums.astype(np.int64)  # float64 partial sums of integers are exact below 2**53
    else:
        sums = np.concatenate(
            [np.asarray(X[i : i + _CHUNK]).sum(axis=1, dtype=acc) for i in range(0, X.shape[0], _CHUNK)]
            or [np.zeros(0, dtype=acc)]
        )
    if not integer_dtype and np.isfinite(sums).all() and (sums == np.round(sums)).all() and np.all(sums < 2.0**53):
        sums = sums.astype(np.int64)
    return sums


def samples_with_min_count(X, min_count: float, rows: np.ndarray | None = None) -> np.ndarray:
    """Per column (gene): how many rows (samples, cells) hold at least ``min_count`` counts.

    ``rows`` (a boolean mask) restricts the count to those rows without copying them out; sparse input
    is read entry by entry in chunks, never densified or converted to a boolean matrix.
    """
    n_obs, n_vars = X.shape
    if min_count <= 0:  # every sample qualifies, stored or not
        return np.full(n_vars, n_obs if rows is None else int(np.sum(rows)), dtype=np.int64)
    out = np.zeros(n_vars, dtype=np.int64)
    if sp.issparse(X):
        if X.format not in ("csr", "csc"):
            X = X.tocsr()
        if not X.has_canonical_format:  # duplicate entries must be summed before comparing (on a copy)
            X = X.copy()
            X.sum_duplicates()
        ptr = X.indptr
        if X.format == "csr":
            for i in range(0, n_obs, _CHUNK):
                stop = min(i + _CHUNK, n_obs)
                lo, hi = ptr[i], ptr[stop]
                hit = X.data[lo:hi] >= min_count
                if rows is not None:
                    hit &= np.repeat(rows[i:stop], np.diff(ptr[i : stop + 1]))
                out += np.bincount(X.indices[lo:hi][hit], minlength=n_vars)
        else:
            for j in range(0, n_vars, _CHUNK):
                stop = min(j + _CHUNK, n_vars)
                lo = ptr[j]
                hit = X.data[lo : ptr[stop]] >= min_count
                if rows is not None:
                    hit &= rows[X.indices[lo : ptr[stop]]]
                hits = np.concatenate([[0], np.cumsum(hit)])
                out[j:stop] = hits[ptr[j + 1 : stop + 1] - lo] - hits[ptr[j:stop] - lo]
        return out
    for i in range(0, n_obs, _CHUNK):
        block = np.asarray(X[i : i + _CHUNK])
        if rows is not None:
            block = block[rows[i : i + _CHUNK]]
        out += (block >= min_count).sum(axis=0)
    return out


class _Steps:
    """The removal table: one row per step (step, threshold, cells_removed, genes_removed, cells_left, genes_left)."""

    def __init__(self, n_obs: int, n_vars: int):
        self.keep = np.ones(n_obs, dtype=bool)
        self.gene_keep = np.ones(n_vars, dtype=bool)
        self.removed_genes: dict[str, np.ndarray] = {}
        self.n_vars = n_vars
        self.rows = [self._row("input", "", 0, 0, n_obs, n_vars)]

    @staticmethod
    def _row(step, threshold, cells_removed, genes_removed, cells_left, genes_left):
        return {
            "step": step,
            "threshold": threshold,
            "cells_removed": int(cells_removed),
            "genes_removed": int(genes_removed),
            "cells_left": int(cells_left),
            "genes_left": int(genes_left),
        }

    def cells(self, name, threshold, mask) -> None:
        removed = (self.keep & ~mask).sum()
        self.keep &= mask
        self.rows.append(self._row(name, threshold, removed, 0, self.keep.sum(), self.n_vars))

    def genes(self, name, threshold, gene_keep) -> None:
        removed = self.gene_keep & ~gene_keep
        self.removed_genes[name] = removed
        self.gene_keep &= gene_keep
        self.n_vars = int(self.gene_keep.sum())
        self.rows.append(self._row(name, threshold, 0, removed.sum(), self.keep.sum(), self.n_vars))

    def table(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows)

    def check_left(self, dataset: str | None, unit: str) -> None:
        """Fail, naming the step and threshold that removed the last cells (or genes), when none are left."""
        for kind, left in (("cells", "cells_left"), ("genes", "genes_left")):
            if self.rows[-1][left] > 0:
                continue
            last = next(r for r in self.rows if r[left] == 0)
            what = f"{unit}s" if kind == "cells" else "genes"
            raise ScmixInputError(
                f"QC removed every {unit if kind == 'cells' else 'gene'}: step {last['step']} "
                f"(threshold {last['threshold']}) removed the last {last[f'{kind}_removed']:,} {what} of "
                f"{self.rows[0][left]:,}; change qc.{last['step']} (for this dataset alone: under "
                f"datasets.{dataset or '<name>'}.qc)",
                dataset=dataset,
            )


def run_qc(adata: ad.AnnData, params: Mapping, *, dataset: str | None = None) -> tuple[ad.AnnData, pd.DataFrame]:
    """Filter cells (samples) then genes; return the filtered copy and a table of what each step removed.

    ``adata`` gets the QC metrics in ``obs``/``var`` in place (so a caller can plot before vs after);
    ``params`` are resolved settings (``scmix.settings.resolve_qc``). QC that leaves no cell or no gene fails,
    naming ``dataset`` and the step that removed the last ones.
    """
    require(params, QC_DEFAULTS, "qc")
    mode = params["mode"]
    if mode not in QC_MODES:
        raise ScmixInputError(f"qc.mode must be one of {', '.join(QC_MODES)}, not {mode!r}", dataset=dataset)
    features = drop_features(adata, params["drop_features"], dataset)
    qc_metrics(adata, params["mito_prefix"], features, dataset=dataset)
    steps = _Steps(adata.n_obs, adata.n_vars)
    if params["drop_features"]:
        steps.genes("drop_features", " ".join(params["drop_features"]), features)
    obs = adata.obs

    if mode == "bulk":
        X = counts_matrix(adata)
        obs["library_size"] = library_sizes(X if features.all() else X[:, np.flatnonzero(features)])
        if params.get("min_library_size") is not None:
            mask = obs["library_size"].to_numpy() >= params["min_library_size"]
            steps.cells("min_library_size", params["min_library_size"], mask)
        min_count, min_samples = params["min_count"], params["min_samples"]
        n_left = int(steps.keep.sum())
        if min_samples > n_left:
            raise ScmixInputError(f"qc.min_samples={min_samples} is more than the {n_left} samples left, so no gene "
                                  "can pass; lower qc.min_samples", dataset=dataset)  # fmt: skip
        n_samples = samples_with_min_count(counts_matrix(adata), min_count, rows=steps.keep)
        adata.var["n_samples_min_count"] = n_samples
        gene_keep = n_samples >= min_samples
        steps.genes("min_samples", f">={min_count} counts in >={min_samples} samples", gene_keep)
        used = ("mode", *BULK_KEYS)
    else:
        steps.cells("min_genes", params["min_genes"], obs["n_genes_by_counts"].to_numpy() >= params["min_genes"])
        steps.cells("min_counts", params["min_counts"], obs["total_counts"].to_numpy() >= params["min_counts"])
        if params.get("max_counts") is not None:
            steps.cells("max_counts", params["max_counts"], obs["total_counts"].to_numpy() <= params["max_counts"])
        if params.get("max_pct_mito") is not None:
            mask = obs["pct_counts_mt"].to_numpy() <= params["max_pct_mito"]
            steps.cells("max_pct_mito", params["max_pct_mito"], mask)
        if params.get("max_pct_spikein") is not None and params["drop_features"]:
            # no column where drop_features matched nothing: every cell's share is 0
            pct = obs["pct_counts_dropped"].to_numpy() if "pct_counts_dropped" in obs else np.zeros(adata.n_obs)
            steps.cells("max_pct_spikein", params["max_pct_spikein"], pct <= params["max_pct_spikein"])
        # cells of the kept rows in which each gene is detected (any positive value)
        n_cells = samples_with_min_count(counts_matrix(adata), np.finfo(float).tiny, rows=steps.keep)
        gene_keep = n_cells >= params["min_cells"]
        steps.genes("min_cells", params["min_cells"], gene_keep)
        used = ("mode", *SINGLE_CELL_KEYS)

    steps.check_left(dataset, "sample" if mode == "bulk" else "cell")
    out = adata[steps.keep, steps.gene_keep].copy()  # one subset: cells and genes together
    out.uns["qc"] = {k: ("" if params[k] is None or (k == "drop_features" and not params[k]) else params[k])
                     for k in used}  # fmt: skip
    out.uns["qc_removed_genes"] = removed_genes_table(adata, steps.removed_genes)
    return out, steps.table()


def removed_genes_table(adata: ad.AnnData, removed: Mapping[str, np.ndarray]) -> pd.DataFrame:
    """The genes each QC step removed: gene (var name), gene_id (or empty), step."""
    frames = [pd.DataFrame({"gene": adata.var_names[mask].astype(str),
                            "gene_id": (adata.var["gene_ids"].astype(str)[mask].to_numpy() if "gene_ids" in adata.var
                                        else ""),
                            "step": step}) for step, mask in removed.items() if mask.any()]  # fmt: skip
    if not frames:
        return pd.DataFrame({"gene": pd.Series([], dtype=str), "gene_id": pd.Series([], dtype=str),
                             "step": pd.Series([], dtype=str)})  # fmt: skip
    return pd.concat(frames, ignore_index=True)


# the per-cell QC metrics that rule plot_qc draws (the x, y and colour columns of scmix.plots.data.qc_scatter)
METRIC_COLUMNS = ("total_counts", "n_genes_by_counts", "pct_counts_mt", "library_size", "pct_counts_dropped")


def cell_metrics(before: ad.AnnData, after: ad.AnnData) -> pd.DataFrame:
    """Per cell (sample) of ``before`` (with ``run_qc``'s metrics): the metrics, and whether QC kept it."""
    table = before.obs[[c for c in METRIC_COLUMNS if c in before.obs]].copy()
    table["kept"] = before.obs_names.isin(after.obs_names)
    table.index.name = "cell_id"
    return table


def plot_thresholds(params: Mapping) -> dict:
    """What the QC figure (``scmix.plots.data.qc_scatter``) shows for these resolved settings: unit, x column,
    threshold lines."""
    require(params, QC_DEFAULTS, "qc")
    if params["mode"] == "bulk":
        lines = []
        if params.get("min_library_size") is not None:
            lines.append(("x", params["min_library_size"], f"min_library_size = {params['min_library_size']:,}"))
        return {"unit": "sample", "x": "library_size", "thresholds": lines}
    lines = []
    if params["min_genes"]:
        lines.append(("y", params["min_genes"], f"min_genes = {params['min_genes']:,}"))
    if params["min_counts"]:
        lines.append(("x", params["min_counts"], f"min_counts = {params['min_counts']:,}"))
    if params.get("max_counts") is not None:
        lines.append(("x", params["max_counts"], f"max_counts = {params['max_counts']:,}"))
    if params.get("max_pct_mito") is not None:
        lines.append(("colour", params["max_pct_mito"], f"max_pct_mito = {params['max_pct_mito']:g} %"))
    return {"unit": "cell", "x": "total_counts", "thresholds": lines}
