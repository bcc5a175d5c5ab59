"""source: census, tested on a real SOMA store: a Census-shaped store written with tiledbsoma from real PBMC 3k and
Kang 2018 (tests/soma_store.py), read through ``uri:`` as a user would read the CELLxGENE Census."""

import json

import numpy as np
import pytest
import scipy.sparse as sp
import yaml
from snakerun import TINY, snakemake
from soma_store import BUILD_DATE, SCHEMA_VERSION, combined, write_census

from scmix.data.fetch import download_spec, local_sources_state
from scmix.data.sources import census, parse_dataset
from scmix.errors import ScmixInputError
from scmix.io import read_h5ad

pytest.importorskip("tiledbsoma")
pytest.importorskip("cellxgene_census")


@pytest.fixture(scope="module")
def store(pbmc3k, kang2018, tmp_path_factory):
    """(store folder, the AnnData it holds): PBMC 3k's 2,638 cells, then Kang's 12,261, on the union of genes."""
    cells = {
        "pbmc3k": {"donor_id": "pbmc3k_donor", "assay": "10x 3' v1"},
        "kang2018": {"donor_id": kang2018.obs["donor"].astype(str).to_numpy(), "assay": "10x 3' v2"},
    }
    for values in cells.values():
        values.update(tissue="blood", tissue_general="blood", disease="normal", sex="unknown", is_primary_data=True)
    adata = combined({"pbmc3k": pbmc3k, "kang2018": kang2018}, cells)
    return write_census(tmp_path_factory.mktemp("census") / "soma", adata), adata


def read(store, tmp_path, name="blood", **spec):
    """The dataset as the workflow reads it: the download step's query, then the parse step."""
    spec = {"source": "census", "uri": str(store[0]), **spec}
    raw = tmp_path / name
    raw.mkdir()
    census.fetch(name, spec, raw)
    return parse_dataset(name, spec, raw)


def by_gene_id(adata, ids):
    """adata's counts on the genes ``ids`` (Ensembl), in that order."""
    position = {g: i for i, g in enumerate(adata.var["gene_ids"])}
    return sp.csr_matrix(adata.X)[:, [position[g] for g in ids]]


def test_a_dataset_of_the_store_reads_back_as_its_10x_files(store, pbmc3k, tmp_path):
    out = read(store, tmp_path, obs_value_filter="dataset_id == 'pbmc3k'")
    assert out.shape == (pbmc3k.n_obs, store[1].n_vars)
    assert np.issubdtype(out.X.dtype, np.integer) and sp.isspmatrix_csr(out.X)
    assert (by_gene_id(out, pbmc3k.var["gene_ids"]) != sp.csr_matrix(pbmc3k.X)).nnz == 0
    others = ~out.var["gene_ids"].isin(pbmc3k.var["gene_ids"]).to_numpy()
    assert others.sum() > 0 and out.X[:, others].nnz == 0  # Kang's genes that PBMC 3k lacks hold nothing
    assert list(out.obs["cell_type"]) == list(pbmc3k.obs["cell_type"].astype(str))
    assert list(out.obs_names) == [str(i) for i in range(pbmc3k.n_obs)]  # named by soma_joinid
    assert set(out.obs["donor"]) == {"pbmc3k_donor"} and set(out.obs["batch"]) == {"pbmc3k"}
    assert out.var["gene_ids"].str.startswith("ENSG").all() and out.var_names.is_unique
    record = out.uns["census"]
    assert record["store_census_schema_version"] == SCHEMA_VERSION and record["store_census_build_date"] == BUILD_DATE
    assert record["obs_value_filter"] == "dataset_id == 'pbmc3k'" and record["layer"] == "raw"
    assert record["cells_matched"] == record["cells_kept"] == pbmc3k.n_obs


