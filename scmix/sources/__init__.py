"""Dataset sources. Each source module defines ``parse(name, spec, raw_dir) -> AnnData``.

The contract every parser keeps:
- ``name`` is the dataset's name in the config, ``spec`` its config entry (a dict, with ``source``),
  ``raw_dir`` the folder the download rule filled (``resources/raw/{dataset}/``): the fetched files,
  with archives already extracted safely next to them.
- It returns cells (or bulk samples) x genes with **raw integer counts** in ``X`` as CSR, ``var`` indexed
  by gene symbol (unique) with a ``gene_ids`` column (Ensembl IDs where the source has them), and
  ``obs`` holding every label the source provides. A source of non-count values (GEO SOFT tables)
  sets ``adata.uns["count_data"] = False`` instead; count checks are then skipped and downstream count
  models refuse it.
- Bad input raises ``scmix.errors.ScmixInputError`` naming the dataset and the file.
``parse_dataset`` below dispatches by ``spec["source"]`` and applies the checks common to all sources.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Mapping
from pathlib import Path

import anndata as ad

from scmix.errors import ScmixInputError
from scmix.io import as_csr_counts, check_integer_counts
from scmix.sources.registry import SOURCES

log = logging.getLogger("scmix.sources")


def parser(source: str, dataset: str):
    if source not in SOURCES:
        raise ScmixInputError(f"unknown source type '{source}'; known: {sorted(SOURCES)}", dataset=dataset)
    return importlib.import_module(f"scmix.sources.{SOURCES[source]}").parse


def parse_dataset(name: str, spec: Mapping, raw_dir: str | Path) -> ad.AnnData:
    adata = parser(spec.get("source"), name)(name, dict(spec), Path(raw_dir))
    if adata.uns.get("count_data", True):
        check_integer_counts(adata.X, dataset=name, path=str(raw_dir))
        adata.X = as_csr_counts(adata.X)
        adata.uns["count_data"] = True
    if not adata.var_names.is_unique:
        raise ScmixInputError("gene names are not unique after parsing", dataset=name, path=str(raw_dir))
    adata.obs["dataset"] = name
    adata.uns["dataset"] = name
    adata.uns["source_type"] = spec.get("source")
    log.info("%s: parsed %d x %d from %s", name, adata.n_obs, adata.n_vars, raw_dir)
    return adata
