"""Gene harmonisation across datasets: which genes a mix (and so a model) uses, matched how.

Genes are matched on Ensembl IDs (version suffix ignored) when every dataset has them, else on gene
symbols (``match_on: auto``); or as configured. The gene space is the intersection across the mix's
datasets, or a fixed gene list, optionally narrowed to highly variable genes of the mix's raw counts
(scanpy ``seurat_v3``). Every output records the genes it kept.
"""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from scmix.data.expression import sparse_log1p_cp10k
from scmix.errors import ScmixInputError

log = logging.getLogger("scmix.data.genes")
_VERSION = re.compile(r"\.\d+$")

# the fewest genes the datasets of a mix (or of the gene universe) must share (config genes.min_shared)
MIN_SHARED_GENES = 500
# genome prefixes that 10x references of more than one genome put before every gene name and ID
GENOME_PREFIX = re.compile(r"^((?:hg19|hg38|GRCh37|GRCh38|mm9|mm10|mm39|GRCm38|GRCm39)[_-])")


def genome_prefix(names) -> str | None:
    """The genome prefix (e.g. ``mm10_``) that most of ``names`` carry, or None."""
    names = pd.Series(pd.Index(names).astype(str))
    if not len(names):
        return None
    found = names.str.extract(GENOME_PREFIX, expand=False)
    top = found.value_counts()
    return str(top.index[0]) if len(top) and top.iloc[0] >= 0.5 * len(names) else None


def prefix_hint(parts: Mapping[str, ad.AnnData]) -> str:
    """'; dataset 'x''s genes carry the genome prefix ...' for the first dataset whose names or IDs carry one."""
    for d, a in parts.items():
        for what, names in (("gene names", a.var_names), ("gene IDs", a.var.get("gene_ids", pd.Index([])))):
            prefix = genome_prefix(names)
            if prefix:
                return (f"; dataset '{d}''s {what} carry the genome prefix '{prefix}' (e.g. {pd.Index(names)[0]}): set "
                        f"genes.strip_prefix: '{prefix}'")  # fmt: skip
    return ""


def has_ensembl_ids(adata: ad.AnnData, min_share: float = 0.9) -> bool:
    if "gene_ids" not in adata.var:
        return False
    ids = adata.var["gene_ids"].astype(str)
    return bool(ids.str.startswith("ENS").mean() >= min_share)


def resolve_match_on(parts: Mapping[str, ad.AnnData], match_on: str = "auto", what: str | None = None) -> str:
    """The key genes are matched on; with ``what`` (e.g. "mix 'm'"), ``auto``'s decision and its reason are logged."""
    if match_on == "auto":
        lacking = [d for d, a in parts.items() if not has_ensembl_ids(a)]
        if what:
            if not lacking:
                log.info("%s: genes matched on Ensembl IDs (genes.match_on auto): every dataset has them in "
                         "var['gene_ids']", what)  # fmt: skip
            else:
                d = lacking[0]
                ids = parts[d].var.get("gene_ids")
                why = "has no var['gene_ids']" if ids is None else (
                    f"has Ensembl IDs for only {ids.astype(str).str.startswith('ENS').mean():.0%} of its genes "
                    f"(e.g. {ids.iloc[0]})")  # fmt: skip
                log.info("%s: genes matched on symbols (genes.match_on auto), since dataset '%s' %s%s", what, d, why,
                         prefix_hint({d: parts[d]}))  # fmt: skip
        return "symbols" if lacking else "gene_ids"
    if match_on == "gene_ids":
        lacking = [d for d, a in parts.items() if "gene_ids" not in a.var]
        if lacking:
            raise ScmixInputError(f"genes.match_on is gene_ids but datasets {lacking} have no var['gene_ids']")
    elif match_on != "symbols":
        raise ValueError(f"unknown genes.match_on '{match_on}' (auto, gene_ids, symbols)")
    return match_on


