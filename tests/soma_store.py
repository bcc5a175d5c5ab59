"""A local SOMA store shaped like the CZ CELLxGENE Discover Census, written with tiledbsoma's own writer from
real AnnData objects (tests of ``source: census``).

Layout as the Census has it: a collection with ``census_info/summary`` (label, value) and
``census_data/homo_sapiens``, an experiment whose measurement ``RNA`` has the X layer ``raw`` (float32 counts),
var ``feature_id`` (Ensembl) and ``feature_name`` (symbol), and obs with the Census's column names. Genes are the
union of the datasets' Ensembl IDs; cells keep the datasets' order, so cell i of the store (``soma_joinid`` i) is
cell i of the first dataset, and so on."""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

SCHEMA_VERSION = "2.1.0"
BUILD_DATE = "2025-01-30"


def union_genes(datasets: dict[str, ad.AnnData]) -> pd.DataFrame:
    """feature_id (Ensembl) and feature_name of every gene of any dataset, in first-seen order."""
    ids, names = [], []
    seen = set()
    for adata in datasets.values():
        for gid, name in zip(adata.var["gene_ids"], adata.var_names, strict=True):
            if gid not in seen:
                seen.add(gid)
                ids.append(str(gid))
                names.append(str(name))
    return pd.DataFrame({"feature_id": ids, "feature_name": names}, index=ids)


def combined(datasets: dict[str, ad.AnnData], cells: dict[str, dict]) -> ad.AnnData:
    """The datasets stacked on the union of their genes; ``cells[name]`` holds Census obs values (donor_id, assay,
    ...) for all of that dataset's cells; cell_type comes from each dataset's own obs."""
    var = union_genes(datasets)
    position = pd.Series(np.arange(len(var)), index=var.index)
    blocks, frames = [], []
    for name, adata in datasets.items():
        X = sp.csr_matrix(adata.X, dtype=np.float32, copy=True)
        X.indices = position.loc[adata.var["gene_ids"].astype(str)].to_numpy()[X.indices].astype(X.indices.dtype)
        X = sp.csr_matrix((X.data, X.indices, X.indptr), shape=(adata.n_obs, len(var)))
        X.sort_indices()
        blocks.append(X)
        obs = pd.DataFrame(index=[f"{name}:{b}" for b in adata.obs_names])
        obs["cell_type"] = adata.obs["cell_type"].astype(str).to_numpy()
        for column, value in cells[name].items():
            obs[column] = value if np.isscalar(value) else np.asarray(value)
        obs["dataset_id"] = name
        frames.append(obs)
    obs = pd.concat(frames)
    return ad.AnnData(X=sp.vstack(blocks, format="csr"), obs=obs, var=var)


def write_census(root: Path, adata: ad.AnnData, organism: str = "homo_sapiens") -> Path:
    """``adata`` (Census obs/var columns, float32 counts in X) as a Census-shaped SOMA store at ``root``."""
    import pyarrow as pa
    import tiledbsoma
    import tiledbsoma.io

    root = Path(root)
    with tiledbsoma.Collection.create(str(root)) as census:
        census.add_new_collection("census_data")
        info = census.add_new_collection("census_info")
        summary = pd.DataFrame({"soma_joinid": np.arange(2, dtype=np.int64),
                                "label": ["census_schema_version", "census_build_date"],
                                "value": [SCHEMA_VERSION, BUILD_DATE]})  # fmt: skip
        schema = pa.schema([("label", pa.large_string()), ("value", pa.large_string())])
        with info.add_new_dataframe("summary", schema=schema, domain=[[0, 1]]) as frame:
            frame.write(pa.Table.from_pandas(summary, preserve_index=False))
    uri = tiledbsoma.io.from_anndata(str(root / "census_data" / organism), adata, measurement_name="RNA",
                                     X_layer_name="raw", obs_id_name="obs_id", var_id_name="var_id")  # fmt: skip
    with tiledbsoma.Collection.open(str(root / "census_data"), "w") as data, tiledbsoma.Experiment.open(uri) as exp:
        data.set(organism, exp, use_relative_uri=True)
    return root
