"""Count tables: an existing AnnData file (``source: h5ad``) or a delimited counts table plus an optional
metadata table (``source: csv``), the usual shape of bulk RNA-seq data.

``source: h5ad`` keys: ``file`` (default: the one ``.h5ad`` under raw_dir), ``layer`` (counts in a layer
instead of ``X``), ``transpose`` (the file is genes x samples), ``gene_symbol_column`` / ``gene_id_column``
(var columns; default the var index for both), ``obs_filter`` (a pandas query on ``obs``, e.g.
``tissue == 'blood' and disease == 'normal'``) and ``max_cells`` with ``seed`` (a seeded subsample of the cells that
pass). The filter and the subsample are decided on ``obs`` alone; then only the kept rows' counts are read from
disk, ``READ_ROWS`` rows at a time, so memory follows the cells kept, not the file (counts stored as CSR or dense;
a CSC matrix is read whole first).

``source: csv`` keys: ``counts`` (file name), ``orientation`` (``genes_x_samples``, the default, or
``samples_x_genes``), ``sep`` (default: detected from the first lines, preferring the extension's),
``gene_id_column`` / ``gene_symbol_column`` (genes_x_samples; default the first column / none),
``counts_sample_column`` (samples_x_genes; default the first column), ``annotation_columns`` (non-count
columns of the counts table), ``metadata`` (file name), ``metadata_sep``, ``sample_id_column`` (metadata
column naming the sample; default its first column), ``sample_id_prefix`` / ``sample_id_suffix`` (text the
metadata's ids carry around the count table's sample names, removed before matching), ``missing_metadata``
(``error``, the default, or ``keep``: count samples without a metadata row keep empty labels).

An R-style table whose header is one field short (``write.csv`` row names) gets a first column ``row_names``.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import logging
import lzma
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata.io import read_elem, sparse_dataset

from scmix.data.sources.registry import SOURCE_FILE
from scmix.data.sources.select import choose, take_obs, wanted
from scmix.errors import ScmixInputError
from scmix.io import as_csr_counts, check_integer_counts, require_unique

log = logging.getLogger("scmix.data.sources.tables")

ORIENTATIONS = ("genes_x_samples", "samples_x_genes")
MISSING_METADATA = ("error", "keep")
ROW_NAMES = "row_names"
CHUNK_ROWS = 5000
READ_ROWS = 10_000  # rows of an h5ad's counts read at once when obs_filter/max_cells keep only some
SEPARATORS = {"tab": "\t", "\\t": "\t", "comma": ",", "semicolon": ";", "space": " "}


def parse(name: str, spec: Mapping, raw_dir: Path) -> ad.AnnData:
    source = spec.get("source")
    if source == "h5ad":
        return parse_h5ad(name, spec, Path(raw_dir))
    if source == "csv":
        return parse_csv(name, spec, Path(raw_dir))
    raise ScmixInputError(f"scmix.data.sources.tables reads source 'h5ad' or 'csv', not {source!r}", dataset=name)


# ---------------------------------------------------------------------------------------------- files


def resolve_file(name: str, raw_dir: Path, file, *, key: str, suffixes: tuple[str, ...] = ()) -> Path:
    """The file ``file`` in raw_dir (or, by name, in an extracted archive's subfolder below it)."""
    if not raw_dir.is_dir():
        raise ScmixInputError("raw folder does not exist", dataset=name, path=str(raw_dir))
    if file is None:
        hits = sorted(p for p in raw_dir.rglob("*") if p.is_file() and p.name.lower().endswith(suffixes))
        if len(hits) != 1:
            raise ScmixInputError(
                f"set '{key}': {len(hits)} files ending in {list(suffixes)} found ({[p.name for p in hits][:5]})",
                dataset=name,
                path=str(raw_dir),
            )
        return hits[0]
    path = raw_dir / str(file)
    if path.is_file():
        return path
    hits = sorted(p for p in raw_dir.rglob(Path(str(file)).name) if p.is_file())
    if len(hits) == 1:
        return hits[0]
    if len(hits) > 1:
        raise ScmixInputError(
            f"'{key}: {file}' matches {len(hits)} files: {[str(p) for p in hits]}", dataset=name, path=str(raw_dir)
        )
    present = sorted(str(p.relative_to(raw_dir)) for p in raw_dir.rglob("*") if p.is_file())[:20]
    raise ScmixInputError(f"'{key}' file not found; raw folder holds {present}", dataset=name, path=str(path))


# ---------------------------------------------------------------------------------------------- h5ad


def parse_h5ad(name: str, spec: Mapping, raw_dir: Path) -> ad.AnnData:
    path = resolve_file(name, raw_dir, spec.get("file"), key="file", suffixes=(".h5ad",))
    layer = spec.get("layer")
    select = _cell_selector(name, spec, path) if wanted(spec) else None
    X, obs, var, uns, layers, record = _read_h5ad_parts(name, path, layer, select, spec.get("transpose", False))
    if X.ndim != 2 or X.shape != (len(obs), len(var)):
        raise ScmixInputError(f"matrix of shape {X.shape} does not fit obs x var", dataset=name, path=str(path))
    where = f"layer '{layer}'" if layer is not None else "X"
    try:
        check_integer_counts(X, dataset=name, path=f"{path} ({where})", cells=obs.index, genes=var.index)
    except ScmixInputError as err:
        hint = f"; the file has layers {layers}: set 'layer'" if layer is None and layers else ""
        raise ScmixInputError(f"{err}{hint}") from err
    X = as_csr_counts(X)
    var = _gene_index(name, path, var, spec.get("gene_id_column"), spec.get("gene_symbol_column"))
    obs.index = obs.index.astype(str)
    obs.index.name = None
    adata = ad.AnnData(X=X, obs=obs, var=var, uns=dict(uns))
    adata.uns[SOURCE_FILE] = str(path)
    if record is not None:
        adata.uns["selection"] = record
    log.info("%s: %d x %d counts from %s (%s)", name, adata.n_obs, adata.n_vars, path, where)
    return adata


def _cell_selector(name: str, spec: Mapping, path: Path):
    """obs -> (ascending positions of the cells kept, the record for uns)."""
    return lambda obs: choose(obs, spec, dataset=name, path=str(path))


def _read_h5ad_parts(name: str, path: Path, layer, select=None, transpose: bool = False):
    """(cells x genes matrix, obs, var, uns, layer names, selection record or None), reading only the matrix asked
    for and, with ``select``, only the rows of the cells it keeps; whole-file read as a fallback. ``transpose``: the
    file is genes x cells (its var holds the cells)."""
    try:
        with h5py.File(path, "r") as f:
            layers = sorted(f["layers"].keys()) if "layers" in f else []
            if layer is not None and layer not in layers:
                raise ScmixInputError(f"no layer '{layer}'; layers: {layers}", dataset=name, path=str(path))
            if layer is None and "X" not in f:
                raise ScmixInputError(f"file has no X; set 'layer' (layers: {layers})", dataset=name, path=str(path))
            element = f["layers"][layer] if layer is not None else f["X"]
            obs, var = read_elem(f["obs"]), read_elem(f["var"])
            uns = read_elem(f["uns"]) if "uns" in f else {}
            if select is not None and not transpose:  # only the kept rows are read
                rows, record = select(obs)
                X, obs = _read_rows(name, path, element, rows), take_obs(obs, rows)
            else:  # all of it (a transposed file's cells are its columns: read whole, then selected)
                X, obs, var, record = _in_memory(read_elem(element), obs, var, select, transpose)
        return X, obs, var, uns, layers, record
    except ScmixInputError:
        raise
    except Exception as first:  # an older on-disk layout: let anndata read the whole file
        try:
            adata = ad.read_h5ad(path)
        except Exception as err:
            raise ScmixInputError(f"cannot read h5ad: {first}; {err}", dataset=name, path=str(path)) from err
        log.info("%s: %s read whole (%s)", name, path, first)
        X = adata.layers[layer] if layer is not None else adata.X
        X, obs, var, record = _in_memory(X, adata.obs, adata.var, select, transpose)
        return X, obs, var, dict(adata.uns), sorted(adata.layers.keys()), record


def _in_memory(X, obs: pd.DataFrame, var: pd.DataFrame, select, transpose: bool):
    """(X, obs, var, selection record or None) of a matrix read whole: turned to cells x genes, then the cells
    ``select`` keeps taken."""
    if transpose:
        X, obs, var = sp.csr_matrix(X).T.tocsr(), var, obs
    if select is None:
        return X, obs, var, None
    rows, record = select(obs)
    return sp.csr_matrix(X)[rows], take_obs(obs, rows), var, record


def _read_rows(name: str, path: Path, element, rows: np.ndarray) -> sp.csr_matrix:
    """Rows ``rows`` (ascending) of an on-disk counts matrix, ``READ_ROWS`` at a time. CSR on disk: the kept rows'
    sizes come from ``indptr`` first, so each block is copied into arrays of the final size (the peak is the kept
    rows plus one block, not two copies of them)."""
    encoding = element.attrs.get("encoding-type", "")
    if encoding == "csr_matrix":
        n_cols = int(element.attrs["shape"][1])
        stored = element["indptr"][...]
        lengths = stored[rows + 1] - stored[rows]
        indptr = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        data = np.empty(int(indptr[-1]), dtype=element["data"].dtype)
        indices = np.empty(int(indptr[-1]), dtype=element["indices"].dtype)
        matrix = sparse_dataset(element)
        for start in range(0, len(rows), READ_ROWS):
            chunk = rows[start : start + READ_ROWS]
            block = matrix[chunk]
            lo, hi = indptr[start], indptr[start + len(chunk)]
            if block.nnz != hi - lo:
                raise ScmixInputError(f"X's indptr and its rows disagree at rows {chunk[0]}-{chunk[-1]} (the file "
                                      "is damaged); write it again", dataset=name, path=str(path))  # fmt: skip
            data[lo:hi], indices[lo:hi] = block.data, block.indices
            del block
            if len(rows) > READ_ROWS:
                log.info("%s: read %d of %d kept rows", name, start + len(chunk), len(rows))
        if indptr[-1] < np.iinfo(np.int32).max:
            indptr = indptr.astype(np.int32)
        return sp.csr_matrix((data, indices, indptr), shape=(len(rows), n_cols))
    if isinstance(element, h5py.Dataset):  # dense on disk: h5py reads the kept rows of each block
        blocks = [sp.csr_matrix(element[rows[start : start + READ_ROWS]]) for start in range(0, len(rows), READ_ROWS)]
        return sp.vstack(blocks, format="csr") if blocks else sp.csr_matrix((0, element.shape[1]))
    log.warning("%s: %s stores its counts as %s: read whole before the kept rows are taken (store them as CSR "
                "to read only those rows)", name, path, encoding or type(element).__name__)  # fmt: skip
    return sp.csr_matrix(read_elem(element))[rows]


def _gene_index(name, path, var: pd.DataFrame, id_column, symbol_column) -> pd.DataFrame:
    """var indexed by unique gene symbol with ``gene_ids``; the symbol falls back to the id where missing."""
    var = var.copy()
    for key, column in (("gene_id_column", id_column), ("gene_symbol_column", symbol_column)):
        if column is not None and column not in var.columns:
            raise ScmixInputError(
                f"{key} '{column}' is not a gene column; columns: {list(var.columns)}", dataset=name, path=str(path)
            )
    if id_column is not None:
        ids = var[id_column].astype(str)
    elif "gene_ids" in var.columns:
        ids = var["gene_ids"].astype(str)
    else:
        ids = pd.Series(var.index.astype(str), index=var.index)
    ids = ids.to_numpy(dtype=object)
    if symbol_column is not None:
        symbols = var[symbol_column].astype(object).to_numpy()
        empty = pd.isna(symbols) | (pd.Series(symbols).astype(str).str.strip() == "").to_numpy()
        if empty.any():
            log.info("%s: %d genes have no symbol in '%s'; their id stands in", name, int(empty.sum()), symbol_column)
        symbols = np.where(empty, ids, symbols).astype(str)
    else:
        symbols = var.index.astype(str).to_numpy()
    index = pd.Index(symbols, dtype=object)
    if not index.is_unique:
        log.warning("%s: %d duplicated gene symbols suffixed -1, -2, ...", name, int(index.duplicated().sum()))
        index = ad.utils.make_index_unique(index)
    var.index = index
    var["gene_ids"] = ids
    return var


# ---------------------------------------------------------------------------------------------- csv


def parse_csv(name: str, spec: Mapping, raw_dir: Path) -> ad.AnnData:
    orientation = spec.get("orientation", "genes_x_samples")
    if orientation not in ORIENTATIONS:
        raise ScmixInputError(f"orientation must be one of {list(ORIENTATIONS)}, not {orientation!r}", dataset=name)
    missing = spec.get("missing_metadata", "error")
    if missing not in MISSING_METADATA:
        raise ScmixInputError(
            f"missing_metadata must be one of {list(MISSING_METADATA)}, not {missing!r}", dataset=name
        )
    if spec.get("counts") is None:
        raise ScmixInputError("a csv source needs 'counts' (the counts table's file name)", dataset=name)
    path = resolve_file(name, raw_dir, spec["counts"], key="counts")
    sep = _separator(name, path, spec.get("sep"))
    names = _header(name, path, sep)
    annotation = [str(c) for c in spec.get("annotation_columns") or []]
    if orientation == "genes_x_samples":
        if spec.get("counts_sample_column") is not None:
            raise ScmixInputError("counts_sample_column applies to samples_x_genes tables only", dataset=name)
        id_column = spec.get("gene_id_column") or names[0]
        symbol_column = spec.get("gene_symbol_column")
        keys = [id_column] + ([symbol_column] if symbol_column else []) + annotation
    else:
        for key in ("gene_id_column", "gene_symbol_column"):
            if spec.get(key) is not None:
                raise ScmixInputError(f"{key} applies to genes_x_samples tables only", dataset=name)
        id_column = spec.get("counts_sample_column") or names[0]
        keys = [id_column] + annotation
    absent = [c for c in keys if c not in names]
    if absent:
        raise ScmixInputError(f"columns {absent} are not in the header {names[:10]}...", dataset=name, path=str(path))
    keys = list(dict.fromkeys(keys))
    value_columns = [c for c in names if c not in keys]
    if not value_columns:
        raise ScmixInputError("the table has no count columns", dataset=name, path=str(path))

    row_info, blocks = [], []
    try:
        reader = pd.read_csv(
            path, sep=sep, header=0, names=names, dtype={c: str for c in keys}, chunksize=CHUNK_ROWS, low_memory=False
        )
        for chunk in reader:
            row_info.append(chunk[keys])
            blocks.append(_count_block(name, path, chunk[value_columns]))
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as err:
        if isinstance(err, ScmixInputError):
            raise
        raise ScmixInputError(f"cannot read table: {err}", dataset=name, path=str(path)) from err
    if not blocks:
        raise ScmixInputError("the table has no data rows", dataset=name, path=str(path))
    rows = pd.concat(row_info, ignore_index=True)
    M = sp.vstack(blocks, format="csr")
    row_ids = rows[id_column].astype(str).str.strip()
    require_unique(row_ids, f"ids in column '{id_column}'", dataset=name, path=str(path))
    rows.index = pd.Index(row_ids.to_numpy(), dtype=object)
    if orientation == "genes_x_samples":
        X = M.T.tocsr()
        rows = rows.drop(columns=[id_column])
        var = _gene_index(name, path, _tidy(rows).assign(gene_ids=rows.index), None, symbol_column)
        obs = pd.DataFrame(index=pd.Index(value_columns, dtype=object))
    else:
        X = M
        var = pd.DataFrame({"gene_ids": value_columns}, index=pd.Index(value_columns, dtype=object))
        obs = rows.drop(columns=[id_column])
    if spec.get("metadata") is not None:
        obs = _join_metadata(name, spec, raw_dir, obs, missing)
    elif any(spec.get(k) is not None for k in ("sample_id_column", "sample_id_prefix", "sample_id_suffix")):
        raise ScmixInputError("sample_id_* keys need a 'metadata' table", dataset=name)
    obs.index.name = None
    adata = ad.AnnData(X=as_csr_counts(X), obs=_tidy(obs), var=var, uns={SOURCE_FILE: str(path)})
    log.info("%s: %d samples x %d genes from %s (%s, sep %r)", name, *adata.shape, path, orientation, sep)
    return adata


def _count_block(name: str, path: Path, values: pd.DataFrame) -> sp.csr_matrix:
    non_numeric = [c for c in values.columns if not pd.api.types.is_numeric_dtype(values[c])]
    if non_numeric:
        column = non_numeric[0]
        bad = values[column][pd.to_numeric(values[column], errors="coerce").isna() & values[column].notna()]
        example = bad.iloc[0] if len(bad) else None
        raise ScmixInputError(
            f"count column '{column}' holds non-numeric values (e.g. {example!r}); "
            f"{len(non_numeric)} such columns: {non_numeric[:5]} (declare annotation columns in 'annotation_columns')",
            dataset=name,
            path=str(path),
        )
    arr = values.to_numpy()
    check_integer_counts(arr, dataset=name, path=str(path))
    return sp.csr_matrix(arr.astype(np.int64, copy=False))


def _open_text(path: Path):
    suffix = path.suffix.lower()
    opener = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}.get(suffix, open)
    return opener(path, "rt", encoding="utf-8", newline="")


