"""The latent space of held-out cells: how well it separates cell types and how much it separates batches.

``latent_scores``: sklearn's silhouette width of the posterior means (Euclidean), once per label column
(cell_type, dataset, donor, batch, ...), per eval set and over all eval sets together. High by cell type
means types are apart; high by dataset/donor/batch means those are apart too (a batch effect kept), near 0
or below means they are mixed. ``umap_coordinates`` is scanpy's UMAP of the same latent, on its exact
15-nearest-neighbour graph.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from sklearn.metrics import silhouette_score

log = logging.getLogger("scmix.evaluation.latent")


def silhouette(z: np.ndarray, labels, *, sample_size: int = 5000, seed: int = 0) -> float:
    """Mean silhouette width of ``labels`` in ``z``; NaN with fewer than two labels (or one cell per label)."""
    labels = np.asarray(labels, dtype=str)
    n_labels = len(set(labels))
    if n_labels < 2 or n_labels >= len(labels):
        return float("nan")
    size = min(sample_size, len(labels)) if sample_size else None
    return float(silhouette_score(z, labels, sample_size=size, random_state=seed))


def latent_scores(z: np.ndarray, obs: pd.DataFrame, keys, *, group: str = "eval_set", sample_size: int = 5000,
                  seed: int = 0) -> pd.DataFrame:  # fmt: skip
    """Rows (eval_set, key, n_cells, n_labels, silhouette): per value of ``group`` and over ``all`` cells,
    for each label column in ``keys`` that ``obs`` has; cells with no value (NaN) in a column are left out of
    that column's score. A column with fewer than two labels there (the eval set within one eval set, a study of
    one eval set, one donor), or with as many labels as cells, has no silhouette and no row (a debug line says
    why)."""
    rows = []
    groups = [("all", np.ones(len(obs), dtype=bool))]
    if group in obs and obs[group].nunique() > 1:
        groups += [(g, (obs[group] == g).to_numpy()) for g in sorted(obs[group].astype(str).unique())]
    elif group in obs:
        groups = [(str(obs[group].iloc[0]), np.ones(len(obs), dtype=bool))]
    for name, mask in groups:
        for key in keys:
            if key not in obs:
                continue
            values = obs[key].where(mask)  # cells without this label (NaN) are left out of its score
            rows_of = values.notna().to_numpy()
            labels = values[rows_of].astype(str).to_numpy()
            n_labels = len(set(labels))
            if not 2 <= n_labels < len(labels):
                log.debug("no silhouette by %s on %s: %d label(s) among %d cells (it needs at least 2, and fewer "
                          "than the cells)", key, name, n_labels, len(labels))  # fmt: skip
                continue
            rows.append({
                group: name,
                "key": key,
                "n_cells": len(labels),
                "n_labels": n_labels,
                "silhouette": silhouette(z[rows_of], labels, sample_size=sample_size, seed=seed),
            })  # fmt: skip
    return pd.DataFrame(rows, columns=[group, "key", "n_cells", "n_labels", "silhouette"])


def umap_coordinates(z: np.ndarray, *, n_neighbors: int = 15, seed: int = 0) -> np.ndarray:
    """2-d UMAP of ``z`` (scanpy: kNN graph on z itself, then UMAP), cells x 2."""
    import anndata as ad
    import scanpy as sc

    adata = ad.AnnData(np.zeros((z.shape[0], 0), dtype=np.float32))
    adata.obsm["X_latent"] = np.asarray(z, dtype=np.float32)
    # exact kNN (sklearn): scanpy's default above 8,192 cells, pynndescent, hands scanpy 1.11 a csr_array it
    # cannot read with scipy 1.17 ('getnnz'); exact is what it computes below that size anyway
    sc.pp.neighbors(adata, n_neighbors=min(n_neighbors, max(z.shape[0] - 1, 2)), use_rep="X_latent",
                    random_state=seed, transformer="sklearn")  # fmt: skip
    sc.tl.umap(adata, random_state=seed)
    return adata.obsm["X_umap"]
