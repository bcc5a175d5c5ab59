"""The ``h5ad`` and ``csv`` sources (the bulk path) on real bulk RNA-seq files: airway, pasilla, Illumina Body Map."""

import logging
import shutil

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from scmix.data.sources import parse_dataset, tables
from scmix.errors import ScmixInputError
from scmix.io import write_h5ad

PASILLA = {"source": "csv", "counts": "pasilla_gene_counts.tsv", "metadata": "pasilla_sample_annotation.csv"}
BODYMAP = {"source": "csv", "counts": "IlluminaBodymap.csv.gz", "metadata": "IlluminaBodymapMeta.csv.gz"}


def copy_raw(tmp_path, *files):
    raw = tmp_path / "raw"
    raw.mkdir(exist_ok=True)
    for f in files:
        shutil.copy(f, raw / f.name)
    return raw


@pytest.fixture
def airway_raw(shared_data, tmp_path):
    return copy_raw(tmp_path, shared_data / "bulk" / "airway" / "airway.h5ad")


@pytest.fixture
def pasilla_raw(shared_data, tmp_path):
    folder = shared_data / "bulk" / "pasilla"
    return copy_raw(tmp_path, folder / "pasilla_gene_counts.tsv", folder / "pasilla_sample_annotation.csv")


@pytest.fixture
def bodymap_raw(shared_data, tmp_path):
    folder = shared_data / "bulk" / "illumina_bodymap"
    return copy_raw(tmp_path, folder / "IlluminaBodymap.csv.gz", folder / "IlluminaBodymapMeta.csv.gz")


# ---------------------------------------------------------------------------------------------- h5ad


def test_airway_h5ad(airway_raw, shared_data, tmp_path):
    adata = parse_dataset("airway", {"source": "h5ad", "file": "airway.h5ad"}, airway_raw)
    assert adata.shape == (8, 64102) and adata.X.format == "csr" and adata.X.dtype == np.int32
    original = ad.read_h5ad(shared_data / "bulk" / "airway" / "airway.h5ad")
    np.testing.assert_array_equal(adata.X.toarray(), original.X)
    assert adata.obs.loc["SRR1039508", "cell"] == "N61311" and adata.obs.loc["SRR1039508", "dex"] == "untrt"
    assert adata.obs.loc["SRR1039509", "dex"] == "trt" and adata.obs["cell"].nunique() == 4
    assert adata.var_names[0] == "ENSG00000000003" and (adata.var["gene_ids"] == adata.var_names).all()
    assert int(adata.X.sum(dtype=np.int64)) == int(original.X.astype(np.int64).sum()) == 175_516_423
    write_h5ad(adata, tmp_path / "out.h5ad")
    default = parse_dataset("airway", {"source": "h5ad"}, airway_raw)  # the one h5ad in raw_dir
    assert default.shape == adata.shape


def test_h5ad_counts_in_a_layer_and_transposed(shared_data, tmp_path):
    real = ad.read_h5ad(shared_data / "bulk" / "airway" / "airway.h5ad")[:, :3000].copy()
    counts = real.X.copy()
    norm = np.log1p(counts / counts.sum(1, keepdims=True) * 1e4)
    symbols = [f"SYM{i}" for i in range(3000)]
    symbols[5] = symbols[4]  # a duplicated symbol
    var = pd.DataFrame({"gene_ids": real.var_names, "symbol": symbols}, index=real.var_names)
    raw = tmp_path / "raw"
    raw.mkdir()
    ad.AnnData(X=norm, obs=real.obs, var=var, layers={"counts": sp.csr_matrix(counts)}).write_h5ad(raw / "a.h5ad")
    with pytest.raises(ScmixInputError, match=r"a.h5ad \(X\)': counts must be integers.*layers \['counts'\]"):
        parse_dataset("a", {"source": "h5ad", "file": "a.h5ad"}, raw)
    with pytest.raises(ScmixInputError, match=r"no layer 'raw'; layers: \['counts'\]"):
        parse_dataset("a", {"source": "h5ad", "file": "a.h5ad", "layer": "raw"}, raw)
    spec = {"source": "h5ad", "file": "a.h5ad", "layer": "counts", "gene_symbol_column": "symbol"}
    adata = parse_dataset("a", spec, raw)
    np.testing.assert_array_equal(adata.X.toarray(), counts)
    assert adata.var_names[4] == "SYM4" and adata.var_names[5] == "SYM4-1" and adata.var_names.is_unique
    assert adata.var["gene_ids"].iloc[0] == "ENSG00000000003" and adata.obs.loc["SRR1039517", "dex"] == "trt"
    ad.AnnData(X=sp.csr_matrix(counts.T), obs=var, var=real.obs).write_h5ad(raw / "t.h5ad")  # genes x samples
    flipped = parse_dataset("t", {"source": "h5ad", "file": "t.h5ad", "transpose": True}, raw)
    assert flipped.shape == (8, 3000) and list(flipped.obs_names) == list(real.obs_names)
    assert list(flipped.var_names) == list(real.var_names) and flipped.obs.loc["SRR1039508", "cell"] == "N61311"
    np.testing.assert_array_equal(flipped.X.toarray(), counts)
    with pytest.raises(ScmixInputError, match="2 files ending in"):
        parse_dataset("t", {"source": "h5ad"}, raw)
    (raw / "broken.h5ad").write_text("not HDF5")
    with pytest.raises(ScmixInputError, match=r"dataset 'b', file '.*broken.h5ad': cannot read h5ad"):
        parse_dataset("b", {"source": "h5ad", "file": "broken.h5ad"}, raw)