def _first_lines(name: str, path: Path, n: int = 2) -> list[str]:
    lines = []
    try:
        with _open_text(path) as fh:
            for line in fh:
                if line.strip():
                    lines.append(line.rstrip("\r\n"))
                if len(lines) == n:
                    break
    except (OSError, UnicodeDecodeError, EOFError) as err:
        raise ScmixInputError(f"cannot read table: {err}", dataset=name, path=str(path)) from err
    if not lines:
        raise ScmixInputError("the table is empty", dataset=name, path=str(path))
    return lines


def _fields(line: str, sep: str) -> list[str]:
    try:
        return next(csv.reader([line], delimiter=sep))
    except csv.Error:  # e.g. a whole wide line as one over-long field: not this separator
        return [line]


def _separator(name: str, path: Path, given) -> str:
    if given is not None:
        return SEPARATORS.get(str(given), str(given))
    base = path.name.lower().removesuffix(".gz").removesuffix(".bz2").removesuffix(".xz")
    preferred = "\t" if base.endswith((".tsv", ".tab", ".txt")) else ","
    lines = _first_lines(name, path)
    candidates = list(dict.fromkeys([preferred, "\t", ",", ";"]))
    score = {sep: min(len(_fields(line, sep)) for line in lines) for sep in candidates}
    best = max(candidates, key=lambda s: score[s])  # the first (preferred) wins ties
    if score[best] < 2:
        raise ScmixInputError("cannot detect the column separator; set 'sep'", dataset=name, path=str(path))
    if best != preferred:
        log.info("%s: %s is %r-separated despite its extension", name, path.name, best)
    return best


