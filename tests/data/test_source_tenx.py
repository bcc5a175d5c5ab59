"""10x source on the real files in ../shared/data: PBMC 3k download layout, Kang 2018, scanpy fixtures."""

import gzip
import shutil

import numpy as np
import pandas as pd
import pytest

from scmix.data.fetch import fetch_dataset
from scmix.data.sources import parse_dataset
from scmix.errors import ScmixInputError


def load(name, spec, tmp_path):
    return parse_dataset(name, spec, fetch_dataset(name, spec, tmp_path / name))


def test_pbmc3k_tarball_with_cell_types(shared_data, tmp_path):
    d = shared_data / "pbmc3k"
    spec = {"source": "tenx", "url": f"file://{d}/pbmc3k_filtered_gene_bc_matrices.tar.gz",
            "labels": {"url": f"file://{d}/cell_types.csv", "barcode_column": "barcode"}}  # fmt: skip
    adata = load("pbmc3k", spec, tmp_path)
    assert adata.shape == (2638, 13714) and adata.X.dtype == np.int32
    assert adata.obs["cell_type"].nunique() == 9
    assert adata.obs["cell_type"].value_counts()["B"] == 344
    assert adata.var.loc["CD3E", "gene_ids"] == "ENSG00000198851"
    # per-cell totals and detected genes match the annotation's Seurat columns
    np.testing.assert_array_equal(np.asarray(adata.X.sum(1)).ravel(), adata.obs["nCount_RNA"].to_numpy())
    np.testing.assert_array_equal(np.asarray((adata.X > 0).sum(1)).ravel(), adata.obs["nFeature_RNA"].to_numpy())


def test_kang2018_v3_folder_with_donors(shared_data, tmp_path):
    d = shared_data / "kang2018"
    spec = {"source": "tenx", "url": f"file://{d}", "labels": {"url": f"file://{d}/cell_metadata.csv"}}
    adata = load("kang", spec, tmp_path)
    assert adata.shape == (12261, 1287)
    assert adata.obs["donor"].nunique() == 8 and adata.obs["cell_type"].nunique() == 8
    assert adata.var["gene_ids"].str.startswith("ENSG").all()


def test_scanpy_fixtures_v1_v3_and_h5_agree(shared_data, tmp_path):
    fx = shared_data / "tenx" / "scanpy_fixtures"
    v1 = load("v1", {"source": "tenx", "url": f"file://{fx}/1.2.0/filtered_gene_bc_matrices"}, tmp_path)
    h5_v2 = load("h5v2", {"source": "tenx", "url": f"file://{fx}/1.2.0/filtered_gene_bc_matrices_h5.h5"}, tmp_path)
    assert v1.shape == h5_v2.shape and (v1.X != h5_v2.X).nnz == 0
    v3 = load("v3", {"source": "tenx", "url": f"file://{fx}/3.0.0/filtered_feature_bc_matrix"}, tmp_path)
    h5 = load("h5", {"source": "tenx", "url": f"file://{fx}/3.0.0/filtered_feature_bc_matrix.h5"}, tmp_path)
    assert v3.shape == h5.shape and (v3.X != h5.X).nnz == 0
    assert list(v3.var["gene_ids"]) == list(h5.var["gene_ids"])


def test_raw_geo_matrix_keeps_every_barcode(shared_data, tmp_path):
    d = shared_data / "tenx" / "GSM6544281_raw_feature_bc_matrix"
    adata = load("raw", {"source": "tenx", "url": f"file://{d}"}, tmp_path)
    assert adata.shape == (83683, 36601)
    assert 300 < (np.asarray(adata.X.sum(1)).ravel() >= 500).sum() < 600  # ~437 real cells


def test_matrix_shape_disagreeing_with_barcodes_is_rejected(shared_data, tmp_path):
    src = shared_data / "tenx" / "scanpy_fixtures" / "3.0.0" / "filtered_feature_bc_matrix"
    bad = tmp_path / "bad"
    shutil.copytree(src, bad)
    lines = gzip.open(bad / "barcodes.tsv.gz", "rt").read().splitlines()
    with gzip.open(bad / "barcodes.tsv.gz", "wt") as fh:
        fh.write("\n".join(lines[:-1]) + "\n")
    with pytest.raises(
        ScmixInputError, match=rf"dataset 'bad'.*matrix.mtx.gz.*lists .* and barcodes.tsv.gz {len(lines) - 1}"
    ):
        parse_dataset("bad", {"source": "tenx"}, bad)


