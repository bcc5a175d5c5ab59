"""Curated Cancer Cell Atlas (3CA): collate per-study folders into one AnnData of raw UMI counts.

Each 3CA study is served (usually zipped, per study or per tissue) as a folder holding
``Exp_data_UMIcounts.mtx`` (MatrixMarket, genes x cells), ``Genes.txt`` (one symbol a line, no header;
some studies call it ``genes.txt``), ``Cells.csv`` (header row, first column ``cell_name``, then labels
such as ``sample``, ``cell_type``, ``complexity``, ``cell_subtype``, ``patient``, ``source``) and
sometimes ``Samples.csv`` (per-sample labels, joined on ``sample``) and ``Meta-data.csv``.

Config keys of a ``source: cca`` dataset (all optional):

- ``studies``: study folder names to collate; default every study folder found under raw_dir.
- ``genes``: ``intersection`` (default) or ``union`` of the studies' genes.
- ``filter``: ``{obs column: [values]}``, e.g. ``{cell_type: [Malignant]}``; keeps matching cells.
- ``non_integer``: ``error`` (default) or ``exclude``: a study whose matrix is not raw counts is
  rejected by name, or left out with a warning.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.io
import scipy.sparse as sp

from scmix.errors import ScmixInputError
from scmix.io import require_unique

log = logging.getLogger("scmix.data.sources.cca")

MATRIX_NAMES = ("exp_data_umicounts.mtx", "exp_data_umicounts.mtx.gz")
GENES_NAMES = ("genes.txt",)
CELLS_NAMES = ("cells.csv",)
SAMPLES_NAMES = ("samples.csv",)
METADATA_NAMES = ("meta-data.csv",)
STUDY_FILES = MATRIX_NAMES + GENES_NAMES + CELLS_NAMES
# labels kept as categories even when every value looks numeric (sample "1" is a name, not a number)
LABEL_COLUMNS = {"study", "cell_name", "sample", "cell_type", "cell_subtype", "patient", "source"}
GENE_JOINS = ("intersection", "union")
NON_INTEGER = ("error", "exclude")


def parse(name: str, spec: Mapping, raw_dir: Path) -> ad.AnnData:
    raw_dir = Path(raw_dir)
    gene_join = spec.get("genes", "intersection")
    if gene_join not in GENE_JOINS:
        raise ScmixInputError(f"genes must be one of {list(GENE_JOINS)}, not {gene_join!r}", dataset=name)
    non_integer = spec.get("non_integer", "error")
    if non_integer not in NON_INTEGER:
        raise ScmixInputError(f"non_integer must be one of {list(NON_INTEGER)}, not {non_integer!r}", dataset=name)
    filters = _filters(name, spec.get("filter"))

    studies = find_studies(name, raw_dir, spec.get("studies"))
    parts: list[tuple[str, sp.csr_matrix, pd.Index, pd.DataFrame]] = []
    excluded: dict[str, str] = {}
    for study, folder in studies.items():
        X, genes, obs, problem = _read_study(name, study, folder)
        if problem is not None:
            path, what = problem
            if non_integer == "error":
                raise ScmixInputError(
                    f"study '{study}' does not hold raw integer counts: {what} "
                    "(set non_integer: exclude to leave such studies out)",
                    dataset=name,
                    path=str(path),
                )
            log.warning("%s: study '%s' excluded, %s is not raw counts: %s", name, study, path, what)
            excluded[study] = what
            continue
        parts.append((study, X, genes, obs))
    if not parts:
        raise ScmixInputError(f"every study was excluded as non-integer: {sorted(excluded)}", dataset=name)

    parts = _apply_filters(name, raw_dir, parts, filters)
    var_names, n_studies = _join_genes(name, raw_dir, [(s, g) for s, _, g, _ in parts], gene_join)

    blocks, obs_frames = [], []
    for _study, X, genes, obs in parts:
        blocks.append(_reindex_columns(X, var_names.get_indexer(genes), len(var_names)))
        obs_frames.append(obs)
    X = sp.vstack(blocks, format="csr")
    obs = _tidy_labels(pd.concat(obs_frames, axis=0, join="outer"))
    var = pd.DataFrame({"gene_ids": np.asarray(var_names, dtype=object), "n_studies": n_studies}, index=var_names)
    adata = ad.AnnData(X=X, obs=obs, var=var)
    adata.uns["cca"] = {
        "studies": {study: int((obs["study"] == study).sum()) for study, *_ in parts},
        "genes": gene_join,
        "excluded_non_integer": excluded if excluded else {},
    }
    log.info("%s: collated %d studies into %d cells x %d genes (%s)", name, len(parts), *X.shape, gene_join)
    return adata


# ---------------------------------------------------------------------------------------------- studies


def find_studies(name: str, raw_dir: Path, wanted=None) -> dict[str, Path]:
    """Study name -> folder. A study folder is one holding any of the 3CA study files (case-insensitive)."""
    if not raw_dir.is_dir():
        raise ScmixInputError("raw folder does not exist", dataset=name, path=str(raw_dir))
    found: dict[str, list[Path]] = {}
    all_dirs: dict[str, list[Path]] = {}
    for root, dirs, files in os.walk(raw_dir):
        dirs[:] = sorted(d for d in dirs if not d.startswith((".", "__MACOSX")))
        folder = Path(root)
        study = folder.name if folder != raw_dir else name
        all_dirs.setdefault(study, []).append(folder)
        if any(f.lower() in STUDY_FILES for f in files):
            found.setdefault(study, []).append(folder)

    if wanted is None:
        if not found:
            raise ScmixInputError(
                "no 3CA study folder (one holding Exp_data_UMIcounts.mtx, Genes.txt, Cells.csv) found",
                dataset=name,
                path=str(raw_dir),
            )
        chosen = {study: study for study in sorted(found)}
    else:
        if isinstance(wanted, str):
            wanted = [wanted]
        if not wanted:
            raise ScmixInputError("studies is an empty list; leave it out to collate every study", dataset=name)
        chosen = {}
        for study in wanted:
            study = str(study)
            match = _match_study(name, raw_dir, study, found, all_dirs)
            if match in chosen.values():
                raise ScmixInputError(f"study '{study}' names the same folder as another listed study", dataset=name)
            chosen[study] = match
    studies = {}
    for study, folder_name in chosen.items():
        folders = found[folder_name]
        if len(folders) > 1:
            raise ScmixInputError(
                f"study '{study}' is found in {len(folders)} folders: {[str(f) for f in folders]}",
                dataset=name,
                path=str(raw_dir),
            )
        studies[study] = folders[0]
    return studies


def _match_study(name, raw_dir, study, found, all_dirs) -> str:
    """The study folder named ``study``: exact name, else case-insensitive, else the one folder containing it."""
    if study in found:
        return study
    lower = [s for s in found if s.lower() == study.lower()]
    if len(lower) == 1:
        return lower[0]
    partial = [s for s in found if study.lower() in s.lower()]
    if len(partial) == 1:
        return partial[0]
    if len(partial) > 1:
        raise ScmixInputError(f"study '{study}' matches several study folders: {sorted(partial)}", dataset=name)
    if study in all_dirs:  # the folder is there but holds none of the study files
        folder = all_dirs[study][0]
        raise ScmixInputError(
            f"study '{study}': folder holds no Exp_data_UMIcounts.mtx, Genes.txt or Cells.csv "
            f"(it holds {sorted(p.name for p in folder.iterdir())[:10]})",
            dataset=name,
            path=str(folder),
        )
    raise ScmixInputError(
        f"listed study '{study}' not found; study folders present: {sorted(found) or 'none'}",
        dataset=name,
        path=str(raw_dir),
    )


def _find_file(folder: Path, names: tuple[str, ...]) -> Path | None:
    for entry in sorted(folder.iterdir()):
        if entry.is_file() and entry.name.lower() in names:
            return entry
    return None


def _require(name: str, study: str, folder: Path, names: tuple[str, ...], label: str) -> Path:
    path = _find_file(folder, names)
    if path is None:
        raise ScmixInputError(
            f"study '{study}' lacks its {label}; files present: {sorted(p.name for p in folder.iterdir())}",
            dataset=name,
            path=str(folder / label),
        )
    return path


def _read_csv(name: str, study: str, path: Path) -> pd.DataFrame:
    try:
        df = pd.read_csv(path, dtype=str)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise ScmixInputError(f"study '{study}': cannot read table: {err}", dataset=name, path=str(path)) from err
    df.columns = [str(c).strip() for c in df.columns]
    return df


def _read_study(name: str, study: str, folder: Path):
    """(cells x genes CSR, gene Index, obs, problem); problem is (path, what) when the values are not counts."""
    mtx = _require(name, study, folder, MATRIX_NAMES, "Exp_data_UMIcounts.mtx")
    genes_path = _require(name, study, folder, GENES_NAMES, "Genes.txt")
    cells_path = _require(name, study, folder, CELLS_NAMES, "Cells.csv")

    with open(genes_path, encoding="utf-8") as fh:
        genes = [line.strip().strip('"') for line in fh]
    while genes and not genes[-1]:
        genes.pop()
    if not genes or not all(genes):
        raise ScmixInputError(
            f"study '{study}': empty gene name at line {genes.index('') + 1}" if genes else "no genes listed",
            dataset=name,
            path=str(genes_path),
        )
    cells = _read_csv(name, study, cells_path)
    if cells.shape[1] == 0:
        raise ScmixInputError(f"study '{study}': Cells.csv has no columns", dataset=name, path=str(cells_path))
    try:
        X = scipy.io.mmread(mtx)
    except (ValueError, OSError, EOFError) as err:
        raise ScmixInputError(f"study '{study}': cannot read MatrixMarket: {err}", dataset=name, path=str(mtx)) from err

    if X.shape != (len(genes), len(cells)):
        hint = " (it looks transposed: cells x genes)" if X.shape == (len(cells), len(genes)) else ""
        raise ScmixInputError(
            f"study '{study}': matrix is {X.shape[0]} x {X.shape[1]} but {genes_path.name} lists {len(genes)} genes "
            f"and {cells_path.name} {len(cells)} cells (expected genes x cells){hint}",
            dataset=name,
            path=str(mtx),
        )
    X = sp.csr_matrix(X.T)  # cells x genes
    problem = _count_problem(X.data)
    if problem is not None:
        return None, None, None, (mtx, problem)
    X.data = X.data.astype(np.int64, copy=False)

    cell_names = cells.iloc[:, 0].astype(str)
    require_unique(cell_names, f"cell names in study '{study}'", dataset=name, path=str(cells_path))
    obs = cells.rename(columns={cells.columns[0]: "cell_name"})
    if "study" in obs.columns:
        log.info("%s: study '%s': its own 'study' column is kept as 'study_label'", name, study)
        obs = obs.rename(columns={"study": "study_label"})
    obs.insert(0, "study", study)
    obs = _join_samples(name, study, folder, obs)
    for column in ("sample", "cell_type"):
        if column not in obs:
            log.warning("%s: study '%s' has no '%s' column in %s; left empty", name, study, column, cells_path.name)
            obs[column] = np.nan
    obs.index = pd.Index([f"{study}:{c}" for c in cell_names], dtype=object)

    gene_index = pd.Index(genes, dtype=object)
    if not gene_index.is_unique:
        n_dup = int(gene_index.duplicated().sum())
        log.warning("%s: study '%s' lists %d duplicated gene symbols; suffixed -1, -2, ...", name, study, n_dup)
        gene_index = ad.utils.make_index_unique(gene_index)
    log.info("%s: study '%s': %d cells x %d genes from %s", name, study, X.shape[0], X.shape[1], folder)
    return X, gene_index, obs, None


def _count_problem(values: np.ndarray) -> str | None:
    if values.size == 0:
        return None
    if not np.issubdtype(values.dtype, np.number):
        return f"non-numeric values ({values.dtype})"
    if np.issubdtype(values.dtype, np.floating):
        bad = ~np.isfinite(values)
        if bad.any():
            return f"{int(bad.sum())} NaN/inf values"
        frac = values != np.round(values)
        if frac.any():
            return f"{int(frac.sum())} of {values.size} stored values are not integers (e.g. {values[frac][0]!r})"
    if (values < 0).any():
        return f"{int((values < 0).sum())} negative values"
    return None


def _join_samples(name: str, study: str, folder: Path, obs: pd.DataFrame) -> pd.DataFrame:
    """Add the columns of Samples.csv (and of Meta-data.csv when it is per sample) by ``sample``."""
    for names in (SAMPLES_NAMES, METADATA_NAMES):
        path = _find_file(folder, names)
        if path is None:
            continue
        table = _read_csv(name, study, path)
        if "sample" not in table.columns:
            if names == SAMPLES_NAMES:
                raise ScmixInputError(
                    f"study '{study}': Samples.csv has no 'sample' column (columns: {list(table.columns)})",
                    dataset=name,
                    path=str(path),
                )
            log.info("%s: study '%s': %s has no 'sample' column; not joined", name, study, path.name)
            continue
        if "sample" not in obs:
            log.warning("%s: study '%s': Cells.csv has no 'sample' column; %s not joined", name, study, path.name)
            continue
        table = table.drop_duplicates()
        if table["sample"].duplicated().any():
            dup = table.loc[table["sample"].duplicated(), "sample"].iloc[0]
            raise ScmixInputError(
                f"study '{study}': sample {dup!r} has several different rows", dataset=name, path=str(path)
            )
        new = [c for c in table.columns if c != "sample" and c not in obs.columns]
        missing = set(obs["sample"].dropna()) - set(table["sample"])
        if missing:
            log.warning(
                "%s: study '%s': %d samples of Cells.csv are absent from %s (e.g. %s); their labels are empty",
                name, study, len(missing), path.name, sorted(missing)[0],
            )  # fmt: skip
        obs = obs.join(table.set_index("sample")[new], on="sample")
    return obs


# ---------------------------------------------------------------------------------------------- collation


def _filters(name: str, raw) -> dict[str, set[str]]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ScmixInputError(f"filter must map an obs column to allowed values, not {raw!r}", dataset=name)
    out = {}
    for column, values in raw.items():
        values = values if isinstance(values, list | tuple) else [values]
        if not values:
            raise ScmixInputError(f"filter '{column}' lists no values", dataset=name)
        out[str(column)] = {str(v) for v in values}
    return out


def _apply_filters(name, raw_dir, parts, filters):
    if not filters:
        return parts
    columns = set().union(*(set(obs.columns) for *_, obs in parts))
    absent = [c for c in filters if c not in columns]
    if absent:
        raise ScmixInputError(
            f"filter column(s) {absent} are in no study; columns: {sorted(columns)}", dataset=name, path=str(raw_dir)
        )
    kept, seen = [], {c: set() for c in filters}
    for study, X, genes, obs in parts:
        mask = np.ones(len(obs), dtype=bool)
        for column, allowed in filters.items():
            if column not in obs:
                log.warning("%s: study '%s' has no '%s' column; none of its cells pass the filter", name, study, column)
                mask[:] = False
                continue
            seen[column].update(obs[column].dropna())
            mask &= obs[column].isin(allowed).to_numpy()
        log.info("%s: study '%s': %d of %d cells pass the filter", name, study, int(mask.sum()), len(mask))
        if mask.any():
            kept.append((study, X[np.flatnonzero(mask)], genes, obs.iloc[np.flatnonzero(mask)]))
    if not kept:
        present = {c: sorted(v)[:20] for c, v in seen.items()}
        wanted = {c: sorted(v) for c, v in filters.items()}
        raise ScmixInputError(
            f"no cells left after the filter {wanted}; values present: {present}",
            dataset=name,
            path=str(raw_dir),
        )
    return kept


def _join_genes(name, raw_dir, study_genes, how):
    """(gene Index, number of studies measuring each gene); logs what each study loses or lacks."""
    if how == "intersection":
        common = set.intersection(*(set(g) for _, g in study_genes))
        var_names = pd.Index([g for g in study_genes[0][1] if g in common], dtype=object)
        if len(var_names) == 0:
            raise ScmixInputError(
                f"the studies {[s for s, _ in study_genes]} share no gene symbol", dataset=name, path=str(raw_dir)
            )
        for study, genes in study_genes:
            log.info(
                "%s: study '%s' loses %d of its %d genes (gene intersection keeps %d)",
                name, study, len(genes) - len(var_names), len(genes), len(var_names),
            )  # fmt: skip
    else:
        var_names = pd.Index(pd.unique(np.concatenate([np.asarray(g, dtype=object) for _, g in study_genes])))
        for study, genes in study_genes:
            log.info(
                "%s: study '%s' lacks %d of the %d union genes (zero counts there)",
                name, study, len(var_names) - len(genes), len(var_names),
            )  # fmt: skip
    n_studies = np.zeros(len(var_names), dtype=np.int32)
    for _, genes in study_genes:
        n_studies += var_names.isin(genes)
    return var_names, n_studies


def _reindex_columns(X: sp.csr_matrix, target: np.ndarray, n_target: int) -> sp.csr_matrix:
    """Move column j of X to column target[j] of an n_target-column matrix; columns with target -1 are dropped."""
    coo = X.tocoo()
    new_col = target[coo.col]
    keep = new_col >= 0
    return sp.csr_matrix((coo.data[keep], (coo.row[keep], new_col[keep])), shape=(X.shape[0], n_target))


def _tidy_labels(obs: pd.DataFrame) -> pd.DataFrame:
    """String labels to categories; columns whose every value is a number (e.g. complexity) to numbers."""
    obs = obs.copy()
    for column in obs.columns:
        values = obs[column]
        if column not in LABEL_COLUMNS:
            numeric = pd.to_numeric(values, errors="coerce")
            if values.notna().any() and numeric.notna().sum() == values.notna().sum():
                obs[column] = numeric
                continue
        obs[column] = values.astype("category")
    return obs
