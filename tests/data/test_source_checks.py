"""What every source's cells get in scmix.data.sources.parse_dataset, on real data (../shared/data): a transposed
matrix, duplicated cell names, an absurd count and an empty file stop with one line naming the dataset and the file; the
cell selection (obs_filter, max_cells, seed) and constant labels (obs) work the same way for every source."""

import gzip

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from conftest import write_mex
from snakemake.utils import validate

from scmix.data.fetch import download_spec, fetch_dataset, parse_spec
from scmix.data.sources import parse_dataset
from scmix.data.sources.checks import transposed_evidence
from scmix.errors import ScmixInputError
from scmix.io import MAX_COUNT

SCHEMA = "schemas/config.schema.yaml"


def h5ad_dir(tmp_path, adata, name="data") -> str:
    raw = tmp_path / name
    raw.mkdir(parents=True)
    adata.write_h5ad(raw / f"{name}.h5ad")
    return str(raw)


def kang_spec(shared_data, **keys) -> dict:
    d = shared_data / "kang2018"
    return {"source": "tenx", "url": f"file://{d}", "labels": {"url": f"file://{d}/cell_metadata.csv"}, **keys}


@pytest.fixture(scope="module")
def kang_raw(shared_data, tmp_path_factory):
    """The real Kang 2018 10x folder and its annotation, fetched once into a raw folder."""
    return fetch_dataset("kang", kang_spec(shared_data), tmp_path_factory.mktemp("kang") / "kang")


# ------------------------------------------------------------------------------------------------- orientation
def real_names(shared_data, pbmc3k, kang2018) -> dict[str, tuple[pd.Index, pd.Index]]:
    """(cell or sample names, gene names) of every real dataset the source tests read, as the sources read them."""
    bulk = shared_data / "bulk"
    airway = ad.read_h5ad(bulk / "airway" / "airway.h5ad", backed="r")
    pasilla = pd.read_csv(bulk / "pasilla" / "pasilla_gene_counts.tsv", sep="\t", index_col=0, nrows=5)
    bodymap = pd.read_csv(bulk / "illumina_bodymap" / "IlluminaBodymap.csv.gz", sep=";", index_col=0)
    raw10x = shared_data / "tenx" / "GSM6544281_raw_feature_bc_matrix"
    with gzip.open(next(raw10x.rglob("barcodes.tsv.gz")), "rt") as fh:
        raw_barcodes = pd.Index(fh.read().split())
    with gzip.open(next(raw10x.rglob("features.tsv.gz")), "rt") as fh:
        raw_genes = pd.Index([line.split("\t")[1] for line in fh.read().splitlines()])
    gse = pd.Index([f"GSM{11805 + i}" for i in range(34)])  # GEO sample accessions
    return {
        "pbmc3k": (pbmc3k.obs_names, pbmc3k.var_names),
        "pbmc3k_ids": (pbmc3k.obs_names, pd.Index(pbmc3k.var["gene_ids"])),
        "kang2018": (kang2018.obs_names, kang2018.var_names),
        "GSM6544281_raw": (raw_barcodes, raw_genes),
        "airway": (airway.obs_names, airway.var_names),
        "pasilla": (pd.Index(pasilla.columns), pd.Index(pd.read_csv(
            bulk / "pasilla" / "pasilla_gene_counts.tsv", sep="\t", usecols=[0]).iloc[:, 0])),
        "illumina_bodymap": (pd.Index(bodymap.columns), bodymap.index),
        "geo_probes": (gse, pd.Index(["1007_s_at", "1053_at", "117_at", "121_at", "1255_g_at"])),
        "census_ids": (pd.Index(map(str, range(14899))), pbmc3k.var_names),
        "perturbseq": (pd.Index([f"AAACCTGAGCCAGAAC-{g}" for g in (1, 2, 3)]), kang2018.var_names),
    }  # fmt: skip


