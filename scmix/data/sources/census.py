"""``source: census``: cells of the CZ CELLxGENE Discover Census, or of any SOMA store shaped like it
(a collection holding ``census_data/<organism>``, an experiment with measurement ``RNA``, its X layer ``raw``).

The download step runs the query and writes the kept cells' raw counts to ``census.h5ad`` in the raw folder; the
parse step reads that file. The query, in order, so that memory follows the cells kept and not the cells matched:

1. the ``soma_joinid`` of every cell that ``obs_value_filter`` (the Census's query language, e.g.
   ``tissue_general == 'blood' and disease == 'normal' and is_primary_data == True``) matches, and nothing else;
2. with ``obs_filter`` (a pandas query, as for every source), those whose ``obs_columns`` it keeps; then
   ``max_cells`` of them drawn with ``seed`` (``scmix.data.sources.select.subsample`` over the ids: the same store,
   filter and seed keep the same cells);
3. the ``obs_columns`` of those cells, the genes that ``var_value_filter`` keeps, and their counts from the X
   layer ``layer`` (default ``raw``), ``CHUNK_CELLS`` cells at a time, each chunk turned into CSR at once.

Keys: ``census_version`` (default ``stable``; a dated release such as ``2025-01-30`` keeps a study reproducible),
``uri`` (a local folder or remote URI of a SOMA store; overrides ``census_version``), ``organism`` (default
``homo_sapiens``; ``Homo sapiens`` is accepted), ``obs_value_filter``, ``var_value_filter``, ``obs_columns``,
``layer``, ``obs_filter``, ``max_cells``, ``seed``. Cells are named by their ``soma_joinid``; var is indexed by gene
symbol (``feature_name``) with Ensembl IDs (``feature_id``) in ``gene_ids``. ``obs`` keeps the Census's own column
names; ``donor`` and ``batch`` are added as copies of ``donor_id`` and ``dataset_id`` unless ``obs_keys`` sets them.
``uns["census"]`` records the store, its schema version and build date, the query and the cell counts;
``uns["selection"]``, with ``obs_filter`` or ``max_cells``, what they kept (``cells_in_file``: the cells
``obs_value_filter`` matched), as for every source.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from scmix.data.sources.registry import SOURCE_FILE
from scmix.data.sources.select import query_obs, selection_record, subsample, wanted
from scmix.data.sources.tables import _gene_index
from scmix.data.urls import local_store
from scmix.errors import ScmixInputError
from scmix.io import read_h5ad, write_h5ad

log = logging.getLogger("scmix.data.sources.census")

FILE = "census.h5ad"
CHUNK_CELLS = 20_000
OBS_COLUMNS = ("cell_type", "cell_type_ontology_term_id", "donor_id", "assay", "dataset_id", "tissue",
               "tissue_general", "disease", "sex", "development_stage", "is_primary_data")  # fmt: skip
WORKFLOW_KEYS = {"donor": "donor_id", "batch": "dataset_id"}  # the workflow's keys -> the Census's columns
QUERY_KEYS = ("census_version", "uri", "organism", "obs_value_filter", "var_value_filter", "obs_columns", "layer",
              "obs_filter", "max_cells", "seed")  # fmt: skip
INSTALL = "pip install cellxgene-census tiledbsoma (see requirements.txt for the pinned versions)"


def _first_line(err: Exception) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__


def _where(spec: Mapping) -> str:
    return f"uri {spec['uri']}" if spec.get("uri") else f"census_version {spec.get('census_version', 'stable')}"


def _store_uri(spec: Mapping, dataset: str) -> str | None:
    uri = spec.get("uri")
    if uri is None:
        return None
    folder = local_store(uri)
    if folder is None:
        return uri
    if not folder.is_dir():
        raise ScmixInputError(f"uri {uri} is not a folder holding a SOMA store; give the folder of a Census-shaped "
                              "store, or leave uri out to read census_version", dataset=dataset)  # fmt: skip
    return str(folder.resolve())


def open_store(spec: Mapping, dataset: str):
    """The opened Census (a SOMA collection): ``uri`` when given, else the release ``census_version``."""
    try:
        import cellxgene_census
    except ImportError as err:
        raise ScmixInputError(f"source census needs cellxgene-census, which cannot be imported ({err}): {INSTALL}",
                              dataset=dataset) from err  # fmt: skip
    uri = _store_uri(spec, dataset)
    try:
        if uri is not None:
            return cellxgene_census.open_soma(uri=uri)
        return cellxgene_census.open_soma(census_version=spec.get("census_version", "stable"))
    except Exception as err:
        raise ScmixInputError(f"cannot open the Census at {_where(spec)}: {_first_line(err)}; check the version (or "
                              "uri) and the network", dataset=dataset) from err  # fmt: skip


def _summary(census) -> dict:
    """The store's own description (``census_info/summary``: schema version, build date), where it has one."""
    try:
        table = census["census_info"]["summary"].read().concat().to_pandas()
        return {str(k): str(v) for k, v in zip(table["label"], table["value"], strict=True)}
    except Exception:  # a store without census_info: nothing to record
        return {}


