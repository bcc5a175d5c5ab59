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
- Bad input raises ``scmix.errors.ScmixInputError`` naming the dataset and the file. A parser may set
  ``adata.uns[SOURCE_FILE]`` to the file it read, for the messages of the checks below.
``parse_dataset`` below dispatches by ``spec["source"]`` and applies what is common to all sources: the checks
(``scmix.data.sources.checks``: no empty file, cells as rows, each cell named once; ``scmix.io.check_integer_counts``),
the cell selection (``obs_filter``, ``max_cells``, ``seed``: ``scmix.data.sources.select``), ``genes.strip_prefix`` (a
genome prefix such as ``mm10_`` taken off gene names and IDs), the dataset's ``obs_keys`` (its own column names
renamed to the workflow's: ``{cell_type: cluster_id}``) and its constant labels (``obs: {condition: stim}``).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import anndata as ad
import pandas as pd

from scmix.data.sources.checks import check_cells
from scmix.data.sources.registry import SELECTS_BEFORE_READING, SOURCE_FILE, SOURCES
from scmix.data.sources.select import select_cells
from scmix.errors import ScmixInputError
from scmix.io import as_csr_counts, check_integer_counts

log = logging.getLogger("scmix.data.sources")


def parser(source: str, dataset: str):
    if source not in SOURCES:
        raise ScmixInputError(f"unknown source type '{source}'; known: {sorted(SOURCES)}", dataset=dataset)
    return importlib.import_module(f"scmix.data.sources.{SOURCES[source]}").parse


def apply_obs_keys(adata: ad.AnnData, obs_keys: Mapping[str, str] | None, dataset: str) -> None:
    """Rename the source's obs columns to the workflow's keys (``{workflow key: source column}``), in place."""
    if not obs_keys:
        return
    obs = adata.obs
    for key, column in obs_keys.items():
        if key == "dataset":
            raise ScmixInputError("obs_keys cannot set 'dataset': the workflow sets it to the dataset's name; map the "
                                  "column to another key (e.g. batch)", dataset=dataset)  # fmt: skip
        if column not in obs:
            raise ScmixInputError(f"obs_keys.{key} names obs column '{column}', which the dataset does not have "
                                  f"(it has {sorted(map(str, obs.columns))}); correct obs_keys",
                                  dataset=dataset)  # fmt: skip
    replaced = [k for k in obs_keys if k in obs and k not in obs_keys.values()]
    if replaced:
        log.warning("dataset '%s': obs_keys replaces the source's own column%s %s", dataset,
                    "s" if len(replaced) > 1 else "", ", ".join(f"'{k}'" for k in replaced))  # fmt: skip
    mapped = {key: obs[column] for key, column in obs_keys.items()}
    sources = [c for c in obs_keys.values() if c not in obs_keys]
    adata.obs = obs.drop(columns=list(dict.fromkeys(sources + replaced))).assign(**mapped)
    log.info("dataset '%s': obs columns renamed by obs_keys: %s", dataset,
             ", ".join(f"{c} -> {k}" for k, c in obs_keys.items()))  # fmt: skip


def strip_gene_prefix(adata: ad.AnnData, prefixes: str | Sequence[str] | None, dataset: str) -> None:
    """Take a genome prefix (``genes.strip_prefix``) off the gene names, symbols and IDs that carry it, in place."""
    if not prefixes:
        return
    prefixes = [prefixes] if isinstance(prefixes, str) else list(prefixes)

    def strip(values) -> tuple[pd.Index, int]:
        values = pd.Index(values).astype(str)
        out, n = values, 0
        for p in prefixes:
            hit = out.str.startswith(p)
            n += int(hit.sum())
            out = pd.Index([v[len(p) :] if h else v for v, h in zip(out, hit, strict=True)])
        return out, n

    names, n = strip(adata.var_names)
    if n and names.has_duplicates:
        dup = names[names.duplicated()][0]
        raise ScmixInputError(f"with genes.strip_prefix {prefixes}, genes share the name '{dup}' (e.g. from two "
                              "genomes); keep the prefix, or choose one genome's genes", dataset=dataset)  # fmt: skip
    adata.var_names = names
    for column in ("gene_ids", "gene_symbols"):
        if column in adata.var:
            adata.var[column] = strip(adata.var[column])[0].to_numpy()
    log.info("dataset '%s': genes.strip_prefix %s taken off %d gene names", dataset, prefixes, n)


def apply_constant_obs(adata: ad.AnnData, labels: Mapping[str, str] | None, dataset: str) -> None:
    """Give every cell the dataset's constant labels (``obs: {condition: stim}``), in place. A label the cells
    already have (from the source, or renamed by ``obs_keys``) is never overwritten: the clash stops the parse."""
    if not labels:
        return
    for key, value in labels.items():
        if key == "dataset":
            raise ScmixInputError("obs cannot set 'dataset': the workflow sets it to the dataset's name; give the "
                                  "label another key (e.g. batch)", dataset=dataset)  # fmt: skip
        if key in adata.obs:
            raise ScmixInputError(f"obs sets '{key}: {value}' for every cell, but the dataset already has an obs "
                                  f"column '{key}' (from the source or obs_keys); drop '{key}' from obs, or map the "
                                  "source's column to another key with obs_keys", dataset=dataset)  # fmt: skip
    for key, value in labels.items():
        adata.obs[key] = pd.Categorical([str(value)] * adata.n_obs)
    log.info("dataset '%s': every cell labelled %s", dataset, ", ".join(f"{k} = {v!r}" for k, v in labels.items()))


def parse_dataset(name: str, spec: Mapping, raw_dir: str | Path, strip_prefix: str | Sequence[str] | None = None
                  ) -> ad.AnnData:  # fmt: skip
    """The dataset parsed by its source, then what every source gets, in this order: the checks of
    ``scmix.data.sources.checks`` (cells and genes at all, cells as rows, each cell named once); the cell selection
    (``obs_filter``, ``max_cells``: ``scmix.data.sources.select``; a source in ``SELECTS_BEFORE_READING`` chose its
    cells itself); ``genes.strip_prefix``; ``obs_keys``; the constant labels of ``obs``; the count checks."""
    source = spec.get("source")
    adata = parser(source, name)(name, dict(spec), Path(raw_dir))
    path = str(adata.uns.pop(SOURCE_FILE, raw_dir))
    check_cells(adata, spec, dataset=name, path=path)
    if source not in SELECTS_BEFORE_READING:
        adata = select_cells(adata, spec, dataset=name, path=path)
    strip_gene_prefix(adata, strip_prefix, name)
    apply_obs_keys(adata, spec.get("obs_keys"), name)
    apply_constant_obs(adata, spec.get("obs"), name)
    if adata.uns.get("count_data", True):
        check_integer_counts(adata.X, dataset=name, path=path, cells=adata.obs_names, genes=adata.var_names)
        adata.X = as_csr_counts(adata.X)
        adata.uns["count_data"] = True
    if not adata.var_names.is_unique:
        raise ScmixInputError("gene names are not unique after parsing", dataset=name, path=path)
    adata.obs["dataset"] = name
    adata.uns["dataset"] = name
    adata.uns["source_type"] = source
    log.info("%s: parsed %d x %d from %s", name, adata.n_obs, adata.n_vars, raw_dir)
    return adata