def gene_keys(adata: ad.AnnData, match_on: str) -> pd.Index:
    """The matching key of every gene of ``adata``: Ensembl ID without version, or symbol."""
    if match_on == "gene_ids":
        return pd.Index(adata.var["gene_ids"].astype(str).str.replace(_VERSION, "", regex=True))
    return pd.Index(adata.var_names.astype(str))


def read_gene_list(path: str | Path) -> list[str]:
    try:
        genes = [g.strip() for g in Path(path).read_text().splitlines() if g.strip() and not g.startswith("#")]
    except OSError as err:
        raise ScmixInputError(f"cannot read gene list: {err}", path=str(path)) from err
    if not genes:
        raise ScmixInputError("gene list is empty", path=str(path))
    return genes


def shared_keys(parts: Mapping[str, ad.AnnData], match_on: str, gene_list: Sequence[str] | None = None, *,
                min_shared: int = MIN_SHARED_GENES, what: str = "the mix") -> pd.Index:  # fmt: skip
    """Keys present in every part, in the first part's order (or the gene list's order).

    Datasets that share fewer than ``min_shared`` genes fail (a model on a handful of mostly mitochondrial genes
    would train without a word); a gene list is the user's own choice and is not held to it."""
    keysets = {d: gene_keys(a, match_on) for d, a in parts.items()}
    for d, keys in keysets.items():
        if keys.has_duplicates:
            log.warning("dataset '%s': %d genes share a %s key; the first of each is used", d,
                        int(keys.duplicated().sum()), match_on)  # fmt: skip
    names = list(parts)
    if gene_list is not None:
        shared = pd.Index(pd.unique(pd.Index([_VERSION.sub("", g) if match_on == "gene_ids" else g
                                              for g in gene_list])))  # fmt: skip
        for d in names:
            missing = shared.difference(keysets[d])
            if len(missing):
                raise ScmixInputError(f"{len(missing)} genes of the gene list are not in the dataset "
                                      f"(e.g. {list(missing[:3])}){removed_by_qc(parts[d], missing, match_on)}",
                                      dataset=d)  # fmt: skip
        return shared
    shared = keysets[names[0]].drop_duplicates()
    for d in names[1:]:
        before = len(shared)
        shared = shared[shared.isin(keysets[d])]
        log.info("genes: %d of %d shared after adding dataset '%s'", len(shared), before, d)
    if len(names) > 1 and len(shared) < min_shared:
        sizes = ", ".join(f"{d} {len(keysets[d]):,}" for d in names)
        raise ScmixInputError(
            f"the datasets of {what} share only {len(shared):,} genes (matched on {match_on}; genes per dataset: "
            f"{sizes}), fewer than genes.min_shared = {min_shared:,}; check that the datasets name genes the same "
            f"way (genes.match_on), or lower genes.min_shared{prefix_hint(parts)}"
        )
    if len(shared) == 0:
        raise ScmixInputError(f"datasets {names} share no genes (matched on {match_on}){prefix_hint(parts)}")
    return shared


def removed_by_qc(adata: ad.AnnData, missing: pd.Index, match_on: str) -> str:
    """'; N of them were removed by QC ...' for the genes of ``missing`` that QC removed (``uns["qc_removed_genes"]``
    of a QC'd dataset), else ''."""
    table = adata.uns.get("qc_removed_genes")
    if table is None or not len(table):
        return ""
    table = pd.DataFrame(table)
    keys = table["gene_id"].astype(str).str.replace(_VERSION, "", regex=True) if match_on == "gene_ids" else (
        table["gene"].astype(str))  # fmt: skip
    hit = table[keys.isin(missing).to_numpy()]
    if not len(hit):
        return "; QC removed none of them, so the dataset never had them"
    steps = ", ".join(f"{n} by qc.{step}" for step, n in hit["step"].value_counts().items())
    return (f"; {len(hit)} of them were removed by QC ({steps}; e.g. {hit['gene'].iloc[0]}): change that threshold for "
            "this dataset (its qc block) or drop them from the gene list")  # fmt: skip


