"""recount3: one project's read counts as written by ``R/recount3.R`` (bulk RNA-seq samples x genes).

The R script reads the project from a recount3 mirror, turns the coverage sums into read counts exactly as
recount3's ``compute_read_counts()`` does (``round(gene_sums / recount_qc.star.average_mapped_length)``),
filters genes (edgeR ``filterByExpr`` or a min-samples rule) and writes ``raw_dir``:

- ``counts.tsv.gz``: integer read counts, genes x samples (``gene_id`` column, then one column per sample)
- ``samples.tsv``: the merged recount3 metadata (``rail_id``, ``external_id``, ``study``, ``sra.*``,
  ``recount_project.*``, ``recount_qc.*``, ``recount_seq_qc.*``, ``recount_pred.*``, ``BigWigURL``)
- ``genes.tsv``: the kept genes (``gene_id`` as in recount3, e.g. ``ENSG00000000003.14``, ``gene_name``,
  ``gene_type``, ``bp_length`` ...)
- ``filter.json``: the project, URLs and the genes before/after the filter

``parse`` returns samples x genes with ``obs`` indexed by ``external_id`` (every metadata column; a ``/`` in a
column name becomes ``_`` because h5 stores refuse it), ``var`` indexed by the unique gene symbol (the Ensembl
ID where the annotation has no symbol) with ``gene_ids``, and the filter record in ``uns["recount3"]``.
"""

from __future__ import annotations

import csv
import gzip
import json
import logging
import zlib
from collections.abc import Mapping
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from scmix.errors import ScmixInputError
from scmix.io import as_csr_counts, check_integer_counts

log = logging.getLogger("scmix.data.sources.recount3")

FILES = ("counts.tsv.gz", "samples.tsv", "genes.tsv", "filter.json")
NA_VALUES = ["NA", ""]


def _read_table(name: str, path: Path, **kwargs) -> pd.DataFrame:
    try:
        return pd.read_csv(
            path,
            sep="\t",
            quoting=csv.QUOTE_NONE,
            keep_default_na=False,
            na_values=NA_VALUES,
            low_memory=False,
            **kwargs,
        )
    except (OSError, EOFError, zlib.error, gzip.BadGzipFile, ValueError, pd.errors.ParserError) as err:
        raise ScmixInputError(f"cannot read table: {err}", dataset=name, path=str(path)) from err


def _h5_safe(df: pd.DataFrame) -> pd.DataFrame:
    """Text columns as str with NaN for missing (h5 cannot store mixed objects); all-missing ones as float NaN."""
    for col in df.columns:
        if df[col].dtype == object:
            values = df[col]
            df[col] = np.nan if values.isna().all() else values.where(values.isna(), values.astype(str))
    return df


def read_counts(name: str, path: Path) -> pd.DataFrame:
    """The genes x samples count table, every value checked to be a non-negative integer."""
    counts = _read_table(name, path, index_col=0, dtype={"gene_id": str})
    if counts.index.name != "gene_id":
        raise ScmixInputError(
            f"first column is '{counts.index.name}', expected gene_id (a count table written by R/recount3.R)",
            dataset=name,
            path=str(path),
        )
    if counts.shape[0] == 0 or counts.shape[1] == 0:
        raise ScmixInputError(f"count table is empty ({counts.shape[0]} genes x {counts.shape[1]} samples)",
                              dataset=name, path=str(path))  # fmt: skip
    if counts.index.hasnans or not counts.index.is_unique:
        raise ScmixInputError("gene_id column has missing or duplicated IDs", dataset=name, path=str(path))
    non_numeric = [c for c in counts.columns if not pd.api.types.is_numeric_dtype(counts[c])]
    if non_numeric:
        raise ScmixInputError(f"non-numeric counts in sample columns {non_numeric[:5]}", dataset=name, path=str(path))
    check_integer_counts(counts.to_numpy(), dataset=name, path=str(path))
    return counts