@pytest.fixture
def pbmc3k_h5ad(pbmc3k, tmp_path):
    """Real PBMC 3k as an h5ad (CSR counts in X, cell types in obs) in a raw folder."""
    raw = tmp_path / "raw"
    raw.mkdir()
    ad.AnnData(X=sp.csr_matrix(pbmc3k.X), obs=pbmc3k.obs, var=pbmc3k.var).write_h5ad(raw / "pbmc3k.h5ad")
    return raw


@pytest.mark.parametrize("storage", ["csr", "dense", "csc"])
def test_h5ad_obs_filter_and_max_cells_read_only_the_kept_rows(pbmc3k, tmp_path, monkeypatch, storage):
    raw = tmp_path / "raw"
    raw.mkdir()
    X = {"csr": sp.csr_matrix, "dense": lambda m: m.toarray(), "csc": sp.csc_matrix}[storage](pbmc3k.X)
    ad.AnnData(X=X, obs=pbmc3k.obs, var=pbmc3k.var).write_h5ad(raw / "pbmc3k.h5ad")
    whole = []  # the on-disk elements read whole
    real_read_elem = tables.read_elem
    monkeypatch.setattr(tables, "read_elem", lambda elem: whole.append(elem.name) or real_read_elem(elem))
    monkeypatch.setattr(tables, "READ_ROWS", 100)
    spec = {"source": "h5ad", "obs_filter": "cell_type in ['B', 'NK'] and n_counts > 1500", "max_cells": 250}
    pbmc3k.obs["n_counts"] = np.asarray(pbmc3k.X.sum(axis=1)).ravel()
    matched = np.flatnonzero(pbmc3k.obs["cell_type"].isin(["B", "NK"]) & (pbmc3k.obs["n_counts"] > 1500))
    del pbmc3k.obs["n_counts"]
    if storage != "dense":  # the filter names a column the file does not have: an error listing its columns
        with pytest.raises(ScmixInputError, match=r"obs_filter .* cannot be evaluated on the cell table .*cell_type"):
            parse_dataset("pbmc", spec, raw)
    spec["obs_filter"] = "cell_type in ['B', 'NK']"
    matched = np.flatnonzero(pbmc3k.obs["cell_type"].isin(["B", "NK"]))
    whole.clear()
    first = parse_dataset("pbmc", {**spec, "seed": 4}, raw)
    assert ("/X" in whole) == (storage == "csc")  # CSR and dense counts: only the kept rows are read
    again = parse_dataset("pbmc", {**spec, "seed": 4}, raw)
    other = parse_dataset("pbmc", {**spec, "seed": 5}, raw)
    assert first.n_obs == 250 < len(matched) and set(first.obs["cell_type"]) == {"B", "NK"}
    rows = pbmc3k.obs_names.get_indexer(first.obs_names)
    assert set(rows) <= set(matched) and np.all(np.diff(rows) > 0)  # the file's order
    assert (first.X != sp.csr_matrix(pbmc3k.X)[rows]).nnz == 0 and first.X.dtype == np.int32
    assert list(again.obs_names) == list(first.obs_names) and list(other.obs_names) != list(first.obs_names)
    assert first.uns["selection"] == {"obs_filter": spec["obs_filter"], "max_cells": 250, "seed": 4,
                                      "cells_matched": len(matched), "cells_kept": 250,
                                      "cells_in_file": pbmc3k.n_obs}  # fmt: skip
    assert list(first.obs["cell_type"].cat.categories) == ["B", "NK"]