def test_no_real_dataset_looks_transposed_and_every_one_does_transposed(shared_data, pbmc3k, kang2018):
    for name, (cells, genes) in real_names(shared_data, pbmc3k, kang2018).items():
        assert transposed_evidence(cells, genes) is None, name
        if name not in ("geo_probes", "census_ids"):  # probe and numeric names say nothing either way
            assert transposed_evidence(genes, cells) is not None, name


def test_a_transposed_pbmc3k_h5ad_is_refused_with_what_to_change(pbmc3k, tmp_path):
    raw = h5ad_dir(tmp_path, pbmc3k.T.copy(), "pbmc_t")
    message = (r"^dataset 'pbmc_t', file '.*pbmc_t/pbmc_t.h5ad': looks transposed \(genes as rows, cells as columns\): "
               r"read as 13,714 cells x 2,638 genes, its rows include the mitochondrial genes MT-ATP6, MT-ATP8, "
               r"MT-CO1 and its columns are named like cell barcodes \(e.g. 'AAACATACAACCAC-1'\); set transpose: true "
               r"for this dataset$")  # fmt: skip
    with pytest.raises(ScmixInputError, match=message):
        parse_dataset("pbmc_t", {"source": "h5ad"}, raw)
    adata = parse_dataset("pbmc_t", {"source": "h5ad", "transpose": True}, raw)
    assert adata.shape == (2638, 13714) and (adata.X != pbmc3k.X).nnz == 0
    with pytest.raises(ScmixInputError, match="looks transposed .* set transpose: false for this dataset$"):
        parse_dataset("pbmc", {"source": "h5ad", "transpose": True}, h5ad_dir(tmp_path, pbmc3k, "pbmc"))


def test_a_transposed_bulk_table_is_refused_naming_the_orientation(shared_data, tmp_path):
    d = shared_data / "bulk" / "pasilla"
    spec = {"source": "csv", "url": f"file://{d}/pasilla_gene_counts.tsv", "counts": "pasilla_gene_counts.tsv",
            "orientation": "samples_x_genes"}  # fmt: skip
    raw = fetch_dataset("pasilla", spec, tmp_path / "pasilla")
    with pytest.raises(ScmixInputError, match=r"^dataset 'pasilla', file '.*pasilla_gene_counts.tsv': looks "
                       r"transposed .* 14,599 cells x 7 genes, its rows are named like gene IDs \(e.g. 'FBgn0000003'\)"
                       r"; set orientation: genes_x_samples for this dataset$"):  # fmt: skip
        parse_dataset("pasilla", spec, raw)
    adata = parse_dataset("pasilla", {**spec, "orientation": "genes_x_samples"}, raw)
    assert adata.shape == (7, 14599)


# ---------------------------------------------------------------------------------------- duplicates, counts, empty
def test_a_duplicated_barcode_in_a_real_10x_folder_stops_the_parse(pbmc3k, tmp_path):
    """PBMC 3k as a 10x folder with its first barcode listed again, its matrix column copied."""
    doubled = ad.concat([pbmc3k, pbmc3k[:1]])
    raw = tmp_path / "pbmc"
    write_mex(doubled, raw / "filtered_feature_bc_matrix")
    message = (r"^dataset 'pbmc', file '.*pbmc/filtered_feature_bc_matrix': 1 cell name appears more than once "
               r"\(e.g. 'AAACATACAACCAC-1', 2 times\): each cell must be listed once; remove the repeated cells "
               r"\(barcodes\) from the file$")  # fmt: skip
    with pytest.raises(ScmixInputError, match=message):
        parse_dataset("pbmc", {"source": "tenx"}, raw)
    with pytest.raises(ScmixInputError, match=r"^dataset 'pbmc', file '.*pbmc_h5ad.h5ad': 1 cell name appears more"):
        parse_dataset("pbmc", {"source": "h5ad"}, h5ad_dir(tmp_path, doubled, "pbmc_h5ad"))


