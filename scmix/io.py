"""AnnData I/O: atomic writes and the raw-count contract every h5ad of the workflow keeps."""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from contextlib import contextmanager
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from scmix.errors import ScmixInputError, writing

# The largest value a raw count may take. A count is the reads (or UMIs) of one gene in one cell or sample: a deep
# bulk library holds about 1e8 reads in all (the real bulk data tested here peak at 1.3e6 for one gene: Illumina Body
# Map; airway 5.1e5, pasilla 3.6e5) and a whole sequencing flow cell about 1e10, so a value of 1e9 or more is not
# a count but a corrupt or mislabelled file. Below it every count also fits the int32 the workflow stores counts as
# (scmix.io.as_csr_counts). Models compute in float32, exact for integers up to 2**24 (16,777,216): larger counts
# are kept, and rounded there in their last digit only.
MAX_COUNT = 999_999_999


def counts_matrix(adata: ad.AnnData):
    """The raw integer counts of ``adata``: ``layers['counts']`` when present, else ``X``."""
    return adata.layers["counts"] if "counts" in adata.layers else adata.X


def invalid_count_values(values: np.ndarray) -> np.ndarray:
    """Per stored value: True where it is not a finite non-negative integer of at most ``MAX_COUNT``."""
    values = np.asarray(values)
    if not np.issubdtype(values.dtype, np.floating):
        return (values < 0) | (values > MAX_COUNT)
    with np.errstate(invalid="ignore"):
        return ~np.isfinite(values) | (values < 0) | (values > MAX_COUNT) | (values != np.round(values))


def check_integer_counts(X, *, dataset: str | None = None, path: str | None = None, mix: str | None = None,
                         cells=None, genes=None) -> None:  # fmt: skip
    """Raise a ScmixInputError unless every stored value is a finite non-negative integer no larger than
    ``MAX_COUNT``. ``cells``/``genes`` (the row and column names) name where an absurd count is.

    Nothing is coerced: a count likelihood on rounded floats would silently model something else.
    """
    where = {"dataset": dataset, "path": path, "mix": mix}
    values = X.data if sp.issparse(X) else np.asarray(X)
    if values.size == 0:
        return
    if not np.issubdtype(values.dtype, np.number):
        raise ScmixInputError(f"counts have non-numeric dtype {values.dtype}", **where)
    if np.issubdtype(values.dtype, np.floating):
        bad = ~np.isfinite(values)
        if bad.any():
            raise ScmixInputError(f"counts hold {int(bad.sum())} NaN/inf values", **where)
        frac = values != np.round(values)
        if frac.any():
            example = values[frac][0].item()
            raise ScmixInputError(
                f"counts must be integers but {int(frac.sum())} values are not (e.g. {example!r}); "
                "this looks like normalised data, which a count model cannot use",
                **where,
            )
    if (values < 0).any():
        raise ScmixInputError(f"counts hold {int((values < 0).sum())} negative values", **where)
    if values.max() > MAX_COUNT:
        raise ScmixInputError(f"{_absurd(X, values, cells, genes)}: no gene of one cell or sample has that many "
                              f"reads (the largest count accepted is {MAX_COUNT:,}); these are not raw counts, "
                              "or the file is damaged", **where)  # fmt: skip


def _absurd(X, values: np.ndarray, cells, genes) -> str:
    """'a count of V (cell C, gene G)': the first stored value above MAX_COUNT, how many there are, and where."""
    above = np.flatnonzero(values.ravel() > MAX_COUNT)
    first = int(above[0])
    if sp.issparse(X):  # a COO view keeps the stored values' order (CSR or CSC)
        coo = X.tocoo(copy=False)
        row, col = int(coo.row[first]), int(coo.col[first])
    else:
        row, col = divmod(first, X.shape[1]) if np.ndim(X) == 2 else (first, 0)
    cell = f"cell {str(cells[row])!r}" if cells is not None else f"row {row + 1}"
    gene = f"gene {str(genes[col])!r}" if genes is not None else f"column {col + 1}"
    value = values.ravel()[first].item()
    more = f", and {len(above) - 1:,} more counts above it" if len(above) > 1 else ""
    return f"a count of {value:,.0f} ({cell}, {gene}{more})"


def require_unique(ids, what: str, *, dataset: str | None = None, path: str | None = None) -> None:
    """Raise a ScmixInputError naming how many ``what`` repeat, with an example, if any ID repeats."""
    ids = pd.Series(ids)
    dups = ids[ids.duplicated()]
    if len(dups):
        raise ScmixInputError(f"{len(dups)} duplicated {what} (e.g. {dups.iloc[0]!r})", dataset=dataset, path=path)


def as_csr_counts(X) -> sp.csr_matrix:
    """Integer counts as CSR (int32 when the values fit) without densifying sparse input."""
    X = sp.csr_matrix(X)
    if X.nnz and X.data.max() < np.iinfo(np.int32).max:
        X.data = X.data.astype(np.int32, copy=False)
    X.sum_duplicates()
    X.eliminate_zeros()
    return X


