"""R data objects (``source: rdata``): an ``.rds``, ``.rda`` or ``.RData`` file (gzip, bzip2 or xz compressed or
not: R's own ``readRDS``/``load`` read them), read in the parse job through rpy2 (R embedded in the job's Python).

Objects read:

- ``SingleCellExperiment`` / ``SummarizedExperiment``: the assay ``assay`` (default ``counts``); ``colData`` ->
  obs, ``rowData`` -> var. Reduced dimensions, alternative experiments and metadata are ignored.
- ``Seurat`` (SeuratObject v3/v4 ``Assay``, tested on v4 objects; a v5 ``Assay5`` is read through ``LayerData``,
  untested: Debian's SeuratObject is 4.1.3): the ``counts`` of assay
  ``assay`` (default ``RNA``); ``meta.data`` -> obs, the assay's ``meta.features`` -> var. Reductions, graphs
  and the normalised ``data`` slot are ignored.
- a bare ``dgCMatrix`` (or any Matrix sparse matrix, or a base ``matrix``), genes x cells, with
  ``obs_object``: a second object of the file, a ``data.frame`` of cell metadata whose row names are the
  matrix's column names (the cells).

Keys: ``file`` (default: the only R data file in the raw folder), ``object`` (the object of an .rda/.RData;
default the only one, not counting ``obs_object``), ``assay``, ``obs_object``, ``gene_symbol_column`` /
``gene_id_column`` (var columns; default: the first of the usual names, ``Symbol``, ``gene_symbols``, ... and
``ID``, ``gene_ids``, ..., else the row names).

Why an own converter rather than anndata2ri: anndata2ri (2.0.1) converts SingleCellExperiments only; on a Seurat
object it fails (KeyError on the S4 object), and a bare matrix with a data.frame beside it is not an SCE either, so
two of the four object types would need a converter of their own anyway. It also brings its own converters on top
of rpy2's and is released in step with particular rpy2 and anndata versions, while Debian's R 4.2 already holds rpy2
below its newest release. This converter needs only rpy2 and numpy, and converts only what the workflow keeps: the
counts and the two label tables (anndata2ri converts every assay and the reduced dimensions too). A sparse count
matrix crosses as its three slots (``i``, ``p``, ``x``): genes x cells in CSC order is exactly cells x genes in
CSR order, so scipy takes the arrays as they are and nothing is densified; a dense R matrix is dense already and
becomes CSR at once. Measured on a PBMC 3k SingleCellExperiment .rds (2,638 x 13,714, 2.2 M non-zeros; 2 shared
cores): both take about 0.4 s once R runs with SingleCellExperiment loaded; the first read of a process takes 7-10 s
either way, almost all of it R loading SingleCellExperiment's namespace.

R-side failures become one ``ScmixInputError`` line naming the file: a file that is no R data file, a missing
object or assay, and an R package missing for the object's class (with the ``apt-get install`` that adds it).
Non-integer counts are refused by ``parse_dataset``'s common check.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Mapping
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from scmix.data.sources.checks import check_unique_cells
from scmix.data.sources.registry import SOURCE_FILE
from scmix.data.sources.tables import _gene_index, resolve_file
from scmix.errors import ScmixInputError

log = logging.getLogger("scmix.data.sources.rdata")

SUFFIXES = tuple(s + z for s in (".rds", ".rda", ".rdata") for z in ("", ".gz", ".bz2", ".xz"))
SYMBOL_COLUMNS = ("Symbol", "symbol", "SYMBOL", "gene_symbols", "gene_symbol", "Gene", "gene", "gene_name",
                  "gene_names", "gene_short_name", "features")  # fmt: skip
ID_COLUMNS = ("ID", "id", "gene_ids", "gene_id", "GeneID", "ENSEMBL", "Ensembl", "ensembl_id", "ensembl_gene_id")
# R packages from Bioconductor (Debian: r-bioc-*); every other one is taken to be on CRAN (r-cran-*)
BIOCONDUCTOR = {"SingleCellExperiment", "SummarizedExperiment", "S4Vectors", "IRanges", "GenomicRanges",
                "DelayedArray", "HDF5Array", "Biobase", "BiocGenerics", "MatrixGenerics"}  # fmt: skip
RPY2_PIN = "rpy2==3.6.6"  # as pyproject.toml's rdata extra

R_CODE = r"""
local({
scmix_load <- function(path) {
  con <- gzfile(path, "rb")
  magic <- tryCatch(readBin(con, "raw", 5L), error = function(e) raw(0), finally = close(con))
  starts <- function(s) length(magic) >= nchar(s) && identical(magic[seq_len(nchar(s))], charToRaw(s))
  if (starts("RDX") || starts("RDA") || starts("RDB")) {
    env <- new.env()
    names <- load(path, envir = env)
    return(list(kind = "rda", objects = mget(names, envir = env)))
  }
  if (starts("X\n") || starts("A\n") || starts("B\n")) return(list(kind = "rds", objects = list(readRDS(path))))
  stop("scmix: not an R data file: its first bytes are neither readRDS's nor load()'s header")
}

scmix_describe <- function(objects) vapply(objects, function(x) paste(class(x), collapse = "/"), "")

scmix_require <- function(x) {
  pkg <- attr(class(x), "package")
  if (isS4(x) && !is.null(pkg) && !(pkg %in% c(".GlobalEnv", "methods", "base"))) {
    if (!requireNamespace(pkg, quietly = TRUE)) stop(sprintf("scmix-missing:%s:%s", pkg, class(x)[1]))
  }
}

scmix_columns <- function(df) {
  cols <- list()
  names <- character(0)
  skipped <- character(0)
  for (k in seq_along(df)) {
    col <- df[[k]]
    nm <- names(df)[k]
    if (is.factor(col)) {
      entry <- list("factor", as.integer(col), as.character(levels(col)))
    } else if (!is.null(oldClass(col)) && is.atomic(col)) {  # Date, POSIXct, ...: as text
      entry <- list("character", ifelse(is.na(col), "", as.character(col)), is.na(col))
    } else if (is.character(col)) {
      entry <- list("character", ifelse(is.na(col), "", col), is.na(col))
    } else if (is.logical(col)) {
      entry <- list("logical", as.integer(col))
    } else if (is.integer(col)) {
      entry <- list("integer", col)
    } else if (is.double(col)) {
      entry <- list("double", col)
    } else {
      skipped <- c(skipped, nm)
      next
    }
    cols[[length(cols) + 1L]] <- entry
    names <- c(names, nm)
  }
  rn <- attr(df, "row.names")
  list(columns = cols, names = names, rownames = if (is.character(rn)) rn else character(0), skipped = skipped,
       nrow = nrow(df))
}

scmix_matrix <- function(m) {
  if (is.matrix(m) && (is.numeric(m) || is.logical(m))) {
    storage.mode(m) <- "double"
    return(list(sparse = FALSE, x = as.vector(m), dim = dim(m), rownames = rownames(m), colnames = colnames(m)))
  }
  scmix_require(m)
  if (!is(m, "dgCMatrix")) {
    m <- tryCatch(
      if (is(m, "sparseMatrix")) as(as(as(m, "CsparseMatrix"), "generalMatrix"), "dMatrix") else as(m, "dgCMatrix"),
      error = function(e) stop(sprintf("scmix: cannot turn the counts (class %s) into a sparse matrix: %s",
                                       class(m)[1], conditionMessage(e))))
  }
  list(sparse = TRUE, i = m@i, p = m@p, x = m@x, dim = dim(m), rownames = rownames(m), colnames = colnames(m))
}

scmix_extract <- function(x, assay, meta) {
  scmix_require(x)
  requireNamespace("Matrix", quietly = TRUE)
  bare <- is.matrix(x) || is(x, "Matrix")
  if (!is.null(meta) && !bare) stop(sprintf(paste("scmix: obs_object applies to a bare count matrix; a %s carries",
                                                  "its own cell metadata (remove obs_object)"), class(x)[1]))
  if (is(x, "SummarizedExperiment")) {
    kind <- "SummarizedExperiment"
    if (is.null(assay)) assay <- "counts"
    available <- SummarizedExperiment::assayNames(x)
    if (!(assay %in% available)) stop(sprintf("scmix: the %s has no assay '%s' (its assays: %s); set 'assay'",
                                             class(x)[1], assay, paste(available, collapse = ", ")))
    m <- SummarizedExperiment::assay(x, assay, withDimnames = TRUE)
    obs <- as.data.frame(SummarizedExperiment::colData(x), optional = TRUE)
    var <- as.data.frame(SummarizedExperiment::rowData(x), optional = TRUE)
  } else if (is(x, "Seurat")) {
    kind <- "Seurat"
    if (is.null(assay)) assay <- "RNA"
    available <- SeuratObject::Assays(x)
    if (!(assay %in% available)) stop(sprintf("scmix: the Seurat object has no assay '%s' (its assays: %s); %s",
                                             assay, paste(available, collapse = ", "), "set 'assay'"))
    a <- x[[assay]]
    m <- if (inherits(a, "Assay5")) SeuratObject::LayerData(x, assay = assay, layer = "counts")
         else SeuratObject::GetAssayData(x, slot = "counts", assay = assay)
    if (prod(dim(m)) == 0) stop(sprintf("scmix: the Seurat assay '%s' holds no counts (only normalised data?)", assay))
    obs <- x@meta.data
    var <- if (methods::.hasSlot(a, "meta.features")) a@meta.features else data.frame(row.names = rownames(m))
  } else if (bare) {
    kind <- class(x)[1]
    if (!is.null(assay)) stop(sprintf("scmix: 'assay' applies to SingleCellExperiment and Seurat objects, not to a %s",
                                      kind))
    m <- x
    obs <- if (is.null(meta)) data.frame(row.names = seq_len(ncol(x))) else meta
    var <- data.frame(row.names = seq_len(nrow(x)))
  } else {
    stop(sprintf(paste("scmix: an object of class %s is none of SingleCellExperiment, SummarizedExperiment, Seurat,",
                       "dgCMatrix or matrix"), paste(class(x), collapse = "/")))
  }
  list(kind = kind, matrix = scmix_matrix(m), obs = scmix_columns(obs), var = scmix_columns(var))
}

list(load = scmix_load, describe = scmix_describe, extract = scmix_extract)
})
"""


def _apt_name(package: str) -> str:
    return f"r-{'bioc' if package in BIOCONDUCTOR else 'cran'}-{package.lower()}"


def _r(name: str, path: Path):
    """rpy2's robjects, R started; a missing or broken rpy2 is an input error naming what to install.

    Starting R writes R's environment into the process's (R_HOME, R_LIBS_*, ... which R reads while it runs, and
    LD_LIBRARY_PATH with R's and the system's library folders). LD_LIBRARY_PATH is put back as it was once R runs
    (the loader of this process read it at start-up already), so that a program this process starts later (a
    Snakemake job, a test's subprocess) does not load the system's libraries (libssl) in place of its own."""
    library_path = os.environ.get("LD_LIBRARY_PATH")
    try:
        import rpy2.robjects as ro
        from rpy2.rinterface_lib import callbacks
    except ImportError as err:
        raise ScmixInputError(f"reading R data files needs rpy2, which is not installed ({err}): pip install "
                              f"'{RPY2_PIN}' (R itself: apt-get install r-base-core)", dataset=name,
                              path=str(path)) from err  # fmt: skip
    except Exception as err:  # rpy2 present, but R cannot be started (R_HOME, libR.so)
        raise ScmixInputError(f"rpy2 cannot start R ({type(err).__name__}: {str(err).strip()}); install R "
                              "(apt-get install r-base-core) or set R_HOME",
                              dataset=name, path=str(path)) from err  # fmt: skip
    finally:
        if library_path is None:
            os.environ.pop("LD_LIBRARY_PATH", None)
        else:
            os.environ["LD_LIBRARY_PATH"] = library_path
    # R's console output (warnings, messages) goes to the log, not to the job's stderr
    callbacks.consolewrite_warnerror = lambda text: log.debug("R: %s", text.rstrip())
    callbacks.consolewrite_print = lambda text: log.debug("R: %s", text.rstrip())
    return ro


def _r_error(name: str, path: Path, err: Exception) -> ScmixInputError:
    text = str(err).strip()
    missing = re.search(r"scmix-missing:([\w.]+):([\w.]+)", text)
    # readRDS/load themselves stop on an object whose class's package cannot be loaded
    unloadable = re.search(
        r"(?:unable to (?:find|load) required package|there is no package called) ['‘\"]([\w.]+)", text
    )
    if missing or unloadable:
        package, why = (
            (missing[1], f"the object's class {missing[2]}")
            if missing
            else (unloadable[1], "R needs it to read the object")
        )
        return ScmixInputError(f"the R package {package} is not installed ({why}): apt-get install "
                               f"{_apt_name(package)}", dataset=name, path=str(path))  # fmt: skip
    ours = re.search(r"scmix: (.*)", text, flags=re.S)
    message = ours[1] if ours else re.sub(r"^Error in [^:]*:\s*", "", text)
    message = " ".join(message.split())
    if not ours:
        message = f"R cannot read it: {message}"
    return ScmixInputError(message, dataset=name, path=str(path))


def _vector(v) -> np.ndarray:
    """A copy of an R numeric vector (a view would point into memory R may free once the object is collected)."""
    return np.array(v.memoryview(), copy=True) if len(v) else np.array([])


def _strings(v) -> list[str]:
    return [str(s) for s in v]


def _frame(payload) -> pd.DataFrame:
    """A data.frame as ``scmix_columns`` laid it out, as pandas (factors as categoricals, NA as missing)."""
    names = _strings(payload.rx2("names"))
    rownames = _strings(payload.rx2("rownames"))
    columns = {}
    for key, entry in zip(names, payload.rx2("columns"), strict=True):
        kind = entry[0][0]
        if kind == "factor":
            codes = _vector(entry[1]).astype(np.int64)
            codes = np.where(codes == np.iinfo(np.int32).min, 0, codes) - 1
            values = pd.Categorical.from_codes(codes, categories=pd.Index(_strings(entry[2])).unique())
        elif kind == "character":
            na = _vector(entry[2]).astype(bool)
            values = np.array(_strings(entry[1]), dtype=object)
            values[na] = np.nan
        elif kind in ("integer", "logical"):
            ints = _vector(entry[1]).astype(np.int64)
            na = ints == np.iinfo(np.int32).min
            if na.any():
                values = np.where(na, np.nan, ints.astype(float))
            else:
                values = ints.astype(bool) if kind == "logical" else ints
        else:
            values = _vector(entry[1]).astype(float)
        columns[key] = values
    index = pd.Index(rownames) if rownames else pd.RangeIndex(int(payload.rx2("nrow")[0]))
    frame = pd.DataFrame(columns, index=index)
    frame.columns = pd.Index([str(c) if c else f"column_{i}" for i, c in enumerate(frame.columns)])
    frame = frame.loc[:, ~frame.columns.duplicated()]
    skipped = _strings(payload.rx2("skipped"))
    if skipped:
        log.info("columns that are not plain vectors left out: %s", skipped)
    return frame


def _counts(name: str, path: Path, payload) -> tuple[sp.csr_matrix, list[str] | None, list[str] | None]:
    """Cells x genes CSR from the genes x cells R matrix, with its row (gene) and column (cell) names."""
    n_genes, n_cells = (int(d) for d in _vector(payload.rx2("dim")))
    x = _vector(payload.rx2("x")).astype(np.float64, copy=False)
    if payload.rx2("sparse")[0]:
        # dgCMatrix genes x cells (CSC: row indices i, column pointers p) is cells x genes CSR as it stands
        i = _vector(payload.rx2("i")).astype(np.int32, copy=False)
        p = _vector(payload.rx2("p")).astype(np.int64, copy=False)
        X = sp.csr_matrix((x, i, p), shape=(n_cells, n_genes))
    else:
        X = sp.csr_matrix(x.reshape(n_cells, n_genes))  # R's column-major genes x cells: C-order cells x genes
    names = [payload.rx2(k) for k in ("rownames", "colnames")]
    genes, cells = (None if n.typeof == 0 else _strings(n) for n in names)  # NILSXP: no names
    return X, genes, cells


def _choose(name: str, path: Path, loaded, spec: Mapping, describe):
    """The object to read, and the obs_object's data.frame (or None)."""
    kind = loaded.rx2("kind")[0]
    objects = loaded.rx2("objects")
    wanted, obs_name = spec.get("object"), spec.get("obs_object")
    if kind == "rds":
        for key in ("object", "obs_object"):
            if spec.get(key):
                raise ScmixInputError(f"'{key}' names an object of an .rda/.RData file; an .rds holds one object "
                                      "(remove the key, or save the objects together with save())", dataset=name,
                                      path=str(path))  # fmt: skip
        return objects[0], None
    names = list(objects.names) if len(objects) else []
    classes = dict(zip(names, _strings(describe(objects)), strict=True))
    listing = ", ".join(f"{n} ({c})" for n, c in classes.items()) or "none"
    for key, value in (("object", wanted), ("obs_object", obs_name)):
        if value is not None and value not in classes:
            raise ScmixInputError(f"'{key}: {value}' is not an object of the file; it holds {listing}",
                                  dataset=name, path=str(path))  # fmt: skip
    if wanted is None:
        candidates = [n for n in names if n != obs_name]
        if len(candidates) != 1:
            raise ScmixInputError(f"the file holds {len(names)} objects: {listing}; set 'object' to the one to read",
                                  dataset=name, path=str(path))  # fmt: skip
        wanted = candidates[0]
    meta = None
    if obs_name is not None:
        if not classes[obs_name].split("/")[0] == "data.frame":
            raise ScmixInputError(f"obs_object '{obs_name}' is a {classes[obs_name]}, not a data.frame of cell "
                                  "metadata", dataset=name, path=str(path))  # fmt: skip
        meta = objects.rx2(obs_name)
    log.info("%s: reading object '%s' (%s) of %s", name, wanted, classes[wanted], path)
    return objects.rx2(wanted), meta


def _var(name: str, path: Path, var: pd.DataFrame, genes: list[str] | None, spec: Mapping) -> pd.DataFrame:
    if genes is not None:
        var.index = pd.Index(genes)
    symbol = spec.get("gene_symbol_column") or next((c for c in SYMBOL_COLUMNS if c in var.columns), None)
    gene_id = spec.get("gene_id_column") or next((c for c in ID_COLUMNS if c in var.columns), None)
    if genes is None and symbol is None and gene_id is None:
        raise ScmixInputError("the genes have neither row names nor a symbol or ID column; set gene_symbol_column",
                              dataset=name, path=str(path))  # fmt: skip
    if genes is None:
        var.index = pd.Index(var[symbol if symbol is not None else gene_id].astype(str))
    var.index = var.index.astype(str)
    var = _gene_index(name, path, var, gene_id, symbol)
    var.index.name = None
    return var


def parse(name: str, spec: Mapping, raw_dir: Path) -> ad.AnnData:
    raw_dir = Path(raw_dir)
    path = resolve_file(name, raw_dir, spec.get("file"), key="file", suffixes=SUFFIXES)
    if spec.get("obs_object") is not None and spec.get("obs_object") == spec.get("object"):
        raise ScmixInputError("'object' and 'obs_object' name the same object", dataset=name, path=str(path))
    ro = _r(name, path)
    from rpy2.rinterface_lib.embedded import RRuntimeError

    start = time.perf_counter()
    funcs = ro.r(R_CODE)
    try:
        loaded = funcs.rx2("load")(str(path))
        obj, meta = _choose(name, path, loaded, spec, funcs.rx2("describe"))
        assay = spec.get("assay")
        parts = funcs.rx2("extract")(obj, ro.NULL if assay is None else assay, ro.NULL if meta is None else meta)
        kind = parts.rx2("kind")[0]
        X, genes, cells = _counts(name, path, parts.rx2("matrix"))
        obs, var = _frame(parts.rx2("obs")), _frame(parts.rx2("var"))
    except RRuntimeError as err:
        raise _r_error(name, path, err) from None
    if (obs.shape[0] != X.shape[0] and meta is None) or var.shape[0] != X.shape[1]:
        raise ScmixInputError(f"the object's metadata ({obs.shape[0]} cells, {var.shape[0]} genes) does not fit "
                              f"its {X.shape[1]} x {X.shape[0]} counts", dataset=name, path=str(path))  # fmt: skip
    if cells is None:
        if meta is not None:
            raise ScmixInputError("the count matrix has no column names to join obs_object on", dataset=name,
                                  path=str(path))  # fmt: skip
        cells = list(obs.index) if len(obs.index) == X.shape[0] else [str(i) for i in range(X.shape[0])]
    cells = pd.Index(cells).astype(str)
    check_unique_cells(cells, dataset=name, path=str(path))  # before obs_object is joined on them
    if meta is not None:
        missing = ~cells.isin(obs.index)
        if missing.any():
            raise ScmixInputError(f"{int(missing.sum())} of {len(cells)} cells (e.g. {cells[missing][0]!r}) have no "
                                  f"row in obs_object '{spec['obs_object']}'; its row names must be the matrix's "
                                  "column names", dataset=name, path=str(path))  # fmt: skip
        if not obs.index.is_unique:
            raise ScmixInputError(f"obs_object '{spec['obs_object']}' has duplicated row names", dataset=name,
                                  path=str(path))  # fmt: skip
        obs = obs.loc[cells]
    obs.index = cells
    obs.index.name = None
    var = _var(name, path, var, genes, spec)
    adata = ad.AnnData(X=X, obs=obs, var=var, uns={SOURCE_FILE: str(path)})
    log.info("%s: %d cells x %d genes from %s (%s, %.1f s)", name, adata.n_obs, adata.n_vars, path, kind,
             time.perf_counter() - start)  # fmt: skip
    return adata