def _read(frame, dataset: str, what: str, **kwargs) -> pd.DataFrame:
    try:
        return frame.read(**kwargs).concat().to_pandas()
    except Exception as err:
        raise ScmixInputError(f"{what}: {_first_line(err)}; correct it (column names: "
                              f"{', '.join(frame.schema.names)})", dataset=dataset) from err  # fmt: skip


def query(name: str, spec: Mapping) -> ad.AnnData:
    """The kept cells of the Census as an AnnData (float counts as the store holds them, CSR)."""
    organism = str(spec.get("organism", "homo_sapiens")).strip().lower().replace(" ", "_")
    layer = spec.get("layer", "raw")
    obs_filter, var_filter = spec.get("obs_value_filter"), spec.get("var_value_filter")
    with open_store(spec, name) as census:
        summary = _summary(census)
        data = census["census_data"]
        if organism not in data:
            raise ScmixInputError(f"the Census at {_where(spec)} has no organism '{organism}' (it has "
                                  f"{sorted(data.keys())}); correct organism", dataset=name)  # fmt: skip
        experiment = data[organism]
        obs_frame = experiment.obs
        found = set(obs_frame.schema.names)
        asked = list(spec.get("obs_columns") or [c for c in OBS_COLUMNS if c in found])
        missing = [c for c in asked if c not in found]
        if missing:
            raise ScmixInputError(f"obs_columns {missing} are not in the Census's cell table; it has "
                                  f"{sorted(found)}; correct obs_columns", dataset=name)  # fmt: skip
        what = f"obs_value_filter {obs_filter!r} cannot be applied to the Census at {_where(spec)}"
        ids = _read(obs_frame, name, what, value_filter=obs_filter, column_names=["soma_joinid"])["soma_joinid"]
        ids = np.sort(ids.to_numpy(dtype=np.int64))
        if ids.size == 0:
            raise ScmixInputError(f"obs_value_filter {obs_filter!r} matches no cell of the Census at "
                                  f"{_where(spec)}; loosen it", dataset=name)  # fmt: skip
        matched = ids
        if spec.get("obs_filter") is not None:  # a pandas query on the obs_columns of the cells the store matched
            table = _read(obs_frame, name, "obs_columns", coords=(ids,), column_names=["soma_joinid", *asked])
            table = table.sort_values("soma_joinid").drop(columns="soma_joinid").reset_index(drop=True)
            matched = ids[query_obs(table, spec["obs_filter"], dataset=name, path=None)]
        kept = matched[subsample(len(matched), spec.get("max_cells"), spec.get("seed", 0))]
        log.info("%s: %d cells match, %d kept; reading their counts", name, len(matched), len(kept))
        obs = _read(obs_frame, name, "obs_columns", coords=(kept,), column_names=["soma_joinid", *asked])
        obs = obs.sort_values("soma_joinid")
        obs.index = pd.Index(obs["soma_joinid"].astype(str).to_numpy(), dtype=object)
        rna = experiment.ms["RNA"]
        what = f"var_value_filter {var_filter!r} cannot be applied to the Census at {_where(spec)}"
        var = _read(rna.var, name, what, value_filter=var_filter,
                    column_names=["soma_joinid", "feature_id", "feature_name"])  # fmt: skip
        var = var.sort_values("soma_joinid")
        if var.empty:
            raise ScmixInputError(f"var_value_filter {var_filter!r} keeps no gene; loosen it", dataset=name)
        if layer not in rna.X:
            raise ScmixInputError(f"the Census's RNA measurement has no X layer '{layer}' (it has "
                                  f"{sorted(rna.X.keys())}); correct layer", dataset=name)  # fmt: skip
        X = _read_counts(name, rna.X[layer], kept, var["soma_joinid"].to_numpy(dtype=np.int64))
    var = _gene_index(name, _where(spec), var.set_index(var["soma_joinid"].astype(str).to_numpy()),
                      id_column="feature_id", symbol_column="feature_name")  # fmt: skip
    record = selection_record(len(matched), len(kept), spec, keys=QUERY_KEYS)
    record["organism"], record["layer"] = organism, layer
    record.update({f"store_{k}": v for k, v in summary.items()})
    selection = {**selection_record(len(matched), len(kept), spec), "cells_in_file": len(ids)}
    uns = {"census": record, "selection": selection} if wanted(spec) else {"census": record}
    return ad.AnnData(X=X, obs=obs, var=var, uns=uns)


