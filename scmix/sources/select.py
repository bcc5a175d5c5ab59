"""Choosing cells before their counts are read: an ``obs_filter`` (a pandas query on a source's cell table) and a
seeded ``max_cells`` subsample, shared by the sources that can read only some rows (``h5ad``, ``census``); the
subsample also draws the real cells the synthetic-data classifier is fitted on (``synthetic.max_train_cells``).

The subsample is a function of the number of cells that matched and the seed alone: the same file, filter and
seed keep the same cells on every machine."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from scmix.errors import ScmixInputError

log = logging.getLogger("scmix.sources.select")


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
