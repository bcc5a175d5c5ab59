"""rdata source (R data objects read through rpy2) on real data: R writes a SingleCellExperiment .rds, an .rda
holding an SCE and a second object, a Seurat v4 .rds and a dgCMatrix + data.frame .RData from the 10x files of
PBMC 3k and Kang 2018 (../shared/data), and each must read back as exactly the counts, genes, barcodes and labels
the 10x source gives for the same files. Skips cleanly without the data, R, rpy2 or the R packages."""

import gzip
import json
import shutil
import subprocess
import sys
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import yaml

from scmix.data.fetch import fetch_dataset
from scmix.data.sources import parse_dataset, rdata
from scmix.data.sources.rdata import _apt_name
from scmix.errors import ScmixInputError

REPO = Path(__file__).resolve().parents[2]
R_PACKAGES = {"SingleCellExperiment": "r-bioc-singlecellexperiment", "SeuratObject": "r-cran-seuratobject"}

# The objects, built as a user would from a 10x download: Matrix::readMM and the two tsv files (no DropletUtils),
# the annotation joined on barcode (only annotated cells kept, as the 10x source's labels do).
BUILD_R = r"""
args <- commandArgs(trailingOnly = TRUE)
mex <- args[1]; labels <- args[2]; out <- args[3]
suppressPackageStartupMessages({library(Matrix); library(SingleCellExperiment); library(SeuratObject)})
first <- function(names) { f <- file.path(mex, names); f[file.exists(f)][1] }
m <- as(readMM(first(c("matrix.mtx.gz", "matrix.mtx"))), "CsparseMatrix")
genes <- read.delim(first(c("features.tsv.gz", "genes.tsv")), header = FALSE, colClasses = "character")
cells <- readLines(first(c("barcodes.tsv.gz", "barcodes.tsv")))
meta <- read.csv(labels, colClasses = c(barcode = "character"))
rownames(meta) <- meta$barcode
keep <- cells %in% rownames(meta)
m <- m[, keep]
cells <- cells[keep]
meta <- meta[cells, setdiff(names(meta), "barcode")]
meta$cell_type <- factor(meta$cell_type)
dimnames(m) <- list(genes$V1, cells)
# SingleCellExperiment as DropletUtils lays it out: Ensembl IDs as row names, rowData ID and Symbol
sce <- SingleCellExperiment(assays = list(counts = m), colData = DataFrame(meta),
                            rowData = DataFrame(ID = genes$V1, Symbol = genes$V2))
saveRDS(sce, file.path(out, "sce.rds"))
qc_table <- data.frame(cell = cells, total = colSums(m))
save(sce, qc_table, file = file.path(out, "two.rda"))
# Seurat v4 object: symbols as row names (unique as the 10x reader makes them), no cell or gene filter
counts <- m
rownames(counts) <- make.unique(genes$V2, sep = "-")
seurat <- CreateSeuratObject(counts, meta.data = meta, min.cells = 0, min.features = 0)
saveRDS(seurat, file.path(out, "seurat.rds"))
# a bare dgCMatrix and its cell metadata, saved together
cell_meta <- meta
save(counts, cell_meta, file = file.path(out, "matrix.RData"))
# the same SCE uncompressed (gzipped by the test, as a user's sce.rds.gz) and in an xz-compressed .RData
saveRDS(sce, file.path(out, "sce_plain.rds"), compress = FALSE)
save(sce, file = file.path(out, "sce_xz.RData"), compress = "xz")
# normalised values in an SCE's counts: a count model cannot use them
half <- SingleCellExperiment(assays = list(counts = m[, 1:200] / 2))
saveRDS(half, file.path(out, "half.rds"))
"""

# file, spec keys, whether var carries the Ensembl IDs (rowData ID) or the symbols stand in
OBJECTS = {
    "sce": ("sce.rds", {}, True),
    "rda": ("two.rda", {"object": "sce"}, True),
    "seurat": ("seurat.rds", {}, False),
    "matrix": ("matrix.RData", {"object": "counts", "obs_object": "cell_meta"}, False),
    "rds_gz": ("sce.rds.gz", {}, True),
    "rdata_xz": ("sce_xz.RData", {}, True),
}
REAL = {
    "pbmc3k": ("pbmc3k/pbmc3k_filtered_gene_bc_matrices.tar.gz", "pbmc3k/cell_types.csv", ["cell_type"]),
    "kang": ("kang2018", "kang2018/cell_metadata.csv", ["cell_type", "donor"]),
}


