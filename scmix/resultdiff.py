"""What differs between two builds of the workflow: one line per differing file, naming where it first differs.

Two runs of the same config with the same seeds should give the same results (mixes byte for byte, models weight
for weight, tables character for character). When they do not, "the tables differ" is no help; these functions
say which file, and in it the first differing table row and column, the first differing array element, or the
h5ad field (X, layers, obs/var columns, obsm, uns) that differs. Used by the determinism tests and by
``benchmarks/resume_determinism.py``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path

import numpy as np

# what a build writes that is expected to differ between two runs: timings and run records
TIMING_PARTS = ("benchmarks",)
TIMING_COLUMNS = frozenset({"seconds", "train_seconds", "s", "h:m:s"})


def result_files(root, patterns: Iterable[str] = ("results/**/*",)) -> list[str]:
    """Files under ``root`` matching ``patterns`` (relative, sorted), less timing records (``results/benchmarks``)
    and temporary files (names starting with a dot)."""
    root = Path(root)
    found = set()
    for pattern in patterns:
        for path in root.glob(pattern):
            parts = path.relative_to(root).parts
            hidden = any(p.startswith(".") for p in parts)
            if path.is_file() and not hidden and not set(parts) & set(TIMING_PARTS):
                found.add("/".join(parts))
    return sorted(found)


def diff_trees(a, b, files: Iterable[str] | None = None, *, h5ad_bytes: bool = True) -> list[str]:
    """One line per file of ``files`` (default: every result file of either tree) that differs between the
    trees ``a`` and ``b``; empty when they agree. ``h5ad_bytes``: an h5ad must be identical byte for byte (else
    equal content is enough)."""
    a, b = Path(a), Path(b)
    names = sorted(set(result_files(a)) | set(result_files(b))) if files is None else list(files)
    lines = []
    for name in names:
        problem = diff_file(a / name, b / name, h5ad_bytes=h5ad_bytes)
        if problem:
            lines.append(f"{name}: {problem}")
    return lines


def diff_file(a, b, *, h5ad_bytes: bool = True) -> str | None:
    """None if the files agree, else where they first differ (by type: .tsv, .h5ad, .pt; others byte for byte)."""
    a, b = Path(a), Path(b)
    if not a.is_file() or not b.is_file():
        return f"only in {'the first' if a.is_file() else 'the second' if b.is_file() else 'neither'} tree"
    if a.suffix in (".tsv", ".csv"):
        return diff_table(a, b)
    if a.suffix == ".pt":
        return diff_checkpoint(a, b)
    bytes_a, bytes_b = a.read_bytes(), b.read_bytes()
    same_bytes = bytes_a == bytes_b
    if a.suffix == ".h5ad":
        if same_bytes:
            return None
        found = diff_h5ad(a, b)
        if found:
            return found
        return "bytes differ, content equal (HDF5 layout)" if h5ad_bytes else None
    if a.suffix == ".png":
        return None if same_bytes else "image bytes differ"
    return None if same_bytes else f"bytes differ at byte {_first_byte(bytes_a, bytes_b)}"


def _first_byte(x: bytes, y: bytes) -> int:
    n = min(len(x), len(y))
    return next((i for i in range(n) if x[i] != y[i]), n)


def diff_table(a, b, sep: str = "\t") -> str | None:
    """The first differing row and column of two text tables (header line first), timing columns ignored."""
    la, lb = Path(a).read_text().splitlines(), Path(b).read_text().splitlines()
    header = la[0].split(sep) if la else []
    timing = {i for i, col in enumerate(header) if col in TIMING_COLUMNS}
    if (la[:1] or [""]) != (lb[:1] or [""]):
        return f"headers differ: {la[:1]} vs {lb[:1]}"
    for row, (x, y) in enumerate(zip(la[1:], lb[1:], strict=False), start=1):
        if x == y:
            continue
        fx, fy = x.split(sep), y.split(sep)
        if len(fx) != len(fy):
            return f"row {row} has {len(fx)} vs {len(fy)} fields: {x!r} vs {y!r}"
        cols = [i for i, (u, v) in enumerate(zip(fx, fy, strict=True)) if u != v and i not in timing]
        if not cols:
            continue
        i = cols[0]
        name = header[i] if i < len(header) else f"#{i}"
        key = f" ({fx[0]})" if i else ""
        more = f"; {len(cols) - 1} more columns differ in this row" if len(cols) > 1 else ""
        return f"row {row}{key}, column {name!r}: {fx[i]} vs {fy[i]}{_relative(fx[i], fy[i])}{more}"
    if len(la) != len(lb):
        return f"{len(la) - 1} vs {len(lb) - 1} rows"
    return None


def _relative(x: str, y: str) -> str:
    try:
        u, v = float(x), float(y)
    except ValueError:
        return ""
    if not (math.isfinite(u) and math.isfinite(v)) or u == v:
        return ""
    return f" (relative difference {abs(u - v) / max(abs(u), abs(v)):.1e})"


def diff_arrays(x, y) -> str | None:
    """None if equal (NaN equal to NaN), else shape, dtype or the first differing element."""
    import scipy.sparse as sp

    if sp.issparse(x) or sp.issparse(y):
        if not (sp.issparse(x) and sp.issparse(y)):
            return "one is sparse, the other dense"
        if x.shape != y.shape:
            return f"shape {x.shape} vs {y.shape}"
        x, y = x.tocsr(), y.tocsr()
        x.sort_indices()
        y.sort_indices()
        for part in ("indptr", "indices", "data"):
            found = diff_arrays(getattr(x, part), getattr(y, part))
            if found:
                return f"sparse {part}: {found}"
        return None
    x, y = np.asarray(x), np.asarray(y)
    if x.shape != y.shape:
        return f"shape {x.shape} vs {y.shape}"
    if x.dtype != y.dtype:
        return f"dtype {x.dtype} vs {y.dtype}"
    if x.dtype.kind in "fc":
        unequal = ~((x == y) | (np.isnan(x) & np.isnan(y)))
    else:
        unequal = x != y
    if not unequal.any():
        return None
    where = tuple(int(i) for i in np.argwhere(unequal)[0])
    u, v = x[where], y[where]
    return f"{int(unequal.sum())} of {x.size} elements differ, first at {list(where)}: {u!r} vs {v!r}"


def diff_h5ad(a, b) -> str | None:
    """The first field of two h5ad files whose content differs: X, layers, obs/var (names, columns), obsm, varm,
    obsp, uns."""
    import anndata as ad

    x, y = ad.read_h5ad(a), ad.read_h5ad(b)
    if x.shape != y.shape:
        return f"shape {x.shape} vs {y.shape}"
    for axis in ("obs", "var"):
        fx, fy = getattr(x, axis), getattr(y, axis)
        if not fx.index.equals(fy.index):
            i = next((i for i, (u, v) in enumerate(zip(fx.index, fy.index, strict=True)) if u != v), None)
            return f"{axis}_names differ, first at {i}: {fx.index[i]!r} vs {fy.index[i]!r}"
        if list(fx.columns) != list(fy.columns):
            return f"{axis} columns {list(fx.columns)} vs {list(fy.columns)}"
        for col in fx.columns:
            found = _diff_column(fx[col], fy[col])
            if found:
                return f"{axis}[{col!r}]: {found}"
    found = diff_arrays(x.X, y.X) if x.X is not None and y.X is not None else None
    if found:
        return f"X: {found}"
    for attr in ("layers", "obsm", "varm", "obsp", "varp"):
        mx, my = getattr(x, attr), getattr(y, attr)
        if set(mx) != set(my):
            return f"{attr} keys {sorted(mx)} vs {sorted(my)}"
        for key in mx:
            found = _diff_any(mx[key], my[key], f"{attr}[{key!r}]")
            if found:
                return found
    return _diff_any(dict(x.uns), dict(y.uns), "uns")


def _diff_column(u, v) -> str | None:
    if str(u.dtype) != str(v.dtype):
        return f"dtype {u.dtype} vs {v.dtype}"
    if u.dtype == "category":
        if list(u.cat.categories) != list(v.cat.categories):
            return f"categories {list(u.cat.categories)} vs {list(v.cat.categories)}"
        return diff_arrays(u.cat.codes.to_numpy(), v.cat.codes.to_numpy())
    return diff_arrays(u.to_numpy(), v.to_numpy())


def _diff_any(x, y, path: str = "") -> str | None:
    """Nested dicts, data frames, arrays and scalars (as in uns); the key path of the first difference."""
    import pandas as pd

    if isinstance(x, dict) and isinstance(y, dict):
        if set(x) != set(y):
            return f"{path}: keys {sorted(map(str, x))} vs {sorted(map(str, y))}"
        for key in x:
            found = _diff_any(x[key], y[key], f"{path}[{key!r}]")
            if found:
                return found
        return None
    if isinstance(x, pd.DataFrame) and isinstance(y, pd.DataFrame):
        if not x.index.equals(y.index) or list(x.columns) != list(y.columns):
            return f"{path}: index or columns differ"
        for col in x.columns:
            found = _diff_column(x[col], y[col])
            if found:
                return f"{path}[{col!r}]: {found}"
        return None
    if hasattr(x, "shape") or hasattr(y, "shape") or isinstance(x, list | tuple):
        try:
            found = diff_arrays(x, y)
        except (TypeError, ValueError):
            found = None if str(x) == str(y) else f"{x!r} vs {y!r}"
        return f"{path}: {found}" if found else None
    if x != y and not (isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y)):
        return f"{path}: {x!r} vs {y!r}"
    return None


def diff_checkpoint(a, b) -> str | None:
    """The first differing weight (name, element) of two checkpoints, else the first differing other entry."""
    import torch

    x, y = torch.load(a, weights_only=True), torch.load(b, weights_only=True)
    sx, sy = x.pop("state_dict", {}), y.pop("state_dict", {})
    if list(sx) != list(sy):
        return f"weights {sorted(set(sx) ^ set(sy))} in one checkpoint only"
    for key in sx:
        found = diff_arrays(sx[key].cpu().numpy(), sy[key].cpu().numpy())
        if found:
            return f"weight {key!r}: {found}"
    return _diff_any(x, y, "checkpoint")


def main(argv=None) -> int:
    """``python -m scmix.resultdiff A B [PATTERN ...]``: the differing files of two work folders, one line each
    (default: every result file under results/, less timing records); exit status 1 when any differs."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m scmix.resultdiff", description=main.__doc__)
    parser.add_argument("a", type=Path, help="a work folder (holding results/)")
    parser.add_argument("b", type=Path, help="the other work folder")
    parser.add_argument("patterns", nargs="*", default=["results/**/*"], help="globs relative to each folder")
    parser.add_argument("--h5ad-content", action="store_true", help="h5ad files agree on content (not byte for byte)")
    args = parser.parse_args(argv)
    names = sorted(set(result_files(args.a, args.patterns)) | set(result_files(args.b, args.patterns)))
    lines = diff_trees(args.a, args.b, names, h5ad_bytes=not args.h5ad_content)
    print("\n".join(lines) if lines else f"no difference in {len(names)} files")
    return 1 if lines else 0


if __name__ == "__main__":
    raise SystemExit(main())