def _header(name: str, path: Path, sep: str) -> list[str]:
    """Column names; a header one field shorter than the rows (R row names) gets ``row_names`` first."""
    lines = _first_lines(name, path)
    header = [h.strip() for h in _fields(lines[0], sep)]
    if len(lines) > 1:
        n_row = len(_fields(lines[1], sep))
        if n_row == len(header) + 1:
            header = [ROW_NAMES] + header
        elif n_row != len(header):
            raise ScmixInputError(
                f"the header has {len(header)} fields but the first row {n_row} (separator {sep!r})",
                dataset=name,
                path=str(path),
            )
    dup = [h for h, n in Counter(header).items() if n > 1]
    if dup:
        raise ScmixInputError(f"duplicated column names {dup[:5]}", dataset=name, path=str(path))
    return header


def _join_metadata(name: str, spec: Mapping, raw_dir: Path, obs: pd.DataFrame, missing: str) -> pd.DataFrame:
    path = resolve_file(name, raw_dir, spec["metadata"], key="metadata")
    sep = _separator(name, path, spec.get("metadata_sep"))
    names = _header(name, path, sep)
    try:
        meta = pd.read_csv(path, sep=sep, header=0, names=names, dtype=str)
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as err:
        raise ScmixInputError(f"cannot read metadata table: {err}", dataset=name, path=str(path)) from err
    column = spec.get("sample_id_column") or names[0]
    if column not in meta.columns:
        raise ScmixInputError(
            f"sample_id_column '{column}' is not a column; columns: {names}", dataset=name, path=str(path)
        )
    ids = meta[column].astype(str).str.strip()
    prefix, suffix = str(spec.get("sample_id_prefix") or ""), str(spec.get("sample_id_suffix") or "")
    ids = ids.map(lambda s: s.removeprefix(prefix).removesuffix(suffix) if prefix or suffix else s)
    if ids.duplicated().any():
        raise ScmixInputError(
            f"sample id {ids[ids.duplicated()].iloc[0]!r} (column '{column}', after removing prefix {prefix!r} / "
            f"suffix {suffix!r}) names several metadata rows",
            dataset=name,
            path=str(path),
        )
    samples = list(obs.index)
    matched = [s for s in samples if s in set(ids)]
    unmatched = [s for s in samples if s not in set(ids)]
    if not matched or (unmatched and missing == "error"):
        what = (
            "metadata matches no sample of the counts table"
            if not matched
            else f"{len(unmatched)} of {len(samples)} count samples have no metadata row ({unmatched[:5]})"
        )
        raise ScmixInputError(
            f"{what}: counts samples e.g. {samples[:3]}, metadata '{column}' ids e.g. {list(ids[:3])}"
            f"{_match_hint(meta, column, ids, unmatched or samples)}",
            dataset=name,
            path=str(path),
        )
    if unmatched:
        log.warning("%s: %d count samples have no metadata row, labels left empty: %s", name, len(unmatched), unmatched)
    extra = len(ids) - len(matched)
    if extra:
        log.warning("%s: %d metadata rows match no count sample and are ignored", name, extra)
    table = meta.set_axis(pd.Index(ids.to_numpy(), dtype=object), axis=0)
    new = [c for c in table.columns if c not in obs.columns]
    return obs.join(table[new])


