"""Choosing a dataset's cells, the same way for every source: an ``obs_filter`` (a pandas query on the source's own
cell table, before ``obs_keys`` renames its columns) and a seeded ``max_cells`` subsample of the cells it keeps.
The sources that can read only some rows (``h5ad``, ``census``: ``registry.SELECTS_BEFORE_READING``) choose before
any counts are read; ``scmix.data.sources.parse_dataset`` chooses for every other source, from the parsed cells
(``select_cells``). Either way ``uns["selection"]`` records what was asked and the cells there were, matched and
kept. The subsample also draws the real cells the synthetic-data classifier is fitted on
(``synthetic.max_train_cells``).

The subsample is a function of the number of cells that matched and the seed alone: the same file, filter and
seed keep the same cells on every machine."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import anndata as ad
import numpy as np
import pandas as pd

from scmix.errors import ScmixInputError

log = logging.getLogger("scmix.data.sources.select")


def query_obs(obs: pd.DataFrame, expr: str, *, dataset: str, path: str) -> np.ndarray:
    """Positions (ascending) of the rows of ``obs`` for which the pandas query ``expr`` is true."""
    frame = obs.reset_index(drop=True)
    try:
        kept = frame.query(expr, engine="python").index.to_numpy()
    except Exception as err:  # pandas raises SyntaxError, NameError (UndefinedVariableError), TypeError, ValueError
        columns = ", ".join(map(str, obs.columns))
        raise ScmixInputError(f"obs_filter {expr!r} cannot be evaluated on the cell table ({type(err).__name__}: "
                              f"{err}); its columns are: {columns}; correct obs_filter",
                              dataset=dataset, path=path) from err  # fmt: skip
    if kept.size == 0:
        raise ScmixInputError(f"obs_filter {expr!r} keeps none of the {len(obs)} cells; loosen obs_filter",
                              dataset=dataset, path=path)  # fmt: skip
    return np.sort(kept)


def subsample(n: int, max_cells: int | None, seed: int) -> np.ndarray:
    """Positions (ascending) of at most ``max_cells`` of ``n`` cells, drawn without replacement with ``seed``;
    all ``n`` when ``max_cells`` is None or not smaller than ``n``."""
    if max_cells is None or max_cells >= n:
        if max_cells is not None:
            log.info("max_cells %d >= the %d cells there are: every one is kept", max_cells, n)
        return np.arange(n)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=int(max_cells), replace=False))


def selection_record(matched: int, kept: int, spec, keys=("obs_filter", "max_cells", "seed")) -> dict:
    """What was asked and what it gave, for ``uns``: the settings that were given and the cell counts."""
    record = {k: spec[k] for k in keys if spec.get(k) is not None}
    record.update(cells_matched=int(matched), cells_kept=int(kept))
    return record


def wanted(spec: Mapping) -> bool:
    """Whether the dataset's entry asks for a selection (``obs_filter`` or ``max_cells``)."""
    return spec.get("obs_filter") is not None or spec.get("max_cells") is not None


def choose(obs: pd.DataFrame, spec: Mapping, *, dataset: str, path: str) -> tuple[np.ndarray, dict]:
    """(ascending positions of the cells kept, the record for ``uns["selection"]``): the rows of ``obs`` that
    ``obs_filter`` keeps, then a ``seed``ed ``max_cells`` subsample of them."""
    expr = spec.get("obs_filter")
    matched = query_obs(obs, expr, dataset=dataset, path=path) if expr is not None else np.arange(len(obs))
    kept = matched[subsample(len(matched), spec.get("max_cells"), spec.get("seed", 0))]
    record = selection_record(len(matched), len(kept), spec)
    record["cells_in_file"] = len(obs)
    log.info("%s: %d of %d cells kept (obs_filter %r matched %d, max_cells %s)", dataset, record["cells_kept"],
             record["cells_in_file"], expr, record["cells_matched"], spec.get("max_cells"))  # fmt: skip
    return kept, record


def take_obs(obs: pd.DataFrame, rows: np.ndarray) -> pd.DataFrame:
    """The kept rows of a cell table, categories no kept cell has dropped."""
    out = obs.iloc[rows].copy()
    for column in out.columns:
        if isinstance(out[column].dtype, pd.CategoricalDtype):
            out[column] = out[column].cat.remove_unused_categories()
    return out


def select_cells(adata: ad.AnnData, spec: Mapping, *, dataset: str, path: str) -> ad.AnnData:
    """The cells of a parsed dataset that ``obs_filter`` and ``max_cells`` keep (``adata`` itself when neither is
    set), with ``uns["selection"]``: for the sources that cannot choose before reading."""
    if not wanted(spec):
        return adata
    rows, record = choose(adata.obs, spec, dataset=dataset, path=path)
    out = adata[rows].copy()
    out.obs = take_obs(out.obs, np.arange(out.n_obs))
    out.uns["selection"] = record
    return out
