"""What every parsed dataset must be before the workflow takes it, checked once for every source by
``scmix.data.sources.parse_dataset``: cells at all and genes at all, each cell named once, and cells as rows.

A transposed matrix (genes as rows) would otherwise be taken as it is: its "cells" would be genes. It is told by
names, never by shape (bulk data are a few samples by many genes): rows named like genes (Ensembl, FlyBase,
WormBase or RefSeq IDs, or mitochondrial gene symbols) or columns named like cell barcodes (a run of 12 or more
A/C/G/T: 10x barcodes are 14 or 16 letters, often with a ``-1`` suffix or a sample prefix). No real gene is named
like a barcode and no real cell like a gene ID; ``tests/data/test_source_checks.py`` runs the check over every real
dataset the source tests read.
"""

from __future__ import annotations

from collections.abc import Mapping

import anndata as ad
import numpy as np
import pandas as pd

from scmix.errors import ScmixInputError

GENE_ID = r"^(?:ENS[A-Z]*G\d{11}|FBgn\d{7}|WBGene\d{8}|[NX][MR]_\d{6,9})(?:\.\d+)?$"
BARCODE = r"[ACGT]{12,}"
# the 13 protein-coding mitochondrial genes, human (MT-) and mouse (mt-) symbols
MITO_GENES = frozenset(
    f"{p}{g}" for p in ("MT-", "mt-", "Mt-")
    for g in ("ND1", "ND2", "CO1", "CO2", "ATP8", "ATP6", "CO3", "ND3", "ND4L", "ND4", "ND5", "ND6", "CYB",
              "Nd1", "Nd2", "Co1", "Co2", "Atp8", "Atp6", "Co3", "Nd3", "Nd4l", "Nd4", "Nd5", "Nd6", "Cytb")
)  # fmt: skip
LOOKS = 0.5  # share of the names sampled that must look alike
SAMPLE = 5000  # names sampled (evenly spaced) to judge a side by
MIN_MITO = 3  # mitochondrial gene symbols among the rows that mark them as genes

# what to change when a source's cells and genes are swapped
TRANSPOSE_HINTS = {
    "h5ad": "set transpose: {flip} for this dataset",
    "csv": "set orientation: {orientation} for this dataset",
    "geo": "set orientation: {orientation} for this dataset",
    "rdata": "store the counts genes x cells (t() in R) and save the object again",
}
DEFAULT_HINT = "write the file again with its cells and genes the other way round"


def check_not_empty(adata: ad.AnnData, *, dataset: str, path: str) -> None:
    if adata.n_obs == 0 or adata.n_vars == 0:
        empty = " and ".join(w for w, n in (("no cells", adata.n_obs), ("no genes", adata.n_vars)) if n == 0)
        raise ScmixInputError(f"the file holds {empty} ({adata.n_obs} x {adata.n_vars}); point the dataset at a "
                              "file with counts", dataset=dataset, path=path)  # fmt: skip


def check_unique_cells(names, *, dataset: str, path: str) -> None:
    """One clear line when a cell (barcode) name repeats: downstream, a cell is its dataset and its name."""
    names = pd.Index(names).astype(str)
    if names.is_unique:
        return
    dups = names[names.duplicated()]
    n = len(set(dups))
    what = "1 cell name appears" if n == 1 else f"{n:,} cell names appear"
    raise ScmixInputError(f"{what} more than once (e.g. {dups[0]!r}, {int((names == dups[0]).sum())} times): each "
                          "cell must be listed once; remove the repeated cells (barcodes) from the file",
                          dataset=dataset, path=path)  # fmt: skip


def _sample(names: pd.Index) -> pd.Index:
    names = pd.Index(names).astype(str)
    if len(names) > SAMPLE:
        names = names[np.linspace(0, len(names) - 1, SAMPLE).astype(int)]
    return names


def _share(names: pd.Index, pattern: str, *, search: bool = False) -> float:
    if not len(names):
        return 0.0
    hits = names.str.contains(pattern, regex=True) if search else names.str.match(pattern)
    return float(np.mean(hits))


def _example(names: pd.Index, pattern: str, *, search: bool = False) -> str:
    hits = names.str.contains(pattern, regex=True) if search else names.str.match(pattern)
    return str(names[np.asarray(hits)][0])


def transposed_evidence(obs_names, var_names) -> str | None:
    """Why the rows of a cells x genes matrix look like genes and its columns like cells, or None."""
    rows, columns = _sample(obs_names), _sample(var_names)
    reasons = []
    if _share(rows, GENE_ID) >= LOOKS:
        reasons.append(f"its rows are named like gene IDs (e.g. {_example(rows, GENE_ID)!r})")
    mito = sorted(set(pd.Index(obs_names).astype(str)) & MITO_GENES)
    if len(mito) >= MIN_MITO:
        reasons.append(f"its rows include the mitochondrial genes {', '.join(mito[:3])}")
    if _share(columns, BARCODE, search=True) >= LOOKS:
        reasons.append(f"its columns are named like cell barcodes (e.g. {_example(columns, BARCODE, search=True)!r})")
    return " and ".join(reasons) or None


def check_orientation(adata: ad.AnnData, spec: Mapping, *, dataset: str, path: str) -> None:
    """One clear line when the parsed matrix's rows look like genes or its columns like cells."""
    evidence = transposed_evidence(adata.obs_names, adata.var_names)
    if evidence is None:
        return
    orientation = spec.get("orientation", "genes_x_samples")
    other = "samples_x_genes" if orientation == "genes_x_samples" else "genes_x_samples"
    hint = TRANSPOSE_HINTS.get(spec.get("source"), DEFAULT_HINT).format(
        flip="false" if spec.get("transpose") else "true", orientation=other
    )
    raise ScmixInputError(f"looks transposed (genes as rows, cells as columns): read as {adata.n_obs:,} cells x "
                          f"{adata.n_vars:,} genes, {evidence}; {hint}", dataset=dataset, path=path)  # fmt: skip


def check_cells(adata: ad.AnnData, spec: Mapping, *, dataset: str, path: str) -> None:
    """Every check of this module, in the order a user would fix them."""
    check_not_empty(adata, dataset=dataset, path=path)
    check_orientation(adata, spec, dataset=dataset, path=path)
    check_unique_cells(adata.obs_names, dataset=dataset, path=path)