def _match_hint(meta: pd.DataFrame, column: str, ids: pd.Series, unmatched: list[str]) -> str:
    """A suggestion for the config: a common suffix/prefix to remove, or another column that matches."""
    hints = []
    for key, side, extract in (
        ("sample_id_suffix", "after", lambda m, s: m[len(s) :] if m.startswith(s) and m != s else None),
        ("sample_id_prefix", "before", lambda m, s: m[: -len(s)] if m.endswith(s) and m != s else None),
    ):
        found = Counter()
        for s in unmatched:
            found.update({x for m in ids if (x := extract(m, s))})
        if found:
            affix, n = found.most_common(1)[0]
            if n == len(unmatched):
                hints.append(f"the metadata ids carry {affix!r} {side} the count sample names: set {key}: '{affix}'")
    for other in meta.columns:
        if other != column and set(meta[other].astype(str)) & set(unmatched):
            n = len(set(meta[other].astype(str)) & set(unmatched))
            hints.append(f"column '{other}' matches {n} samples: set sample_id_column: '{other}'")
    return ("; " + "; ".join(hints)) if hints else ""


def _tidy(obs: pd.DataFrame) -> pd.DataFrame:
    """Text columns whose every value is a number to numbers, the other text columns to categories."""
    obs = obs.copy()
    for column in obs.columns:
        values = obs[column]
        if pd.api.types.is_numeric_dtype(values) or isinstance(values.dtype, pd.CategoricalDtype):
            continue
        numeric = pd.to_numeric(values, errors="coerce")
        if values.notna().any() and numeric.notna().sum() == values.notna().sum():
            obs[column] = numeric
        else:
            obs[column] = values.astype("category")
    return obs
