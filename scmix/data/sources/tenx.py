"""10x Genomics: v1 MEX (matrix.mtx, genes.tsv, barcodes.tsv), v3 gz MEX (features.tsv.gz) and .h5,
read with scanpy, with the shapes checked first and an optional annotation table joined on barcode."""

from __future__ import annotations

import gzip
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

import anndata as ad
import pandas as pd
import scipy.io

from scmix.data.sources.checks import check_unique_cells
from scmix.data.sources.registry import SOURCE_FILE
from scmix.data.urls import local_name
from scmix.errors import ScmixInputError
from scmix.io import require_unique

log = logging.getLogger("scmix.data.sources.tenx")
MATRIX = ("matrix.mtx.gz", "matrix.mtx")


def _open(path: Path):
    return gzip.open(path, "rt") if path.name.endswith(".gz") else open(path)


def _first(folder: Path, names) -> Path | None:
    return next((folder / n for n in names if (folder / n).exists()), None)


class Mex(NamedTuple):
    """One MEX triplet: a folder and the file-name prefix its three files share ('' for plain 10x names;
    e.g. 'GSM123_gem1_' for GEO's flat layout GSM123_gem1_matrix.mtx.gz, ..._features.tsv.gz, ...)."""

    folder: Path
    prefix: str

    @property
    def label(self) -> str:
        return self.prefix.rstrip("_.-") or self.folder.name

    def __str__(self) -> str:  # how messages name it: the folder, and the shared prefix of its files
        return str(self.folder / f"{self.prefix}*") if self.prefix else str(self.folder)


def mex_sets(root: Path) -> list[Mex]:
    found = set()
    for n in MATRIX:
        for p in root.rglob(f"*{n}"):
            if not p.name.startswith("."):
                found.add(Mex(p.parent, p.name[: -len(n)]))
    return sorted(found)


def locate(name: str, spec: Mapping, raw_dir: Path) -> Path | Mex:
    """The MEX set or .h5 file to read: ``spec['path']`` (relative to raw_dir) or the only candidate."""
    if spec.get("path"):
        path = raw_dir / spec["path"]
        if not path.exists():
            raise ScmixInputError(f"configured path '{spec['path']}' not found", dataset=name, path=str(path))
        return Mex(path, "") if path.is_dir() else path
    candidates = mex_sets(raw_dir) + sorted(raw_dir.rglob("*.h5"))
    if len(candidates) != 1:
        found = [str((c.folder / c.prefix) if isinstance(c, Mex) else c.relative_to(raw_dir)) for c in candidates]
        what = "no 10x matrix (matrix.mtx[.gz] folder or .h5)" if not found else f"several 10x matrices {found}"
        raise ScmixInputError(f"{what}; set 'path' to choose", dataset=name, path=str(raw_dir))
    return candidates[0]


def check_mex_shape(name: str, mex: Mex) -> tuple[int, int]:
    """Compare the MatrixMarket header with the feature and barcode files; return (features, barcodes)."""
    folder, pre = mex
    matrix = _first(folder, [pre + n for n in MATRIX])
    features = _first(folder, [pre + n for n in ("features.tsv.gz", "genes.tsv.gz", "features.tsv", "genes.tsv")])
    barcodes = _first(folder, [pre + n for n in ("barcodes.tsv.gz", "barcodes.tsv")])
    for what, path in (("features/genes", features), ("barcodes", barcodes)):
        if path is None:
            raise ScmixInputError(f"MEX folder has no {what} file", dataset=name, path=str(folder))
    try:
        n_rows, n_cols, _nnz, *_ = scipy.io.mminfo(str(matrix))
        with _open(features) as fh:
            n_features = sum(1 for line in fh if line.strip())
        with _open(barcodes) as fh:
            n_barcodes = sum(1 for line in fh if line.strip())
    except (OSError, EOFError, ValueError) as err:
        raise ScmixInputError(f"cannot read MEX files: {err}", dataset=name, path=str(folder)) from err
    if (n_rows, n_cols) != (n_features, n_barcodes):
        raise ScmixInputError(
            f"matrix is {n_rows} x {n_cols} but {features.name} lists {n_features} features and "
            f"{barcodes.name} {n_barcodes} barcodes",
            dataset=name,
            path=str(matrix),
        )
    return n_features, n_barcodes