def test_cell_and_gene_filters_keep_exactly_what_they_match(store, kang2018, tmp_path):
    genes = list(kang2018.var["gene_ids"][::25])
    out = read(store, tmp_path, obs_value_filter="dataset_id == 'kang2018' and cell_type == 'B cells'",
               var_value_filter=f"feature_id in {genes}",
               obs_columns=["cell_type", "donor_id", "dataset_id"])  # fmt: skip
    b = (kang2018.obs["cell_type"] == "B cells").to_numpy()
    assert out.n_obs == b.sum() > 100 and sorted(out.var["gene_ids"]) == sorted(genes)
    expected = sp.csr_matrix(kang2018.X)[b][:, [list(kang2018.var["gene_ids"]).index(g) for g in genes]]
    assert (by_gene_id(out, genes) != expected).nnz == 0
    assert list(out.obs["donor"]) == list(kang2018.obs["donor"].astype(str)[b])
    assert list(out.obs.columns) == ["soma_joinid", "cell_type", "donor_id", "dataset_id", "donor", "batch", "dataset"]


def test_obs_filter_chooses_among_the_matched_cells_before_the_subsample_as_for_every_source(store, kang2018, tmp_path):
    out = read(store, tmp_path, obs_value_filter="dataset_id == 'kang2018'", obs_filter="cell_type == 'B cells'",
               max_cells=100, seed=3, obs={"condition": "ctrl"})  # fmt: skip
    b = int((kang2018.obs["cell_type"] == "B cells").sum())
    assert out.n_obs == 100 and set(out.obs["cell_type"]) == {"B cells"} and set(out.obs["condition"]) == {"ctrl"}
    assert out.uns["selection"] == {"obs_filter": "cell_type == 'B cells'", "max_cells": 100, "seed": 3,
                                    "cells_matched": b, "cells_kept": 100, "cells_in_file": kang2018.n_obs}  # fmt: skip
    with pytest.raises(ScmixInputError, match=r"^dataset 'none': obs_filter \"tissue == 'lung'\" keeps none of the "):
        read(store, tmp_path, "none", obs_filter="tissue == 'lung'")


def test_the_seeded_subsample_is_drawn_before_counts_and_only_its_rows_are_read(store, monkeypatch, tmp_path):
    asked = []
    real = census._read_counts

    class Spy:
        def __init__(self, matrix):
            self.matrix = matrix

        def read(self, coords, **kwargs):
            asked.append(np.asarray(coords[0]))
            return self.matrix.read(coords=coords, **kwargs)

    monkeypatch.setattr(census, "_read_counts", lambda name, matrix, *rest: real(name, Spy(matrix), *rest))
    monkeypatch.setattr(census, "CHUNK_CELLS", 500)
    spec = {"obs_value_filter": "tissue_general == 'blood' and is_primary_data == True", "max_cells": 1200}
    first = read(store, tmp_path, "a", seed=1, **spec)
    rows = np.concatenate(asked)
    assert first.n_obs == 1200 and len(asked) == 3  # 3 chunks of at most 500 cells
    assert np.array_equal(rows, first.obs["soma_joinid"].to_numpy()) and np.all(np.diff(rows) > 0)
    again, other = read(store, tmp_path, "b", seed=1, **spec), read(store, tmp_path, "c", seed=2, **spec)
    assert list(again.obs_names) == list(first.obs_names)
    assert (again.X != first.X).nnz == 0
    assert len(set(other.obs_names) & set(first.obs_names)) < 300  # 1,200 of 14,899 twice: ~97 in common
    assert first.uns["census"]["cells_matched"] == store[1].n_obs and first.uns["census"]["seed"] == 1
    assert first.obs["dataset_id"].nunique() == 2


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"obs_value_filter": "celltype == 'B cells'"}, "obs_value_filter \"celltype == 'B cells'\" cannot be applied"),
        ({"obs_value_filter": "cell_type == 'no such type'"}, "matches no cell"),
        ({"organism": "Mus musculus"}, "has no organism 'mus_musculus' (it has ['homo_sapiens'])"),
        ({"layer": "normalized"}, "has no X layer 'normalized' (it has ['raw'])"),
        ({"obs_columns": ["cell_type", "donor"]}, "obs_columns ['donor'] are not in the Census's cell table"),
        ({"var_value_filter": "feature_name == 'NOT_A_GENE'"}, "keeps no gene"),
    ],
)
def test_bad_queries_get_one_line_naming_the_dataset(store, tmp_path, spec, message):
    with pytest.raises(ScmixInputError) as err:
        read(store, tmp_path, "blood_b", obs_value_filter=spec.pop("obs_value_filter", None), **spec)
    text = str(err.value)
    assert message in text and "blood_b" in text and "\n" not in text
    assert not list((tmp_path / "blood_b").iterdir())  # nothing written