@pytest.mark.parametrize("dtype", [np.float32, np.int64])
def test_an_absurd_count_stops_the_parse_naming_the_value_and_where(pbmc3k, tmp_path, dtype):
    adata = pbmc3k.copy()
    X = sp.csr_matrix(adata.X, dtype=dtype)
    cd3e = adata.var_names.get_loc("CD3E")
    X[5, cd3e] = 3e10
    adata.X = X
    message = (
        rf"^dataset 'pbmc', file '.*pbmc.h5ad \(X\)': a count of 30,000,00\d,\d{{3}} \(cell "
        rf"'{adata.obs_names[5]}', gene 'CD3E'\): no gene of one cell or sample has that many reads \(the "
        rf"largest count accepted is {MAX_COUNT:,}\); these are not raw counts, or the file is damaged$"
    )
    with pytest.raises(ScmixInputError, match=message):
        parse_dataset("pbmc", {"source": "h5ad"}, h5ad_dir(tmp_path, adata, "pbmc"))


def test_the_count_bound_passes_the_real_bulk_counts(shared_data, tmp_path):
    """airway stores its counts as float32 (largest 513,766): read as they are, within the bound."""
    spec = {"source": "h5ad", "url": f"file://{shared_data}/bulk/airway/airway.h5ad"}
    adata = parse_dataset("airway", spec, fetch_dataset("airway", spec, tmp_path / "airway"))
    assert adata.X.max() == 513766 and adata.X.max() < MAX_COUNT < np.iinfo(np.int32).max


@pytest.mark.parametrize(
    "cells, genes, empty", [(0, None, "no cells"), (None, 0, "no genes"), (0, 0, "no cells and no genes")]
)
def test_an_empty_h5ad_is_named_at_parse(pbmc3k, tmp_path, cells, genes, empty):
    adata = pbmc3k[slice(cells), slice(genes)].copy()
    with pytest.raises(ScmixInputError, match=rf"^dataset 'empty', file '.*empty.h5ad': the file holds {empty} "
                       rf"\({adata.n_obs} x {adata.n_vars}\); point the dataset at a file with counts$"):  # fmt: skip
        parse_dataset("empty", {"source": "h5ad"}, h5ad_dir(tmp_path, adata, "empty"))


# ------------------------------------------------------------------------------------------------- cell selection
def test_a_10x_folder_is_selected_by_label_as_an_h5ad_is(shared_data, kang_raw, kang2018, tmp_path):
    spec = kang_spec(shared_data, obs_filter="cell_type == 'B cells' and donor != 1016", max_cells=300, seed=4)
    adata = parse_dataset("kang", spec, kang_raw)
    assert adata.n_obs == 300 and set(adata.obs["cell_type"]) == {"B cells"} and 1016 not in set(adata.obs["donor"])
    assert list(adata.obs["cell_type"].cat.categories) == ["B cells"]  # no empty categories left behind
    record = adata.uns["selection"]
    matched = int(((kang2018.obs["cell_type"] == "B cells") & (kang2018.obs["donor"] != "1016")).sum())
    assert record == {"obs_filter": spec["obs_filter"], "max_cells": 300, "seed": 4, "cells_matched": matched,
                      "cells_kept": 300, "cells_in_file": 12261}  # fmt: skip
    again = parse_dataset("kang", spec, kang_raw)
    assert list(again.obs_names) == list(adata.obs_names) and (again.X != adata.X).nnz == 0
    other = parse_dataset("kang", {**spec, "seed": 5}, kang_raw)
    assert set(other.obs_names) != set(adata.obs_names)
    # the same cells as the h5ad source chooses from the same table before reading any counts
    whole = parse_dataset("kang", kang_spec(shared_data), kang_raw)
    whole.obs["donor"] = whole.obs["donor"].astype(int)
    selection = {k: spec[k] for k in ("obs_filter", "max_cells", "seed")}
    as_h5ad = parse_dataset("kang_h5ad", {"source": "h5ad", **selection}, h5ad_dir(tmp_path, whole, "kang_h5ad"))
    assert list(as_h5ad.obs_names) == list(adata.obs_names)
    assert {k: v for k, v in as_h5ad.uns["selection"].items()} == record