def read_tenx(name: str, path: Path | Mex, gex_only: bool = True) -> ad.AnnData:
    import scanpy as sc

    try:
        if isinstance(path, Mex):
            check_mex_shape(name, path)
            adata = sc.read_10x_mtx(path.folder, var_names="gene_symbols", make_unique=True, gex_only=gex_only,
                                    prefix=path.prefix or None)  # fmt: skip
        else:
            adata = sc.read_10x_h5(path, gex_only=gex_only)
            adata.var_names_make_unique()
    except ScmixInputError:
        raise
    except (OSError, ValueError, KeyError, EOFError) as err:
        raise ScmixInputError(f"cannot read 10x data: {err}", dataset=name, path=str(path)) from err
    adata.var.index.name = "gene_symbols"
    adata.obs.index.name = "barcode"
    return adata


def join_labels(name: str, adata: ad.AnnData, labels: Mapping, raw_dir: Path) -> ad.AnnData:
    """Join an annotation table on barcode; error when fewer than ``min_match`` of its rows match."""
    file = raw_dir / (labels.get("name") or local_name(labels["url"]))
    sep = labels.get("sep") or ("\t" if ".tsv" in file.name or ".txt" in file.name else ",")
    try:
        table = pd.read_csv(file, sep=sep)
    except (OSError, ValueError) as err:
        raise ScmixInputError(f"cannot read annotation table: {err}", dataset=name, path=str(file)) from err
    column = labels.get("barcode_column") or table.columns[0]
    if column not in table:
        raise ScmixInputError(f"annotation has no column '{column}' (columns: {list(table.columns)})",
                              dataset=name, path=str(file))  # fmt: skip
    table[column] = table[column].astype(str)
    require_unique(table[column], f"barcodes in annotation column '{column}'", dataset=name, path=str(file))
    table = table.set_index(column)
    matched = table.index.isin(adata.obs_names)
    frac = matched.mean() if len(table) else 0.0
    min_match = float(labels.get("min_match", 0.9))
    if frac < min_match:
        hint = ""
        stripped = pd.Index(adata.obs_names.str.replace(r"-\d+$", "", regex=True))
        if table.index.str.replace(r"-\d+$", "", regex=True).isin(stripped).mean() > frac + 0.5:
            hint = " (they would match without the '-N' barcode suffix: check the barcode format)"
        raise ScmixInputError(
            f"only {matched.sum()} of {len(table)} annotation barcodes ({frac:.1%}) are in the matrix's "
            f"{adata.n_obs} barcodes; at least {min_match:.0%} must match{hint}",
            dataset=name,
            path=str(file),
        )
    table = table[matched]
    if not labels.get("keep_unlabelled", False):
        log.info("%s: keeping the %d annotated of %d barcodes", name, len(table), adata.n_obs)
        adata = adata[table.index].copy()
    for col in table.columns:
        values = table[col].reindex(adata.obs_names)
        adata.obs[col] = values.astype("category") if values.dtype == object else values
    return adata


def parse(name: str, spec: dict, raw_dir: Path) -> ad.AnnData:
    path = locate(name, spec, raw_dir)
    adata = read_tenx(name, path, gex_only=spec.get("gex_only", True))
    if spec.get("labels"):  # a barcode listed twice could not be joined on
        check_unique_cells(adata.obs_names, dataset=name, path=str(path))
        adata = join_labels(name, adata, spec["labels"], raw_dir)
    adata.uns[SOURCE_FILE] = str(path)
    return adata
