"""Cell and gene QC with scanpy's metrics; every step's removals are reported."""

from __future__ import annotations

from collections.abc import Mapping

import anndata as ad
import numpy as np
import pandas as pd

from scmix.io import counts_matrix

QC_DEFAULTS = {
    "min_genes": 200,
    "min_counts": 0,
    "max_counts": None,
    "max_pct_mito": 20.0,
    "min_cells": 3,
    "mito_prefix": "MT-",
}


def qc_params(global_qc: Mapping, override: Mapping | None = None) -> dict:
    """Global thresholds with a dataset's overrides on top."""
    return {**QC_DEFAULTS, **(global_qc or {}), **(override or {})}


def qc_metrics(adata: ad.AnnData, mito_prefix: str) -> None:
    """Add scanpy's per-cell and per-gene QC metrics (on raw counts) to ``adata`` in place."""
    import scanpy as sc

    symbols = adata.var["gene_symbols"] if "gene_symbols" in adata.var else adata.var_names.to_series()
    adata.var["mt"] = symbols.astype(str).str.startswith(mito_prefix).to_numpy()
    layer = "counts" if "counts" in adata.layers else None
    sc.pp.calculate_qc_metrics(adata, qc_vars=["mt"], layer=layer, percent_top=None, log1p=False, inplace=True)


def run_qc(adata: ad.AnnData, params: Mapping) -> tuple[ad.AnnData, pd.DataFrame]:
    """Filter cells then genes; return the filtered copy and a table of what each step removed."""
    qc_metrics(adata, params["mito_prefix"])
    steps = []
    keep = np.ones(adata.n_obs, dtype=bool)
    obs = adata.obs

    def step(name, threshold, mask):
        nonlocal keep
        removed = int((keep & ~mask).sum())
        keep &= mask
        steps.append(
            {
                "step": name,
                "threshold": threshold,
                "cells_removed": removed,
                "genes_removed": 0,
                "cells_left": int(keep.sum()),
                "genes_left": adata.n_vars,
            }
        )

    steps.append(
        {
            "step": "input",
            "threshold": "",
            "cells_removed": 0,
            "genes_removed": 0,
            "cells_left": adata.n_obs,
            "genes_left": adata.n_vars,
        }
    )
    step("min_genes", params["min_genes"], obs["n_genes_by_counts"].to_numpy() >= params["min_genes"])
    step("min_counts", params["min_counts"], obs["total_counts"].to_numpy() >= params["min_counts"])
    if params.get("max_counts") is not None:
        step("max_counts", params["max_counts"], obs["total_counts"].to_numpy() <= params["max_counts"])
    if params.get("max_pct_mito") is not None:
        step("max_pct_mito", params["max_pct_mito"], obs["pct_counts_mt"].to_numpy() <= params["max_pct_mito"])
    out = adata[keep].copy()

    X = counts_matrix(out)
    n_cells = np.asarray((X > 0).sum(axis=0)).ravel()
    gene_keep = n_cells >= params["min_cells"]
    out = out[:, gene_keep].copy()
    steps.append(
        {
            "step": "min_cells",
            "threshold": params["min_cells"],
            "cells_removed": 0,
            "genes_removed": int((~gene_keep).sum()),
            "cells_left": out.n_obs,
            "genes_left": out.n_vars,
        }
    )
    if out.n_obs == 0 or out.n_vars == 0:
        raise ValueError(f"QC removed every cell or gene ({out.n_obs} cells x {out.n_vars} genes left)")
    out.uns["qc"] = {k: ("" if v is None else v) for k, v in params.items()}
    return out, pd.DataFrame(steps)