def positions(own, keys) -> np.ndarray:
    """Position in ``own`` of each of ``keys`` (the first, where a key repeats in ``own``); -1 if absent.

    The one gene lookup shared by mixing (``select``) and evaluation (``reindex_to_genes``).
    """
    own = pd.Index(own)
    first = np.flatnonzero(~own.duplicated())
    hit = own[first].get_indexer(keys)
    return np.where(hit >= 0, first[hit], -1)


def reindex_to_genes(adata, genes, *, min_overlap: float, eval_set: str, keys=None, kind: str = "dataset"):
    """Counts of ``adata`` in the order of ``genes``; genes the eval set lacks are zero-padded.

    ``keys`` are the eval set's own gene keys to match ``genes`` against (default its var_names; the
    Ensembl IDs when the model's genes were matched on IDs). Warns when padding happens and fails below
    ``min_overlap`` (fraction of model genes found).
    """
    genes = pd.Index(genes)
    pos = positions(adata.var_names if keys is None else keys, genes)
    found = pos >= 0
    overlap = found.mean()
    if overlap < min_overlap:
        raise ScmixInputError(
            f"only {found.sum()} of the model's {len(genes)} genes ({overlap:.1%}) are in the eval set; "
            f"the minimum is {min_overlap:.0%} (evaluation.min_gene_overlap)",
            **{kind: eval_set},
        )
    if not found.all():
        warnings.warn(
            f"eval set '{eval_set}': {int((~found).sum())} of {len(genes)} model genes are missing and are zero-padded",
            stacklevel=2,
        )
    X = sp.csr_matrix(adata.layers["counts"] if "counts" in adata.layers else adata.X)
    cols = sp.csr_matrix((np.ones(found.sum()), (pos[found], np.flatnonzero(found))), shape=(adata.n_vars, len(genes)))
    return (X @ cols).tocsr(), float(overlap)


def key_positions(adata: ad.AnnData, keys: pd.Index, match_on: str) -> np.ndarray:
    """Positions in ``adata`` of the genes ``keys`` (first gene of a duplicated key); every key must be there."""
    pos = positions(gene_keys(adata, match_on), keys)
    if (pos < 0).any():
        raise ScmixInputError(f"{int((pos < 0).sum())} genes missing (e.g. {list(keys[pos < 0][:3])})")
    return pos


def select(adata: ad.AnnData, keys: pd.Index, match_on: str) -> ad.AnnData:
    """``adata`` restricted to ``keys`` in that order (first gene of a duplicated key)."""
    return adata[:, key_positions(adata, keys, match_on)]


# scanpy's flavours that expect log-normalised data (seurat_v3 and seurat_v3_paper expect counts)
LOG_FLAVORS = ("seurat", "cell_ranger")


def highly_variable(adata: ad.AnnData, n_top_genes: int, flavor: str = "seurat_v3",
                    batch_key: str | None = None) -> pd.Index:  # fmt: skip
    """Names of the top ``n_top_genes`` variable genes (scanpy): the ``seurat_v3`` flavours on the raw counts, as
    they expect; ``seurat`` and ``cell_ranger``, which expect log data, on a log1p(CP10k) copy (the counts stay)."""
    import scanpy as sc

    if n_top_genes >= adata.n_vars:
        return adata.var_names
    if batch_key and (batch_key not in adata.obs or adata.obs[batch_key].nunique() < 2):
        batch_key = None
    if flavor in LOG_FLAVORS:
        obs = adata.obs[[batch_key]] if batch_key else pd.DataFrame(index=adata.obs_names)
        adata = ad.AnnData(X=sparse_log1p_cp10k(adata.X, dtype=np.float32), obs=obs,
                           var=pd.DataFrame(index=adata.var_names))  # fmt: skip
    hvg = sc.pp.highly_variable_genes(adata, flavor=flavor, n_top_genes=n_top_genes, batch_key=batch_key,
                                      inplace=False, subset=False)  # fmt: skip
    hvg.index = adata.var_names
    return adata.var_names[hvg["highly_variable"].to_numpy()]