def read_samples(name: str, path: Path) -> pd.DataFrame:
    samples = _read_table(name, path, dtype={"external_id": str, "study": str})
    if "external_id" not in samples.columns:
        raise ScmixInputError("sample table has no external_id column", dataset=name, path=str(path))
    if samples["external_id"].isna().any() or not samples["external_id"].is_unique:
        raise ScmixInputError("external_id has missing or duplicated sample IDs", dataset=name, path=str(path))
    samples = samples.set_index("external_id", drop=False)
    samples.index.name = None
    renamed = {c: c.replace("/", "_") for c in samples.columns if "/" in c}
    clash = sorted(set(renamed.values()) & set(samples.columns))
    if clash or len(set(renamed.values())) < len(renamed):
        raise ScmixInputError(f"renaming '/' in column names would clash: {clash}", dataset=name, path=str(path))
    return _h5_safe(samples.rename(columns=renamed))


def read_genes(name: str, path: Path) -> pd.DataFrame:
    genes = _read_table(name, path, dtype={"gene_id": str})
    if "gene_id" not in genes.columns:
        raise ScmixInputError("gene table has no gene_id column", dataset=name, path=str(path))
    return _h5_safe(genes)


def gene_symbols(genes: pd.DataFrame) -> pd.Index:
    """Unique var names: the gene symbol, else the Ensembl ID; repeats get -1, -2, ... (anndata's rule)."""
    names = genes["gene_name"] if "gene_name" in genes.columns else pd.Series(np.nan, index=genes.index)
    names = names.where(names.notna() & (names.astype(str) != ""), genes["gene_id"]).astype(str)
    return ad.utils.make_index_unique(pd.Index(names.to_numpy(), name=None))


def parse(name: str, spec: Mapping, raw_dir: Path) -> ad.AnnData:
    raw_dir = Path(raw_dir)
    missing = [f for f in FILES if not (raw_dir / f).is_file()]
    if missing:
        raise ScmixInputError(
            f"recount3 output folder lacks {missing} (written by R/recount3.R)", dataset=name, path=str(raw_dir)
        )
    try:
        info = json.loads((raw_dir / "filter.json").read_text())
    except (OSError, ValueError) as err:
        raise ScmixInputError(
            f"cannot read filter.json: {err}", dataset=name, path=str(raw_dir / "filter.json")
        ) from err
    if spec.get("project") and info.get("project") != spec["project"]:
        raise ScmixInputError(
            f"folder holds project {info.get('project')!r} but the config asks for {spec['project']!r}",
            dataset=name,
            path=str(raw_dir),
        )

    counts = read_counts(name, raw_dir / "counts.tsv.gz")
    samples = read_samples(name, raw_dir / "samples.tsv")
    genes = read_genes(name, raw_dir / "genes.tsv")

    if list(counts.columns) != list(samples["external_id"]):
        raise ScmixInputError(
            f"count columns ({counts.shape[1]}: {list(counts.columns[:3])}...) do not match samples.tsv's "
            f"external_id ({len(samples)}: {list(samples['external_id'][:3])}...)",
            dataset=name,
            path=str(raw_dir / "counts.tsv.gz"),
        )
    if list(counts.index) != list(genes["gene_id"]):
        raise ScmixInputError(
            f"count rows ({counts.shape[0]} genes) do not match genes.tsv ({len(genes)} genes) in order",
            dataset=name,
            path=str(raw_dir / "genes.tsv"),
        )
    for key, n in (("samples", counts.shape[1]), ("genes_after", counts.shape[0])):
        if key in info and info[key] != n:
            raise ScmixInputError(f"filter.json says {key}={info[key]} but the counts have {n}",
                                  dataset=name, path=str(raw_dir / "filter.json"))  # fmt: skip

    var = genes.copy()
    var.insert(0, "gene_ids", var.pop("gene_id"))
    var.index = gene_symbols(genes)
    X = as_csr_counts(sp.csr_matrix(counts.to_numpy(dtype=np.int64).T))
    adata = ad.AnnData(X=X, obs=samples, var=var)
    adata.uns["recount3"] = {k: v for k, v in info.items() if isinstance(v, str | int | float | bool)}
    log.info(
        "%s: recount3 %s, %d samples x %d genes (%s filter kept %s of %s)",
        name,
        info.get("project"),
        adata.n_obs,
        adata.n_vars,
        info.get("filter"),
        info.get("genes_after"),
        info.get("genes_before"),
    )
    return adata