def test_a_missing_store_is_named(tmp_path):
    spec = {"source": "census", "uri": str(tmp_path / "nowhere")}
    with pytest.raises(ScmixInputError, match=r"uri .*nowhere is not a folder holding a SOMA store"):
        census.fetch("blood", spec, tmp_path)


def test_what_reruns_the_query(store):
    spec = {"source": "census", "uri": str(store[0]), "obs_value_filter": "dataset_id == 'pbmc3k'"}
    base = download_spec(spec)
    assert download_spec({**spec, "obs_keys": {"batch": "assay"}, "qc": {"min_counts": 5}}) == base
    assert download_spec({**spec, "max_cells": 10}) != base
    assert local_sources_state(spec) != ""  # a local store's files are tracked like a file: source's
    assert local_sources_state({**spec, "uri": "s3://cellxgene-census-public-us-west-2/cell-census/x/soma/"}) == ""


@pytest.mark.e2e
def test_census_datasets_run_through_the_workflow(store, tmp_path):
    """Two datasets from one store (PBMC 3k and Kang's B cells, each subsampled) through QC, split, mix and
    training on the tiny settings."""
    cfg = yaml.safe_load(TINY.read_text())
    uri = f"file://{store[0]}"
    cfg["datasets"] = {
        "pbmc": {"source": "census", "uri": uri, "obs_value_filter": "dataset_id == 'pbmc3k'", "max_cells": 800},
        "kang_b": {
            "source": "census",
            "uri": uri,
            "max_cells": 400,
            "seed": 3,
            "obs_value_filter": "dataset_id == 'kang2018' and cell_type == 'B cells'",
            "qc": {"min_counts": 100, "min_genes": 50},
        },  # fmt: skip
    }
    cfg["qc"] = {"min_genes": 200, "min_counts": 500, "max_pct_mito": 10, "min_cells": 3}
    cfg["mixes"] = {"pbmc+kang_b": {"total_cells": 300, "datasets": {"pbmc": 0.5, "kang_b": 0.5}}}
    cfg["seeds"] = [0]
    cfg["models"] = {"ldvae": {**cfg["models"]["ldvae"], "epochs": 3}}
    config = tmp_path / "census.yaml"
    config.write_text(yaml.safe_dump(cfg))
    target = "results/models/ldvae/pbmc+kang_b/seed0/model.pt"
    res = snakemake(tmp_path, "--cores", "2", target, config=config)
    assert res.returncode == 0, res.stderr[-4000:]
    raw = read_h5ad(tmp_path / "results/raw/kang_b.h5ad")
    assert raw.n_obs == 400 and set(raw.obs["cell_type"]) == {"B cells"} and raw.uns["census"]["seed"] == 3
    manifest = json.loads((tmp_path / "resources/raw/kang_b/manifest.json").read_text())
    assert manifest["source"] == "census"
    mix = read_h5ad(tmp_path / "results/mixes/pbmc+kang_b/seed0.h5ad")
    assert mix.n_obs == 300 and dict(mix.obs["dataset"].value_counts()) == {"pbmc": 150, "kang_b": 150}
    assert (tmp_path / target).stat().st_size > 0