@pytest.fixture(scope="session")
def r_with_packages():
    if shutil.which("Rscript") is None:
        pytest.skip("Rscript is not installed (Debian: apt-get install r-base-core)")
    try:  # R started as the source starts it (which leaves the process's environment as it was)
        rdata._r("check", Path("."))
    except ScmixInputError as err:  # no rpy2, or R that rpy2 cannot start
        pytest.skip(f"rpy2 is not usable ({err}); pip install -e '.[rdata]'")
    for package, apt in R_PACKAGES.items():
        res = subprocess.run(["Rscript", "-e", f"library({package})"], capture_output=True, text=True)
        if res.returncode != 0:
            pytest.skip(f"the R package {package} is not installed (Debian: apt-get install {apt})")


def rdata_dir(tmp_path: Path, built: Path, file: str) -> Path:
    """A raw folder holding one of the built files."""
    raw = tmp_path / "raw" / file.replace(".", "_")
    raw.mkdir(parents=True, exist_ok=True)
    shutil.copy(built / file, raw / file)
    return raw


@pytest.fixture(scope="module", params=sorted(REAL))
def real(request, shared_data, r_with_packages, tmp_path_factory):
    """(dataset, the 10x source's AnnData, folder of the R objects built from the same files, label columns)."""
    name = request.param
    mex_url, labels, columns = REAL[name]
    tmp = tmp_path_factory.mktemp(f"rdata_{name}")
    spec = {
        "source": "tenx",
        "url": f"file://{shared_data / mex_url}",
        "labels": {"url": f"file://{shared_data / labels}"},
    }
    raw = fetch_dataset(name, spec, tmp / "tenx")
    reference = parse_dataset(name, spec, raw)
    mex = next(p.parent for p in raw.rglob("matrix.mtx*"))
    built = tmp / "built"
    built.mkdir()
    script = tmp / "build.R"
    script.write_text(BUILD_R)
    res = subprocess.run(["Rscript", str(script), str(mex), str(shared_data / labels), str(built)],
                         capture_output=True, text=True)  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    (built / "sce.rds.gz").write_bytes(gzip.compress((built / "sce_plain.rds").read_bytes(), compresslevel=1))
    return name, reference, built, columns


@pytest.mark.parametrize("kind", sorted(OBJECTS))
def test_r_objects_read_as_the_10x_source_reads_the_same_files(real, kind, tmp_path):
    name, reference, built, columns = real
    file, keys, has_ids = OBJECTS[kind]
    adata = parse_dataset(name, {"source": "rdata", **keys}, rdata_dir(tmp_path, built, file))
    assert adata.uns["source_type"] == "rdata" and adata.X.format == "csr" and adata.X.dtype == np.int32
    assert sorted(adata.obs_names) == sorted(reference.obs_names)
    reference = reference[adata.obs_names]  # the 10x source orders cells as the annotation table does
    assert list(adata.var_names) == list(reference.var_names)
    assert adata.shape == reference.shape and (adata.X != reference.X).nnz == 0
    for column in columns:
        assert list(adata.obs[column].astype(str)) == list(reference.obs[column].astype(str)), column
    expected_ids = reference.var["gene_ids"] if has_ids else reference.var_names
    assert list(adata.var["gene_ids"]) == list(expected_ids)


def test_pbmc3k_objects_keep_their_label_types(real, tmp_path):
    name, reference, built, _ = real
    if name != "pbmc3k":
        pytest.skip("one dataset is enough")
    adata = parse_dataset(name, {"source": "rdata"}, rdata_dir(tmp_path, built, "seurat.rds"))
    assert adata.obs["cell_type"].dtype == "category" and adata.obs["cell_type"].nunique() == 9
    assert adata.obs["nFeature_RNA"].dtype.kind == "i" and adata.obs["percent.mt"].dtype.kind == "f"
    assert (adata.obs["orig.ident"] == "SeuratProject").all()  # Seurat's own meta.data column
    np.testing.assert_array_equal(np.asarray(adata.X.sum(1)).ravel(), adata.obs["nCount_RNA"].to_numpy())


def test_an_rda_with_two_objects_needs_object_and_lists_them(real, tmp_path):
    name, _, built, _ = real
    raw = rdata_dir(tmp_path, built, "two.rda")
    listing = r"sce \(SingleCellExperiment\), qc_table \(data.frame\)"
    with pytest.raises(ScmixInputError, match=rf"dataset '{name}', file '.*two.rda': the file holds 2 objects: "
                                              rf"{listing}; set 'object'"):  # fmt: skip
        parse_dataset(name, {"source": "rdata"}, raw)
    with pytest.raises(ScmixInputError, match=rf"'object: sce2' is not an object of the file; it holds {listing}"):
        parse_dataset(name, {"source": "rdata", "object": "sce2"}, raw)
    with pytest.raises(ScmixInputError, match="no assay 'logcounts' .*its assays: counts.*set 'assay'"):
        parse_dataset(name, {"source": "rdata", "object": "sce", "assay": "logcounts"}, raw)
    with pytest.raises(ScmixInputError, match="obs_object applies to a bare count matrix"):
        parse_dataset(name, {"source": "rdata", "object": "sce", "obs_object": "qc_table"}, raw)


