"""Held-out evaluation splits: every dataset is cut once into train and eval parts, disjoint by cell.

Methods:
- ``random``: a share of cells, stratified by a label (cell type) where every class allows it;
- ``group``: whole groups (donors, samples) go to one side only, a share of the groups to eval
  (sklearn's GroupShuffleSplit); no group is on both sides;
- ``holdout_cell_types`` (with either method): every cell of these types goes to eval and none to
  training, for the "unseen cell type" evaluation.
The split depends on the split seed only, not on the mix seed, so every model of a study is judged on
the same held-out cells.
"""

from __future__ import annotations

from collections.abc import Sequence

import anndata as ad
import numpy as np
from sklearn.model_selection import GroupShuffleSplit, train_test_split

from scmix.errors import ScmixInputError

SPLIT_DEFAULTS = {
    "method": "random",
    "eval_fraction": 0.2,
    "seed": 0,
    "stratify": "cell_type",
    "group_key": None,
    "holdout_cell_types": [],
    "cell_type_key": "cell_type",
}


def split_params(global_split, override=None) -> dict:
    """Defaults, then the global split settings, then a dataset's overrides."""
    return {**SPLIT_DEFAULTS, **(global_split or {}), **(override or {})}


def split_indices(adata: ad.AnnData, eval_fraction: float, seed: int, stratify: str | None = "cell_type", *,
                  method: str = "random", group_key: str | None = None,
                  holdout_cell_types: Sequence[str] = (), cell_type_key: str = "cell_type",
                  dataset: str | None = None) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Sorted (train, eval) row indices of ``adata``."""
    if not 0.0 < eval_fraction < 1.0:
        raise ValueError(f"split.eval_fraction must lie in (0, 1), got {eval_fraction}")
    n = adata.n_obs
    forced = np.zeros(n, dtype=bool)
    if holdout_cell_types:
        if cell_type_key not in adata.obs:
            raise ScmixInputError(f"holdout_cell_types needs obs column '{cell_type_key}'", dataset=dataset)
        labels = adata.obs[cell_type_key].astype(str)
        missing = sorted(set(holdout_cell_types) - set(labels))
        if missing:
            raise ScmixInputError(f"holdout_cell_types {missing} not found in '{cell_type_key}' "
                                  f"(present: {sorted(set(labels))})", dataset=dataset)  # fmt: skip
        forced = labels.isin(list(holdout_cell_types)).to_numpy()
    rest = np.flatnonzero(~forced)
    if method == "group":
        if not group_key or group_key not in adata.obs:
            raise ScmixInputError(f"split by group needs an obs column group_key (got {group_key!r}; "
                                  f"columns: {list(adata.obs.columns)})", dataset=dataset)  # fmt: skip
        groups = adata.obs[group_key].astype(str).to_numpy()[rest]
        if len(set(groups)) < 2:
            raise ScmixInputError(f"split by '{group_key}' needs at least 2 groups, found {len(set(groups))}",
                                  dataset=dataset)  # fmt: skip
        splitter = GroupShuffleSplit(n_splits=1, test_size=eval_fraction, random_state=seed)
        tr, ev = next(splitter.split(rest, groups=groups))
        train_idx, eval_idx = rest[tr], rest[ev]
    elif method == "random":
        labels = None
        if stratify and stratify in adata.obs:
            labels = adata.obs[stratify].astype(str).to_numpy()[rest]
            _, counts = np.unique(labels, return_counts=True)
            if counts.min() < 2:  # sklearn needs two members per class
                labels = None
        train_idx, eval_idx = train_test_split(rest, test_size=eval_fraction, random_state=seed, stratify=labels)
    else:
        raise ValueError(f"unknown split method '{method}' (random, group)")
    eval_idx = np.concatenate([eval_idx, np.flatnonzero(forced)])
    return np.sort(train_idx), np.sort(eval_idx)


def split_heldout(adata: ad.AnnData, eval_fraction: float, seed: int, stratify: str | None = "cell_type",
                  **kwargs) -> tuple[ad.AnnData, ad.AnnData]:  # fmt: skip
    """Return (train, eval) copies of ``adata``; see ``split_indices`` for the options."""
    train_idx, eval_idx = split_indices(adata, eval_fraction, seed, stratify, **kwargs)
    train, held = adata[train_idx].copy(), adata[eval_idx].copy()
    train.obs["split"] = "train"
    held.obs["split"] = "eval"
    return train, held