def test_h5ad_selection_errors_and_edges(pbmc3k_h5ad, pbmc3k):
    with pytest.raises(ScmixInputError, match=r"obs_filter \"cell_type == 'Neutrophil'\" keeps none of the 2638"):
        parse_dataset("pbmc", {"source": "h5ad", "obs_filter": "cell_type == 'Neutrophil'"}, pbmc3k_h5ad)
    with pytest.raises(ScmixInputError, match=r"dataset 'pbmc'.*obs_filter 'cell_type ==' cannot be evaluated"):
        parse_dataset("pbmc", {"source": "h5ad", "obs_filter": "cell_type =="}, pbmc3k_h5ad)
    everything = parse_dataset("pbmc", {"source": "h5ad", "max_cells": 10_000}, pbmc3k_h5ad)
    assert everything.n_obs == pbmc3k.n_obs and everything.uns["selection"]["cells_kept"] == pbmc3k.n_obs
    assert (everything.X != sp.csr_matrix(pbmc3k.X)).nnz == 0
    assert "selection" not in parse_dataset("pbmc", {"source": "h5ad"}, pbmc3k_h5ad).uns


# ---------------------------------------------------------------------------------------------- csv


def test_pasilla_sample_names_need_the_suffix_rule(pasilla_raw):
    with pytest.raises(ScmixInputError) as err:
        parse_dataset("pasilla", PASILLA, pasilla_raw)
    message = str(err.value)
    assert "pasilla_sample_annotation.csv" in message and "metadata matches no sample" in message
    assert "set sample_id_suffix: 'fb'" in message
    adata = parse_dataset("pasilla", {**PASILLA, "sample_id_suffix": "fb"}, pasilla_raw)
    assert adata.shape == (7, 14599) and adata.X.dtype == np.int32
    assert list(adata.obs_names) == ["untreated1", "untreated2", "untreated3", "untreated4",
                                     "treated1", "treated2", "treated3"]  # fmt: skip
    row = adata.obs.loc["treated2"]
    assert (row["file"], row["condition"], row["type"], row["number of lanes"]) == (
        "treated2fb", "treated", "paired-end", 2)  # fmt: skip
    assert adata.obs.loc["untreated1", "exon counts"] == 14924838
    assert adata["treated1", "FBgn0000008"].X[0, 0] == 140 and adata.var.loc["FBgn0000008", "gene_ids"] == "FBgn0000008"
    table = pd.read_csv(pasilla_raw / "pasilla_gene_counts.tsv", sep="\t", index_col=0)
    np.testing.assert_array_equal(adata.X.toarray(), table.to_numpy().T)


def test_pasilla_missing_metadata_row_is_an_error_unless_kept(pasilla_raw, caplog):
    annotation = pasilla_raw / "pasilla_sample_annotation.csv"
    pd.read_csv(annotation).iloc[1:].to_csv(annotation, index=False)  # drop treated1fb
    spec = {**PASILLA, "sample_id_suffix": "fb"}
    with pytest.raises(ScmixInputError, match=r"1 of 7 count samples have no metadata row \(\['treated1'\]\)"):
        parse_dataset("pasilla", spec, pasilla_raw)
    with caplog.at_level(logging.WARNING, logger="scmix.data.sources.tables"):
        adata = parse_dataset("pasilla", {**spec, "missing_metadata": "keep"}, pasilla_raw)
    assert adata.n_obs == 7 and pd.isna(adata.obs.loc["treated1", "condition"])
    assert adata.obs.loc["treated2", "condition"] == "treated"
    assert any("1 count samples have no metadata row" in r.getMessage() for r in caplog.records)


def test_pasilla_samples_x_genes(pasilla_raw, tmp_path):
    table = pd.read_csv(pasilla_raw / "pasilla_gene_counts.tsv", sep="\t", index_col=0)
    table.T.rename_axis("sample").to_csv(pasilla_raw / "by_sample.csv")
    spec = {**PASILLA, "counts": "by_sample.csv", "orientation": "samples_x_genes", "sample_id_suffix": "fb"}
    adata = parse_dataset("pasilla", spec, pasilla_raw)
    assert adata.shape == (7, 14599) and adata.obs.loc["untreated3", "type"] == "paired-end"
    np.testing.assert_array_equal(adata.X.toarray(), table.to_numpy().T)
    assert list(adata.var_names) == list(table.index)


