"""Held-out evaluation splits: every dataset is cut once into train and eval parts, disjoint by cell.

Methods:
- ``random``: a share of cells, stratified by a label (cell type) where every class allows it;
- ``group``: whole groups (donors, samples) go to one side only, a share of the groups to eval
  (sklearn's GroupShuffleSplit); no group is on both sides;
- ``holdout_cell_types`` (with either method): every cell of these types goes to eval and none to
  training, for the "unseen cell type" evaluation.
The split depends on the split seed only, not on the mix seed, so every model of a study is judged on
the same held-out cells. The eval part marks the cells that ``holdout_cell_types`` sent there (obs
``HOLDOUT_COLUMN``), and both parts record the split in ``uns["split"]`` (:func:`split_record`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import anndata as ad
import numpy as np
from sklearn.model_selection import GroupShuffleSplit, train_test_split

from scmix.errors import ScmixInputError
from scmix.settings import HOLDOUT_COLUMN, SPLIT_DEFAULTS, SPLIT_METHODS

log = logging.getLogger("scmix.data.split")


def _who(dataset: str | None) -> str:
    return f"dataset '{dataset}'" if dataset else "the dataset"


def split_indices(adata: ad.AnnData, eval_fraction: float, seed: int,
                  stratify: str | None = SPLIT_DEFAULTS["stratify"], *,
                  method: str = SPLIT_DEFAULTS["method"], group_key: str | None = None,
                  holdout_cell_types: Sequence[str] = (), cell_type_key: str = SPLIT_DEFAULTS["cell_type_key"],
                  dataset: str | None = None,
                  stratify_required: bool = False) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Sorted (train, eval) row indices of ``adata``; the strategy used, and why, is logged.

    A random split is stratified by ``stratify`` where the dataset has that column and every class has two cells;
    without the column it fails when ``stratify_required`` (the config names the label), else warns and splits
    unstratified."""
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
        log.info("%s: split by group '%s' (%d groups)", _who(dataset), group_key, len(set(groups)))
    elif method == "random":
        labels = stratify_labels(adata, rest, stratify, stratify_required, dataset)
        train_idx, eval_idx = train_test_split(rest, test_size=eval_fraction, random_state=seed, stratify=labels)
    else:
        raise ValueError(f"unknown split method '{method}' ({', '.join(SPLIT_METHODS)})")
    eval_idx = np.concatenate([eval_idx, np.flatnonzero(forced)])
    return np.sort(train_idx), np.sort(eval_idx)


def stratify_labels(adata: ad.AnnData, rows: np.ndarray, stratify: str | None, required: bool,
                    dataset: str | None) -> np.ndarray | None:  # fmt: skip
    """The labels of ``rows`` to stratify a random split by, or None (logged, with the reason)."""
    if not stratify:
        log.info("%s: random split, not stratified (split.stratify is null)", _who(dataset))
        return None
    if stratify not in adata.obs:
        what = (f"split.stratify is '{stratify}' but the dataset has no obs column '{stratify}' (it has "
                f"{sorted(map(str, adata.obs.columns))})")  # fmt: skip
        if required:
            raise ScmixInputError(f"{what}; map one of its columns to '{stratify}' with obs_keys, or set "
                                  "split.stratify: null for this dataset", dataset=dataset)  # fmt: skip
        log.warning("%s: %s (the default), so the split is random, NOT stratified; set split.stratify: null "
                    "for this dataset to say so, or map a label column to it with obs_keys", _who(dataset),
                    what)  # fmt: skip
        return None
    labels = adata.obs[stratify].astype(str).to_numpy()[rows]
    classes, counts = np.unique(labels, return_counts=True)
    if counts.min() < 2:  # sklearn needs two members per class
        log.warning("%s: the split is random, NOT stratified: class '%s' of '%s' has %d cell (stratifying "
                    "needs at least 2 per class)", _who(dataset), classes[counts.argmin()], stratify,
                    counts.min())  # fmt: skip
        return None
    log.info("%s: random split stratified by '%s' (%d classes)", _who(dataset), stratify, len(classes))
    return labels


def split_heldout(adata: ad.AnnData, eval_fraction: float, seed: int, stratify: str | None = SPLIT_DEFAULTS["stratify"],
                  **kwargs) -> tuple[ad.AnnData, ad.AnnData]:  # fmt: skip
    """Return (train, eval) copies of ``adata``; see ``split_indices`` for the options. The eval part's obs
    ``HOLDOUT_COLUMN`` marks the cells of ``holdout_cell_types``; both parts carry :func:`split_record` in
    ``uns["split"]``."""
    train_idx, eval_idx = split_indices(adata, eval_fraction, seed, stratify, **kwargs)
    train, held = adata[train_idx].copy(), adata[eval_idx].copy()
    train.obs["split"] = "train"
    held.obs["split"] = "eval"
    types = [str(t) for t in kwargs.get("holdout_cell_types") or ()]
    key = kwargs.get("cell_type_key", SPLIT_DEFAULTS["cell_type_key"])
    held.obs[HOLDOUT_COLUMN] = held.obs[key].astype(str).isin(types).to_numpy() if types else False
    record = split_record(train.n_obs, held.n_obs, int(held.obs[HOLDOUT_COLUMN].sum()), types,
                          method=kwargs.get("method", SPLIT_DEFAULTS["method"]), eval_fraction=eval_fraction,
                          seed=seed)  # fmt: skip
    train.uns["split"] = dict(record)
    held.uns["split"] = dict(record)
    return train, held


def split_record(n_train: int, n_eval: int, n_holdout: int, holdout_cell_types, *, method: str,
                 eval_fraction: float, seed: int) -> dict:  # fmt: skip
    """The split in numbers: its settings, the cells on each side, and how many held-out cells the method chose
    (``n_eval_split``) and how many ``holdout_cell_types`` sent there (``n_eval_holdout_cell_types``)."""
    return {"method": method, "eval_fraction": float(eval_fraction), "seed": int(seed), "n_train": int(n_train),
            "n_eval": int(n_eval), "n_eval_split": int(n_eval - n_holdout), "n_eval_holdout_cell_types": int(n_holdout),
            "holdout_cell_types": list(holdout_cell_types)}  # fmt: skip


def describe(record: dict, dataset: str) -> str:
    """The split's log line: the cells on each side and, with holdout_cell_types, where the held-out cells came
    from."""
    line = f"{dataset}: {record['n_train']} training cells, {record['n_eval']} held-out cells"
    if not record["holdout_cell_types"]:
        return f"{line} ({record['method']} split)"
    return (f"{line}: {record['n_eval_split']} by the {record['method']} split and "
            f"{record['n_eval_holdout_cell_types']} of holdout_cell_types ({', '.join(record['holdout_cell_types'])}),"
            " cell types kept out of training")  # fmt: skip
