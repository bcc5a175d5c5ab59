"""From an AnnData to what a model trains or is evaluated on: checked counts, category codes, transform.

This is the loader side of training (it models nothing): counts are checked to be raw integers, with the
offending datasets of a mix named; categorical covariates become codes against a vocabulary fixed at
training time (0 = a category the model never saw); a Gaussian model's input is transformed here.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import scipy.sparse as sp

from scmix.errors import ScmixInputError
from scmix.io import check_integer_counts, counts_matrix, invalid_count_values
from scmix.models import transforms
from scmix.models.modelspec import covariates
from scmix.models.modules.counts import CellData


def check_counts(X, obs: pd.DataFrame, *, name: str, path: str | None, kind: str = "dataset") -> None:
    """``check_integer_counts``, naming the datasets whose cells hold the bad values when ``obs`` has them.

    ``name`` is what the cells are (``kind``: a dataset, or a mix)."""
    try:
        check_integer_counts(X, path=path)
    except ScmixInputError as err:
        if "dataset" not in obs:
            raise ScmixInputError(err.what, path=path, **{kind: name}) from None
        X = sp.csr_matrix(X)
        rows = np.unique(np.repeat(np.arange(X.shape[0]), np.diff(X.indptr))[invalid_count_values(X.data)])
        culprits = sorted(set(obs["dataset"].astype(str).to_numpy()[rows]))
        raise ScmixInputError(f"{err.what} (in cells of dataset(s) {', '.join(culprits)})", path=path,
                              **{kind: name}) from None  # fmt: skip


def vocabulary(obs: pd.DataFrame, names: list[str], *, name: str, path: str | None,
               kind: str = "dataset") -> dict[str, list[str]]:  # fmt: skip
    """The categories of each covariate, in sorted order (code = position + 1)."""
    vocab = {}
    for c in names:
        if c not in obs:
            raise ScmixInputError(f"the model needs obs column '{c}', which is missing (has {list(obs.columns)})",
                                  path=path, **{kind: name})  # fmt: skip
        vocab[c] = sorted(set(obs[c].astype(str)))
    return vocab


def encode(obs: pd.DataFrame, vocab: Mapping[str, list[str]]) -> np.ndarray | None:
    """Codes (cells x covariates); categories outside the vocabulary (or a missing column) get 0."""
    if not vocab:
        return None
    cols = []
    for c, cats in vocab.items():
        lookup = {v: i + 1 for i, v in enumerate(cats)}
        values = obs[c].astype(str) if c in obs else pd.Series(["\0"] * len(obs))
        cols.append(values.map(lookup).fillna(0).astype(np.int64).to_numpy())
    return np.stack(cols, axis=1)


def cell_data(X, obs: pd.DataFrame, *, transform: str | None, vocab: Mapping, device="cpu") -> CellData:
    """Counts, category codes and (for a Gaussian model) the transformed input, on ``device``."""
    X = sp.csr_matrix(X)
    target = transforms.transform(X, transform) if transform else None
    return CellData(X, codes=encode(obs, vocab), target=target, device=device)


def model_input(X, obs: pd.DataFrame, spec: Mapping, vocab: Mapping, device="cpu") -> CellData:
    """``cell_data`` for a model of ``spec``: a Gaussian model's input is its ``transform`` of the counts."""
    transform = spec["transform"] if spec["likelihood"] == "gaussian" else None
    return cell_data(X, obs, transform=transform, vocab=vocab, device=device)


def checked_counts(adata, spec: Mapping, *, name: str, path: str | None = None, kind: str = "dataset"):
    """(raw counts as CSR, the vocabulary of the model's covariates fixed from these cells), checked."""
    X = sp.csr_matrix(counts_matrix(adata))
    check_counts(X, adata.obs, name=name, path=path, kind=kind)
    return X, vocabulary(adata.obs, covariates(spec), name=name, path=path, kind=kind)


def prepare(adata, spec: Mapping, *, name: str, path: str | None = None, device="cpu", kind: str = "dataset"):
    """(CellData on ``device``, vocabulary) for training a model of ``spec``, the vocabulary fixed from these
    cells. ``name`` is what the cells are (``kind``: a dataset, or a mix), for messages."""
    X, vocab = checked_counts(adata, spec, name=name, path=path, kind=kind)
    return model_input(X, adata.obs, spec, vocab, device=device), vocab