def _read_counts(name: str, matrix, cells: np.ndarray, genes: np.ndarray) -> sp.csr_matrix:
    """Rows ``cells`` x columns ``genes`` (both ascending soma_joinids) of a SOMA sparse matrix, as CSR, read
    ``CHUNK_CELLS`` cells at a time."""
    blocks, start_time = [], time.monotonic()
    for start in range(0, len(cells), CHUNK_CELLS):
        chunk = cells[start : start + CHUNK_CELLS]
        rows, cols, values = [], [], []
        for table in matrix.read(coords=(chunk, genes)).tables():
            rows.append(np.searchsorted(chunk, table["soma_dim_0"].to_numpy()))
            cols.append(np.searchsorted(genes, table["soma_dim_1"].to_numpy()))
            values.append(table["soma_data"].to_numpy())
        if rows:
            rows, cols, values = np.concatenate(rows), np.concatenate(cols), np.concatenate(values)
        else:
            rows, cols, values = np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
        blocks.append(sp.csr_matrix((values, (rows, cols)), shape=(len(chunk), len(genes))))
        log.info("%s: counts of %d / %d cells read (%.0f s)", name, start + len(chunk), len(cells),
                 time.monotonic() - start_time)  # fmt: skip
    if not blocks:
        return sp.csr_matrix((0, len(genes)), dtype=np.float32)
    return sp.vstack(blocks, format="csr")


def fetch(name: str, spec: Mapping, raw_dir: Path) -> Path:
    """The download step: query the Census and write the kept cells to ``raw_dir/census.h5ad``."""
    adata = query(name, spec)
    path = Path(raw_dir) / FILE
    write_h5ad(adata, path)
    return path


def parse(name: str, spec: dict, raw_dir: Path) -> ad.AnnData:
    adata = read_h5ad(Path(raw_dir) / FILE, dataset=name)
    adata.uns[SOURCE_FILE] = str(Path(raw_dir) / FILE)
    mapped = spec.get("obs_keys") or {}
    for key, column in WORKFLOW_KEYS.items():
        if key not in mapped and key not in adata.obs and column in adata.obs:
            adata.obs[key] = adata.obs[column]
    return adata