def test_non_integer_counts_are_refused_naming_the_dataset(real, tmp_path):
    name, _, built, _ = real
    with pytest.raises(ScmixInputError, match=r"dataset 'halved'.*counts must be integers but \d+ values are not"):
        parse_dataset("halved", {"source": "rdata"}, rdata_dir(tmp_path, built, "half.rds"))


def test_a_file_that_is_not_r_data_is_refused(tmp_path, r_with_packages):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "counts.rds").write_text("gene,cell1\nCD3E,4\n")
    with pytest.raises(ScmixInputError, match=r"dataset 'fake', file '.*counts.rds': not an R data file"):
        parse_dataset("fake", {"source": "rdata"}, raw)
    (raw / "counts.rds").unlink()
    with pytest.raises(ScmixInputError, match=r"set 'file': 0 files ending in"):
        parse_dataset("fake", {"source": "rdata"}, raw)


# A parse in a fresh Python, its errors printed as the scripts print them: one line.
CHILD = """
import sys
{setup}
from scmix.errors import ScmixInputError
from scmix.data.sources import parse_dataset
try:
    parse_dataset("child", {{"source": "rdata"}}, {raw!r})
except ScmixInputError as err:
    print(err)
"""


def child_parse(raw: Path, setup: str = "", env: dict | None = None) -> subprocess.CompletedProcess:
    import os

    code = CHILD.format(setup=setup, raw=str(raw))
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full_env, cwd=REPO)


def test_an_r_package_missing_for_the_class_names_what_to_install(real, tmp_path):
    """R without its site library (R_LIBS_SITE emptied): the SCE's package cannot be loaded."""
    name, _, built, _ = real
    if name != "pbmc3k":
        pytest.skip("one dataset is enough")
    empty = tmp_path / "no_site_library"
    empty.mkdir()
    res = child_parse(rdata_dir(tmp_path, built, "sce.rds"), env={"R_LIBS_SITE": str(empty), "R_LIBS_USER": str(empty)})
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip().splitlines() == [
        f"dataset 'child', file '{tmp_path}/raw/sce_rds/sce.rds': the R package SingleCellExperiment is not "
        "installed (R needs it to read the object): apt-get install r-bioc-singlecellexperiment"
    ]
    assert _apt_name("SeuratObject") == "r-cran-seuratobject"


def test_missing_rpy2_names_what_to_install(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "object.rds").write_bytes(b"X\n")
    res = child_parse(raw, setup="sys.modules['rpy2'] = None")
    assert res.returncode == 0, res.stderr[-2000:]
    out = res.stdout.strip()
    assert out.startswith(f"dataset 'child', file '{raw}/object.rds': reading R data files needs rpy2, which is not")
    assert "pip install 'rpy2==3.6.6'" in out and len(out.splitlines()) == 1


@pytest.mark.e2e
def test_an_r_object_dataset_through_parse_qc_mix_and_train(real, tmp_path):
    """A Seurat .rds of real PBMC 3k fetched from a file: URL, then QC, split, mix and a short training run."""
    name, _, built, _ = real
    if name != "pbmc3k":
        pytest.skip("one dataset is enough")
    config = {
        "seeds": [0],
        "datasets": {"pbmc": {"source": "rdata", "url": f"file://{built}/seurat.rds"}},
        "mixes": {"m": {"total_cells": 400, "datasets": {"pbmc": 1.0}}},
        "models": {"ldvae": {"architecture": "ldvae", "n_latent": 4, "hidden": [32], "epochs": 3, "batch_size": 64,
                             "threads": 1}},
    }  # fmt: skip
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(tmp_path),
           "--configfile", str(path), "--cores", "2", "results/models/ldvae/m/seed0/model.pt"]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-4000:]
    raw = ad.read_h5ad(tmp_path / "results/raw/pbmc.h5ad")
    assert raw.shape == (2638, 13714) and raw.uns["source_type"] == "rdata" and raw.X.dtype.kind == "i"
    assert raw.obs["cell_type"].nunique() == 9
    manifest = json.loads((tmp_path / "results/mixes/m/seed0.manifest.json").read_text())
    assert manifest["cells_per_dataset"] == {"pbmc": 400} and 10000 < manifest["n_genes"] <= 13714
    assert (tmp_path / "results/models/ldvae/m/seed0/model.pt").stat().st_size > 0
    history = pd.read_csv(tmp_path / "results/models/ldvae/m/seed0/history.tsv", sep="\t")
    assert len(history) >= 1