def test_annotation_that_matches_no_barcode_is_rejected(shared_data, tmp_path):
    d = shared_data / "pbmc3k"
    labels = pd.read_csv(d / "cell_types.csv")
    labels["barcode"] = labels["barcode"].str.replace("-1", "-2")
    labels.to_csv(tmp_path / "labels.csv", index=False)
    spec = {"source": "tenx", "url": f"file://{d}/pbmc3k_filtered_gene_bc_matrices.tar.gz",
            "labels": {"url": f"file://{tmp_path}/labels.csv"}}  # fmt: skip
    with pytest.raises(ScmixInputError, match=r"dataset 'pb'.*labels.csv.*only 0 of 2638.*without the '-N'"):
        load("pb", spec, tmp_path)


# ------------------------------------------------- a source's own label names and gene prefixes (real Kang 2018)
def test_obs_keys_rename_a_sources_own_label_columns(shared_data, tmp_path):
    """Kang's annotation as another source would write it (cluster_id, sample_id): obs_keys maps it to the
    workflow's keys at parse time."""
    d = shared_data / "kang2018"
    meta = pd.read_csv(d / "cell_metadata.csv").rename(columns={"cell_type": "cluster_id", "donor": "sample_id"})
    meta.to_csv(tmp_path / "annotation.csv", index=False)
    spec = {"source": "tenx", "url": f"file://{d}", "labels": {"url": f"file://{tmp_path}/annotation.csv"},
            "obs_keys": {"cell_type": "cluster_id", "donor": "sample_id"}}  # fmt: skip
    adata = load("kang", spec, tmp_path)
    assert {"cell_type", "donor"} <= set(adata.obs) and not {"cluster_id", "sample_id"} & set(adata.obs)
    truth = pd.read_csv(d / "cell_metadata.csv", index_col=0).loc[adata.obs_names]
    assert (adata.obs["cell_type"].astype(str) == truth["cell_type"].astype(str)).all()
    assert adata.obs["donor"].nunique() == 8
    spec["obs_keys"] = {"cell_type": "celltype"}
    with pytest.raises(ScmixInputError, match=r"dataset 'kang': obs_keys.cell_type names obs column 'celltype', "
                       r"which the dataset does not have \(it has \['cluster_id', 'sample_id'\]\)"):  # fmt: skip
        parse_dataset("kang", spec, tmp_path / "kang")


def test_a_genome_prefix_is_stripped_and_hinted_when_it_is_not(shared_data, tmp_path, kang2018, pbmc3k):
    """Kang 2018 as a reference of two genomes writes it (GRCh38_ENSG..., GRCh38_CD3E): with genes.strip_prefix it
    matches PBMC 3k on Ensembl IDs; without, the error says why the datasets share no genes."""
    from conftest import write_mex

    from scmix.data.genes import has_ensembl_ids, resolve_match_on, shared_keys

    write_mex(kang2018, tmp_path / "prefixed", prefix="GRCh38_")
    spec = {"source": "tenx", "url": f"file://{tmp_path}/prefixed"}
    raw = fetch_dataset("kang", spec, tmp_path / "kang")
    plain = parse_dataset("kang", spec, raw)
    assert plain.var_names[0].startswith("GRCh38_") and not has_ensembl_ids(plain)
    with pytest.raises(ScmixInputError, match=r"share only 0 genes .*dataset 'kang''s gene names carry the genome "
                       r"prefix 'GRCh38_' \(e.g. GRCh38_.*\): set genes.strip_prefix: 'GRCh38_'"):  # fmt: skip
        parts = {"pbmc3k": pbmc3k, "kang": plain}
        shared_keys(parts, resolve_match_on(parts), what="mix 'm'")
    stripped = parse_dataset("kang", spec, raw, strip_prefix="GRCh38_")
    assert list(stripped.var_names) == list(kang2018.var_names) and has_ensembl_ids(stripped)
    parts = {"pbmc3k": pbmc3k, "kang": stripped}
    assert resolve_match_on(parts) == "gene_ids" and len(shared_keys(parts, "gene_ids")) == 1284