def read_h5ad(path: str | os.PathLike, *, dataset: str | None = None, mix: str | None = None,
              backed: bool = False) -> ad.AnnData:  # fmt: skip
    """Read an h5ad, turning a missing or corrupt file into a ScmixInputError naming it. ``backed``: read obs and
    var only and leave the counts on disk (anndata's backed mode; ``read_cells`` and ``take_rows`` read rows)."""
    try:
        return ad.read_h5ad(path, backed="r" if backed else None)
    except (OSError, KeyError, ValueError) as err:
        raise ScmixInputError(f"cannot read h5ad: {err}", dataset=dataset, mix=mix, path=str(path)) from err


def take_rows(X, rows):
    """Rows ``rows`` of a matrix in memory or of a backed h5ad's counts, in that order (repeats allowed). On disk,
    each distinct row is read once, in file order (about 8x faster than anndata's read in the order asked)."""
    rows = np.asarray(rows, dtype=np.int64)
    if isinstance(X, np.ndarray) or sp.issparse(X):
        return X[rows]
    distinct, inverse = np.unique(rows, return_inverse=True)
    return X[distinct][inverse]


def read_cells(adata: ad.AnnData, rows, var=None) -> ad.AnnData:
    """Cells ``rows`` (and genes at positions ``var``, all when None) of ``adata`` as an AnnData in memory, in the
    order given (repeats allowed). Of a backed AnnData only those rows are read, each distinct one once."""
    rows = np.asarray(rows, dtype=np.int64)
    if var is not None and np.array_equal(var, np.arange(adata.n_vars)):
        var = None  # every gene in order: no column copy
    var = slice(None) if var is None else np.asarray(var, dtype=np.int64)
    if not adata.isbacked:
        return adata[rows, var].copy()
    distinct, inverse = np.unique(rows, return_inverse=True)
    cells = adata[distinct, var].to_memory()
    if np.array_equal(distinct, rows):
        return cells
    with warnings.catch_warnings():  # repeated rows repeat their names, as an in-memory take does; callers rename
        warnings.filterwarnings("ignore", "Observation names are not unique", UserWarning)
        return cells[inverse].copy()


def in_memory_bytes(path: str | os.PathLike) -> int:
    """What a file takes in memory once read, without reading it: for an h5ad, the uncompressed size of every
    array it holds (counts' data, indices and indptr, layers, obs and var columns); for a folder, the sum over
    its files; for any other file, its size."""
    path = Path(path)
    if path.is_dir():
        return sum(in_memory_bytes(p) for p in path.rglob("*") if p.is_file())
    if path.suffix != ".h5ad":
        return path.stat().st_size
    import h5py

    total = 0

    def add(_, obj):
        nonlocal total
        if isinstance(obj, h5py.Dataset):
            total += obj.size * obj.dtype.itemsize if obj.dtype.kind != "O" else obj.id.get_storage_size()

    with h5py.File(path, "r") as f:
        f.visititems(add)
    return total


def sibling_tempfile(path: Path, suffix: str = "") -> str:
    """A new empty file beside ``path`` to write into and then rename over it.

    mkstemp makes it owner-only (0600); it gets the mode a plain open() would give (0666 less the umask),
    so that results stay readable by the group on a shared cluster file system."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    return tmp


@contextmanager
def _replacing(path: str | os.PathLike, *, unique: bool = False):
    """A temporary file beside ``path`` for the block to write (a refused write names ``path``), renamed over
    ``path`` when the block ends and removed when it fails: no half-written output survives. ``unique``: a name
    of its own (``sibling_tempfile``), for files that jobs side by side could write at once."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(sibling_tempfile(path, suffix=".tmp")) if unique else path.with_name(f".{path.name}.tmp")
    try:
        with writing(path):
            yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_h5ad(adata: ad.AnnData, path: str | os.PathLike) -> None:
    """Write ``adata`` atomically: to a temporary file in the same folder, then rename.

    A job killed mid-write leaves no half-written h5ad that a rerun could take for finished.
    """
    with _replacing(path, unique=True) as tmp:
        adata.write_h5ad(tmp, compression="gzip")


def write_table(df, path: str | os.PathLike, **kwargs) -> None:
    """Write a pandas DataFrame as TSV atomically."""
    with _replacing(path) as tmp:
        df.to_csv(tmp, sep="\t", index=kwargs.pop("index", False), **kwargs)


def write_json(obj, path: str | os.PathLike) -> None:
    """Write ``obj`` as indented JSON atomically (a refused write names ``path``)."""
    with _replacing(path) as tmp, open(tmp, "w") as fh:
        json.dump(obj, fh, indent=1)


def read_label_map(path) -> dict[str, str]:
    """A two-column TSV with a header (fine label, coarse label), e.g. ``Naive CD4 T<TAB>T``."""
    table = pd.read_csv(path, sep="\t", dtype=str)
    if table.shape[1] != 2 or table.isna().any().any():
        raise ScmixInputError("a label map needs two complete columns: fine label, coarse label", path=str(path))
    fine = table.iloc[:, 0].str.strip()
    if fine.duplicated().any():
        dup = sorted(set(fine[fine.duplicated()]))
        raise ScmixInputError(f"fine labels listed twice: {dup}", path=str(path))
    return dict(zip(fine, table.iloc[:, 1].str.strip(), strict=True))
