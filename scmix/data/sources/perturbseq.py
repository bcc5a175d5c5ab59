"""Perturb-seq: per-GEM-group 10x MEX folders collated into one AnnData, guides called per cell.

Barcodes become ``{barcode core}-{gem group}`` (the 10x aggr convention). Guide-capture features move
to ``obsm['guide_counts']`` (CSR, columns in ``uns['guides']``). A cell's guide call is its top guide
when that guide has at least ``min_umis`` UMIs and at least ``min_fraction`` of the cell's guide UMIs;
otherwise ``none`` (no guide reaches ``min_umis``) or ``multiple``. The target comes from a
guide -> target table; non-targeting guides keep the table's target label (e.g. ``non-targeting``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from scmix.data.sources.tenx import mex_sets, read_tenx
from scmix.errors import ScmixInputError

log = logging.getLogger("scmix.data.sources.perturbseq")
GUIDE_TYPE = "CRISPR Guide Capture"


def call_guides(counts: sp.csr_matrix, guides: np.ndarray, min_umis: int, min_fraction: float) -> pd.DataFrame:
    counts = sp.csr_matrix(counts)
    total = np.asarray(counts.sum(axis=1)).ravel()
    top_idx = np.asarray(counts.argmax(axis=1)).ravel()
    top = counts[np.arange(counts.shape[0]), top_idx].A1 if counts.shape[1] else np.zeros(counts.shape[0])
    passing = np.asarray((counts >= min_umis).sum(axis=1)).ravel()
    frac = np.divide(top, total, out=np.zeros_like(top, dtype=float), where=total > 0)
    call = np.where(top < min_umis, "none", np.where(frac >= min_fraction, guides[top_idx], "multiple"))
    return pd.DataFrame({"guide_call": call, "guide_umis_top": top.astype(int), "guide_umis_total": total.astype(int),
                         "guide_top_fraction": frac, "n_guides_passing": passing})  # fmt: skip


def _find(raw_dir: Path, name: str) -> Path | None:
    hits = sorted(raw_dir.rglob(name))
    return hits[0] if hits else None


def parse(name: str, spec: dict, raw_dir: Path) -> ad.AnnData:
    found = mex_sets(raw_dir)
    if spec.get("gem_groups"):
        folders = []
        for g in spec["gem_groups"]:
            hit = [m for m in found if g in (m.label, m.folder.name, str(m.folder.relative_to(raw_dir)))]
            if not hit:
                raise ScmixInputError(f"GEM group folder '{g}' not found", dataset=name, path=str(raw_dir))
            folders.append(hit[0])
    else:
        folders = found
    if not folders:
        raise ScmixInputError("no 10x MEX folders (matrix.mtx[.gz]) found", dataset=name, path=str(raw_dir))

    parts = []
    for gem, folder in enumerate(folders, start=1):
        a = read_tenx(name, folder, gex_only=False)
        a.obs_names = a.obs_names.str.replace(r"-\d+$", "", regex=True) + f"-{gem}"
        a.obs["gem_group"] = gem
        a.obs["gem_folder"] = folder.label
        parts.append(a)
        log.info("%s: GEM group %d (%s): %d cells x %d features", name, gem, folder.label, a.n_obs, a.n_vars)
    features = parts[0].var
    for a, folder in zip(parts[1:], folders[1:], strict=True):
        if not a.var.index.equals(features.index):
            raise ScmixInputError("features differ from the first GEM group's", dataset=name,
                                  path=str(folder.folder / folder.prefix))  # fmt: skip
    adata = ad.concat(parts, join="inner", merge="first")
    adata.obs["gem_folder"] = adata.obs["gem_folder"].astype("category")

    is_guide = (features["feature_types"] == GUIDE_TYPE).to_numpy() if "feature_types" in features else None
    if is_guide is None or not is_guide.any():
        raise ScmixInputError(f"no '{GUIDE_TYPE}' features", dataset=name, path=str(folders[0].folder))
    guides = adata.var_names[is_guide].to_numpy()
    guide_counts = sp.csr_matrix(adata.X[:, is_guide])
    adata = adata[:, ~is_guide].copy()
    adata.obsm["guide_counts"] = guide_counts
    adata.uns["guides"] = list(guides)

    calls = call_guides(guide_counts, guides, int(spec.get("min_umis", 5)), float(spec.get("min_fraction", 0.5)))
    for col in calls:
        adata.obs[col] = calls[col].to_numpy()
    target_file = spec.get("guide_targets")
    if target_file:
        path = _find(raw_dir, target_file)
        if path is None:
            raise ScmixInputError(f"guide target table '{target_file}' not found", dataset=name, path=str(raw_dir))
        table = pd.read_csv(path)
        gcol = spec.get("guide_column") or table.columns[0]
        tcol = spec.get("target_column") or table.columns[1]
        mapping = dict(zip(table[gcol].astype(str), table[tcol].astype(str), strict=True))
        unknown = sorted(set(guides) - set(mapping))
        if unknown:
            raise ScmixInputError(f"{len(unknown)} guides are not in the target table (e.g. {unknown[:3]})",
                                  dataset=name, path=str(path))  # fmt: skip
        calls_t = adata.obs["guide_call"].map(lambda g: mapping.get(g, g))
        adata.obs["target_gene"] = pd.Categorical(calls_t)
        nt_label = spec.get("non_targeting_label", "non-targeting")
        adata.obs["perturbed"] = ~adata.obs["target_gene"].isin([nt_label, "none", "multiple"])
        if spec.get("drop_non_targeting", False):
            adata = adata[adata.obs["target_gene"] != nt_label].copy()
    adata.obs["guide_call"] = adata.obs["guide_call"].astype("category")
    return adata