def test_bodymap_semicolons_and_r_row_names(bodymap_raw):
    with pytest.raises(ScmixInputError, match=r"column 'Sample' matches 16 samples: set sample_id_column: 'Sample'"):
        parse_dataset("bodymap", BODYMAP, bodymap_raw)
    adata = parse_dataset("bodymap", {**BODYMAP, "sample_id_column": "Sample"}, bodymap_raw)
    assert adata.shape == (16, 37653) and adata.X.dtype == np.int32
    assert adata.var_names[0] == "NM_000014" and adata.var_names.is_unique
    assert adata.obs.loc["heart.1", "SHORTNAME"] == "HE1" and adata.obs.loc["heart.1", "Condition"] == "B"
    assert adata.obs.loc["blood.2", "SHORTNAME"] == "BL2" and adata.obs.loc["blood.2", "Condition"] == "C"
    assert adata["adipose.1", "NM_000014"].X[0, 0] == 91717 and adata["blood.4", "NM_000014"].X[0, 0] == 283
    explicit = parse_dataset("bodymap", {**BODYMAP, "sample_id_column": "Sample", "sep": ";"}, bodymap_raw)
    assert (explicit.X != adata.X).nnz == 0
    with pytest.raises(ScmixInputError, match="header has 1 fields but the first row 1|no count columns"):
        parse_dataset("bodymap", {**BODYMAP, "sample_id_column": "Sample", "sep": "\t"}, bodymap_raw)


def test_gene_symbol_and_annotation_columns(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    table = pd.DataFrame({
        "gene_id": ["ENSG00000141510", "ENSG00000012048", "ENSG00000139618", "ENSG00000284662", "ENSG00000999999"],
        "gene_name": ["TP53", "BRCA1", "BRCA2", "OR4F16", None], "Length": [2512, 7088, 11986, 939, 100],
        "S1": [10, 0, 3, 0, 1], "S2": [7, 2, 0, 0, 5],
    })  # fmt: skip
    table.loc[3, "gene_name"] = "TP53"
    table.to_csv(raw / "counts.tsv", sep="\t", index=False)
    spec = {"source": "csv", "counts": "counts.tsv", "gene_symbol_column": "gene_name"}
    with pytest.raises(ScmixInputError, match=r"count column 'gene_name' holds non-numeric values|not in the header"):
        parse_dataset("t", {"source": "csv", "counts": "counts.tsv"}, raw)
    adata = parse_dataset("t", {**spec, "annotation_columns": ["Length"]}, raw)
    assert list(adata.obs_names) == ["S1", "S2"]
    assert list(adata.var_names) == ["TP53", "BRCA1", "BRCA2", "TP53-1", "ENSG00000999999"]
    assert adata.var.loc["BRCA1", "gene_ids"] == "ENSG00000012048" and adata.var.loc["BRCA2", "Length"] == 11986
    np.testing.assert_array_equal(adata.X.toarray(), [[10, 0, 3, 0, 1], [7, 2, 0, 0, 5]])


def test_csv_errors(pasilla_raw, tmp_path):
    table = pd.read_csv(pasilla_raw / "pasilla_gene_counts.tsv", sep="\t", index_col=0).astype(float)
    table.loc["FBgn0000008", "treated2"] = 88.5
    table.to_csv(pasilla_raw / "normalised.tsv", sep="\t")
    spec = {**PASILLA, "counts": "normalised.tsv", "sample_id_suffix": "fb"}
    with pytest.raises(ScmixInputError, match=r"dataset 'pasilla', file '.*normalised.tsv': counts must be integers"):
        parse_dataset("pasilla", spec, pasilla_raw)
    with pytest.raises(ScmixInputError, match="orientation must be one of.*not 'cells_x_genes'"):
        parse_dataset("pasilla", {**PASILLA, "orientation": "cells_x_genes"}, pasilla_raw)
    other = pd.DataFrame({"sample": ["SRR1", "SRR2"], "condition": ["a", "b"]})
    other.to_csv(pasilla_raw / "other.csv", index=False)
    with pytest.raises(ScmixInputError, match=r"other.csv': metadata matches no sample of the counts table"):
        parse_dataset("pasilla", {**PASILLA, "metadata": "other.csv"}, pasilla_raw)
    with pytest.raises(ScmixInputError, match=r"'counts' file not found"):
        parse_dataset("pasilla", {**PASILLA, "counts": "absent.tsv"}, pasilla_raw)
    with pytest.raises(ScmixInputError, match=r"sample_id_column 'donor' is not a column"):
        parse_dataset("pasilla", {**PASILLA, "sample_id_column": "donor"}, pasilla_raw)
    with pytest.raises(ScmixInputError, match=r"reads source 'h5ad' or 'csv'"):
        tables.parse("x", {"source": "tsv"}, pasilla_raw)