def test_a_dense_matrix_a_wrong_class_and_a_truncated_file_without_shared_data(tmp_path, r_with_packages):
    """Small objects written here (no ../shared needed): a dense integer matrix reads exactly; an integer vector,
    a truncated .rds and an 'assay' for a bare matrix are one-line errors."""
    raw = {k: tmp_path / k for k in ("dense", "vector", "truncated")}
    for folder in raw.values():
        folder.mkdir()
    code = (
        "m <- matrix(c(0L, 3L, 1L, 0L, 7L, 2L), nrow = 3, dimnames = list(c('CD3E', 'MS4A1', 'LYZ'), c('c1', 'c2')));"
        f"saveRDS(m, '{raw['dense']}/m.rds'); x <- 1:3; save(x, file = '{raw['vector']}/x.rda');"
        f"saveRDS(m, '{raw['truncated']}/m.rds', compress = FALSE)"
    )
    subprocess.run(["Rscript", "-e", code], check=True, capture_output=True)
    adata = parse_dataset("small", {"source": "rdata"}, raw["dense"])
    assert list(adata.obs_names) == ["c1", "c2"] and list(adata.var_names) == ["CD3E", "MS4A1", "LYZ"]
    np.testing.assert_array_equal(adata.X.toarray(), [[0, 3, 1], [0, 7, 2]])
    with pytest.raises(ScmixInputError, match="'assay' applies to SingleCellExperiment and Seurat objects"):
        parse_dataset("small", {"source": "rdata", "assay": "counts"}, raw["dense"])
    with pytest.raises(ScmixInputError, match=r"x.rda': an object of class integer is none of SingleCellExperiment"):
        parse_dataset("small", {"source": "rdata"}, raw["vector"])
    whole = (raw["truncated"] / "m.rds").read_bytes()
    (raw["truncated"] / "m.rds").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(ScmixInputError, match=r"m.rds': R cannot read it: "):
        parse_dataset("small", {"source": "rdata"}, raw["truncated"])


def test_starting_r_leaves_the_library_path_of_later_programs_alone(r_with_packages):
    """R's start-up puts the system's library folders on LD_LIBRARY_PATH; a program started afterwards (a Snakemake
    job) would load the system's libssl in place of its own, and `import urllib3` (cellxgene-census, requests)
    would fail in it."""
    import os

    before = os.environ.get("LD_LIBRARY_PATH")
    rdata._r("check", Path("."))
    assert os.environ.get("LD_LIBRARY_PATH") == before
    res = subprocess.run([sys.executable, "-c", "from urllib3.util.ssl_ import ssl"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]


def test_one_r_object_of_ctrl_and_stim_cells_makes_two_datasets(real, tmp_path):
    """An SCE holding several groups (here Kang's donors) cut into two datasets by obs_filter, each given its
    constant label by obs, with no intermediate file: the cells are exactly the 10x source's of those groups."""
    name, reference, built, _ = real
    if name != "kang":
        pytest.skip("Kang 2018 has the donors to select by")
    raw = rdata_dir(tmp_path, built, "sce.rds")
    one = parse_dataset("ctrl", {"source": "rdata", "obs_filter": "donor == 1016", "obs": {"condition": "ctrl"}}, raw)
    rest = parse_dataset("stim", {"source": "rdata", "obs_filter": "donor != 1016", "max_cells": 500, "seed": 3,
                                  "obs": {"condition": "stim"}}, raw)  # fmt: skip
    expected = reference.obs_names[reference.obs["donor"].astype(str) == "1016"]
    assert sorted(one.obs_names) == sorted(expected) and (one.obs["condition"] == "ctrl").all()
    assert (one.X != reference[one.obs_names].X).nnz == 0
    assert rest.n_obs == 500 and not set(rest.obs_names) & set(one.obs_names)
    assert (rest.obs["condition"] == "stim").all()
    assert rest.uns["selection"]["cells_matched"] == reference.n_obs - len(expected)
    again = parse_dataset("stim", {"source": "rdata", "obs_filter": "donor != 1016", "max_cells": 500, "seed": 3}, raw)
    assert list(again.obs_names) == list(rest.obs_names)