def test_a_filter_that_keeps_no_cell_names_the_dataset(shared_data, kang_raw):
    spec = kang_spec(shared_data, obs_filter="cell_type == 'Neurons'")
    with pytest.raises(ScmixInputError, match=r"^dataset 'kang', file '.*kang2018': obs_filter \"cell_type == "
                       r"'Neurons'\" keeps none of the 12261 cells; loosen obs_filter$"):  # fmt: skip
        parse_dataset("kang", spec, kang_raw)


# ------------------------------------------------------------------------------------------------- constant labels
def test_constant_labels_are_given_to_every_cell_and_never_overwrite(shared_data, kang_raw):
    adata = parse_dataset("kang", kang_spec(shared_data, obs={"condition": "ctrl", "study": "kang2018"}), kang_raw)
    assert (adata.obs["condition"] == "ctrl").all() and (adata.obs["study"] == "kang2018").all()
    assert adata.obs["condition"].dtype == "category"
    with pytest.raises(ScmixInputError, match=r"^dataset 'kang': obs sets 'donor: 7' for every cell, but the dataset "
                       r"already has an obs column 'donor' \(from the source or obs_keys\); drop 'donor' from obs, or "
                       r"map the source's column to another key with obs_keys$"):  # fmt: skip
        parse_dataset("kang", kang_spec(shared_data, obs={"donor": "7"}), kang_raw)
    renamed = kang_spec(shared_data, obs_keys={"patient": "donor"}, obs={"donor": "7"})
    assert set(parse_dataset("kang", renamed, kang_raw).obs["donor"]) == {"7"}
    with pytest.raises(ScmixInputError, match=r"^dataset 'kang': obs cannot set 'dataset'"):
        parse_dataset("kang", kang_spec(shared_data, obs={"dataset": "x"}), kang_raw)


# ------------------------------------------------------------------------------------------------- config, reruns
@pytest.mark.parametrize("source", ["tenx", "csv", "geo", "rdata", "cca", "perturbseq", "h5ad", "census"])
def test_every_source_accepts_the_selection_and_constant_labels(source):
    spec = {"source": source, "url": "file:x", "obs_filter": "cell_type == 'B'", "max_cells": 10, "seed": 1,
            "obs": {"condition": "stim"}}  # fmt: skip
    if source == "csv":
        spec["counts"] = "x.csv"
    cfg = {"seeds": [0], "datasets": {"d": spec}, "models": {"m": {"architecture": "vae"}}}
    validate(cfg, SCHEMA)
    with pytest.raises(Exception, match="is not of type 'string'"):
        validate({**cfg, "datasets": {"d": {**spec, "obs": {"condition": 1}}}}, SCHEMA)


def test_the_selection_and_labels_rerun_the_parse_and_no_download():
    for spec in ({"source": "tenx", "url": "https://x/m.tar.gz"}, {"source": "simulated", "cell_types": {"T": 1.0}}):
        edited = {**spec, "obs_filter": "cell_type == 'T'", "max_cells": 5, "seed": 2, "obs": {"condition": "stim"}}
        assert download_spec(edited) == download_spec(spec)
        assert parse_spec(edited) != parse_spec(spec)
    census = {"source": "census", "uri": "file:store"}
    assert download_spec({**census, "obs": {"condition": "stim"}}) == download_spec(census)
    for key, value in (("obs_filter", "assay == 'x'"), ("max_cells", 5), ("seed", 2)):  # a Census query's own
        assert download_spec({**census, key: value}) != download_spec(census)
