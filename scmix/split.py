"""Held-out evaluation splits: every dataset is cut once into train and eval parts, disjoint by cell."""

from __future__ import annotations

import anndata as ad
import numpy as np
from sklearn.model_selection import train_test_split


def split_heldout(adata: ad.AnnData, eval_fraction: float, seed: int, stratify: str | None = "cell_type"):
    """Return (train, eval) copies of ``adata``, stratified by ``stratify`` where every class allows it.

    The split depends on the split seed only, not on the mix seed, so every model of a study is judged
    on the same held-out cells.
    """
    if not 0.0 < eval_fraction < 1.0:
        raise ValueError(f"split.eval_fraction must lie in (0, 1), got {eval_fraction}")
    idx = np.arange(adata.n_obs)
    labels = None
    if stratify and stratify in adata.obs:
        labels = adata.obs[stratify].astype(str).to_numpy()
        # sklearn needs two members per class; rare classes fall back to an unstratified split.
        _, counts = np.unique(labels, return_counts=True)
        if counts.min() < 2:
            labels = None
    train_idx, eval_idx = train_test_split(idx, test_size=eval_fraction, random_state=seed, stratify=labels)
    train_idx.sort()
    eval_idx.sort()
    train, held = adata[train_idx].copy(), adata[eval_idx].copy()
    for part, name in ((train, "train"), (held, "eval")):
        part.obs["split"] = name
    return train, held
