"""The GEO source (scmix.data.sources.geo) on real GEO SOFT files from ../shared/data/geo: GSE781 (34 samples on two
Affymetrix platforms), its curated dataset GDS507, the single sample GSM11805, the GPL97 annotation, and
GEOparse's small real fixtures. Every test copies the files it needs into a fresh raw folder."""

import gzip
import shutil

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from scmix.data.sources import parse_dataset
from scmix.data.sources.geo import _sample_row, geo_soft_url, parse
from scmix.errors import ScmixInputError

GSE781_GPL96 = ["GSM11805", "GSM11814", "GSM11823", "GSM11830", "GSM12067", "GSM12075", "GSM12079", "GSM12098",
                "GSM12100", "GSM12105", "GSM12268", "GSM12270", "GSM12283", "GSM12298", "GSM12300", "GSM12399",
                "GSM12444"]  # fmt: skip
SOFT_EX_TITLES = ["Control Embyronic Stem Cell Replicate 1", "Control Embyronic Stem Cell Replicate 2",
                  "Triple-Fusion Transfected Embryonic Stem Cells Replicate 1"]  # fmt: skip


@pytest.fixture(scope="session")
def geo(shared_data):
    pytest.importorskip("GEOparse", reason="the geo source needs GEOparse (pip install GEOparse==2.0.4 six)")
    folder = shared_data / "geo"
    if not folder.is_dir():
        pytest.skip(f"{folder} is absent")
    return folder


def raw_with(tmp_path, *files, sub="raw"):
    raw = tmp_path / sub
    raw.mkdir(exist_ok=True)
    for f in files:
        shutil.copy(f, raw / f.name)
    return raw


def assert_names(err, dataset, file):
    msg = str(err.value)
    assert f"dataset '{dataset}'" in msg and str(file) in msg, msg


@pytest.fixture(scope="module")
def gse781_raw(geo, tmp_path_factory):
    return raw_with(tmp_path_factory.mktemp("gse781"), geo / "GSE781_family.soft.gz")


@pytest.fixture(scope="module")
def gse781_gpl96(gse781_raw):
    return parse_dataset("kidney", {"source": "geo", "platform": "GPL96"}, gse781_raw)


def test_geo_soft_url():
    assert geo_soft_url("GSE264667") == (
        "https://ftp.ncbi.nlm.nih.gov/geo/series/GSE264nnn/GSE264667/soft/GSE264667_family.soft.gz"
    )
    assert geo_soft_url("gse781") == "https://ftp.ncbi.nlm.nih.gov/geo/series/GSEnnn/GSE781/soft/GSE781_family.soft.gz"
    assert geo_soft_url("GSE1234").startswith("https://ftp.ncbi.nlm.nih.gov/geo/series/GSE1nnn/GSE1234/")
    assert geo_soft_url("GDS507") == "https://ftp.ncbi.nlm.nih.gov/geo/datasets/GDSnnn/GDS507/soft/GDS507.soft.gz"
    for bad in ("GSM11805", "GSE", "781", "GSE78x"):
        with pytest.raises(ScmixInputError, match="not a GEO series"):
            geo_soft_url(bad)


def test_gse781_gpl96_soft_values(gse781_gpl96, tmp_path):
    a = gse781_gpl96
    assert a.shape == (17, 22283)
    assert list(a.obs_names) == GSE781_GPL96
    assert a.uns["count_data"] is False
    assert a.uns["geo"]["platform"] == "GPL96" and a.uns["geo"]["accession"] == "GSE781"
    assert not sp.issparse(a.X) and a.X.dtype == np.float64 and not np.isnan(a.X).any()
    # MAS5 values as published, not rounded
    i, j = a.obs_names.get_loc("GSM11805"), a.var_names.get_loc("AFFX-BioB-5_at")
    assert a.X[i, j] == pytest.approx(953.9)
    assert (a.X != np.round(a.X)).any()
    assert a.var_names.is_unique and a.var.index.name == "probe_id"
    assert a.var.loc["1007_s_at", "gene_symbols"] == "DDR1" and a.var.loc["1007_s_at", "gene_ids"] == "780"
    assert a.var.loc["AFFX-BioB-5_at", "gene_symbols"] == ""
    s = a.obs.loc["GSM11805"]
    assert s["title"] == "N035 Normal Human Kidney U133A"
    assert s["source_name_ch1"].startswith("Trizol isolation of total RNA from normal tissue")
    assert s["platform_id"] == "GPL96" and s["series_id"] == "GSE781" and s["organism_ch1"] == "Homo sapiens"
    assert s["description"].startswith("Age = 70; Gender = Female")
    assert a.obs["dataset"].unique().tolist() == ["kidney"]
    a.write_h5ad(tmp_path / "x.h5ad")  # obs/var/uns are h5ad-writable


def test_gse781_gpl97_matches_gds507(gse781_raw, geo, tmp_path):
    series = parse("kidney", {"platform": "GPL97"}, gse781_raw)
    assert series.shape == (17, 22645) and series.obs["platform_id"].unique().tolist() == ["GPL97"]
    gds = parse("gds", {}, raw_with(tmp_path, geo / "GDS507.soft.gz"))
    assert gds.shape == (17, 22645) and gds.uns["count_data"] is False
    # the curated dataset holds the series' GPL97 values, sample for sample
    np.testing.assert_array_equal(series[gds.obs_names, gds.var_names].X, gds.X)
    assert gds.obs.loc["GSM11815", "disease state"] == "RCC"
    assert gds.obs.loc["GSM11810", "disease state"] == "normal"
    assert gds.obs.loc["GSM11810", "individual"] == "035"  # text, leading zero kept
    assert gds.obs["disease state"].value_counts().to_dict() == {"RCC": 9, "normal": 8}
    assert gds.var.loc["200000_s_at", "gene_symbols"] == "PRPF8"  # the GDS's IDENTIFIER column
    assert gds.X[gds.obs_names.get_loc("GSM11815"), 0] == pytest.approx(4254.0)


def test_gds507_with_platform_annotation(geo, tmp_path):
    raw = raw_with(tmp_path, geo / "GDS507.soft.gz", geo / "GPL97.annot.gz")
    a = parse("gds", {"annotation_file": "GPL97.annot.gz"}, raw)  # the .annot file is not a SOFT candidate
    assert a.var.loc["200000_s_at", ["gene_symbols", "gene_ids"]].tolist() == ["PRPF8", "10594"]
    assert a.var.loc["200001_at", "gene_symbols"] == "CAPNS1"


def test_gse781_needs_a_platform(gse781_raw):
    with pytest.raises(ScmixInputError, match=r"2 platforms \(GPL96: 17 samples, GPL97: 17 samples\)") as err:
        parse("kidney", {}, gse781_raw)
    assert_names(err, "kidney", gse781_raw / "GSE781_family.soft.gz")
    with pytest.raises(ScmixInputError, match=r"unknown platform 'GPL570'.*\['GPL96', 'GPL97'\]") as err:
        parse("kidney", {"platform": "GPL570"}, gse781_raw)
    assert_names(err, "kidney", gse781_raw / "GSE781_family.soft.gz")


def test_single_sample_and_value_column(geo, tmp_path):
    raw = raw_with(tmp_path, geo / "GSM11805.txt.gz")
    a = parse("one", {}, raw)
    assert a.shape == (1, 22283) and a.obs_names.tolist() == ["GSM11805"] and a.uns["geo"]["geo_type"] == "GSM"
    assert a.obs.loc["GSM11805", "title"] == "N035 Normal Human Kidney U133A"
    assert a.X[0, 0] == pytest.approx(953.9)
    file = raw / "GSM11805.txt.gz"
    with pytest.raises(ScmixInputError, match=r"value column 'NOPE' missing in sample GSM11805.*ABS_CALL") as err:
        parse("one", {"value_column": "NOPE"}, raw)
    assert_names(err, "one", file)
    with pytest.raises(ScmixInputError, match=r"'ABS_CALL' of sample GSM11805 is not numeric \(e.g. 'P'\)") as err:
        parse("one", {"value_column": "ABS_CALL"}, raw)
    assert_names(err, "one", file)
    shutil.copy(geo / "GPL97.annot.gz", raw)
    with pytest.raises(ScmixInputError, match="annotation file is for platform 'GPL97' but the data are on 'GPL96'"):
        parse("one", {"annotation_file": "GPL97.annot.gz"}, raw)


def test_characteristics_become_obs_columns(geo, tmp_path):
    raw = raw_with(tmp_path, geo / "geoparse_fixtures" / "soft_ex_family.txt")
    a = parse("es", {}, raw)  # a two-channel series whose file name says nothing: type sniffed from ^ entries
    assert a.shape == (3, 20) and a.uns["geo"]["geo_type"] == "GSE" and a.obs_names.tolist() == SOFT_EX_TITLES
    s = a.obs.loc["Control Embyronic Stem Cell Replicate 1"]
    assert s["Cell line"] == "ES-D3 (CRL-1934)" and s["Passages"] == "4" and s["Strain"] == "129Sv"
    assert s["Cell type"] == "embryonic stem cells derived from blastocysts"
    assert s["Strain_ch2"] == "C57BL/6" and s["Age_ch2"] == "E17.5 d" and s["Tissue_ch2"] == "whole embryo"
    assert s["label_ch1"] == "Cy5" and s["platform_id"] == "Murine 15K long oligo array version 2.0"
    assert a.obs.loc[SOFT_EX_TITLES[2], "Cell line"].endswith("transfected with pUb-fluc-mrfp-ttk triple fusion "
                                                              "reporter gene")  # fmt: skip
    assert a.var.loc["1", "gene_symbols"] == "Nfatc2"  # the platform's Gene_Sym column
    assert a.X[0, 0] == pytest.approx(-1.6274758)
    b = parse("es", {"gene_symbol_column": "GB_ACC", "value_column": "gProcessedSignal"}, raw)
    assert b.var.loc["1", "gene_symbols"] == "U02079" and b.X[0, 0] == pytest.approx(9130.0)
    with pytest.raises(ScmixInputError, match=r"gene_symbol_column 'Symbol' is not a platform table column") as err:
        parse("es", {"gene_symbol_column": "Symbol"}, raw)
    assert_names(err, "es", raw / "soft_ex_family.txt")


def test_sample_row_rules():
    row = _sample_row({"title": ["liver 1"], "characteristics_ch1": ["tissue: liver", "age: 035", "healthy",
                       "treatment: none", "treatment: sham", "title: other"], "platform_id": ["GPL1"],
                       "characteristics_ch2": ["tissue: reference"], "contact_zip/postal_code": ["1"]})  # fmt: skip
    assert row == {"title": "liver 1", "tissue": "liver", "age": "035", "characteristics_ch1": "healthy",
                   "treatment": "none; sham", "title_ch1": "other", "tissue_ch2": "reference", "platform_id": "GPL1",
                   "contact_zip_postal_code": "1"}  # fmt: skip


def write_counts(path, table):
    table.to_csv(path, sep="\t" if path.name.endswith(".tsv") else ",")


def test_supplementary_counts_by_title(geo, tmp_path):
    raw = raw_with(tmp_path, geo / "geoparse_fixtures" / "soft_ex_family.txt")
    genes = pd.Index(["ENSMUSG1", "ENSMUSG2", "ENSMUSG3", "ENSMUSG4"], name="gene_id")
    counts = pd.DataFrame(np.arange(12).reshape(4, 3), index=genes, columns=SOFT_EX_TITLES)
    counts.insert(0, "gene_name", ["Actb", "Gapdh", "Actb", None])
    write_counts(raw / "counts.csv", counts)
    spec = {"source": "geo", "expression": "supplementary", "counts_file": "counts.csv"}
    a = parse_dataset("es", spec, raw)  # counts.csv is no SOFT candidate; the SOFT file is found alone
    assert a.uns["count_data"] is True and sp.issparse(a.X) and a.X.dtype == np.int32
    assert a.shape == (3, 4) and a.obs_names.tolist() == SOFT_EX_TITLES
    assert a.var_names.tolist() == ["Actb", "Gapdh", "Actb-1", "ENSMUSG4"]
    assert a.var["gene_ids"].tolist() == genes.tolist()
    assert a.X.toarray()[:, 1].tolist() == [3, 4, 5]
    assert a.obs.loc[SOFT_EX_TITLES[0], "Strain_ch2"] == "C57BL/6"

    counts[SOFT_EX_TITLES] = counts[SOFT_EX_TITLES] + 0.5  # normalised-looking values
    write_counts(raw / "counts.csv", counts)
    loose = parse("es", spec, raw)  # the parser keeps them as they are and leaves count_data True ...
    assert loose.uns["count_data"] is True and loose.X.toarray()[0, 0] == 0.5
    with pytest.raises(ScmixInputError, match="counts must be integers") as err:  # ... the common check rejects
        parse_dataset("es", spec, raw)
    assert "dataset 'es'" in str(err.value)


def test_supplementary_samples_x_genes_by_accession(gse781_raw, tmp_path):
    raw = raw_with(tmp_path, gse781_raw / "GSE781_family.soft.gz")
    rng = np.random.default_rng(0)
    counts = pd.DataFrame(rng.poisson(5, (17, 6)), index=GSE781_GPL96[::-1], columns=[f"G{i}" for i in range(6)])
    counts.insert(0, "batch", ["a", "b"] * 8 + ["a"])
    write_counts(raw / "counts.tsv", counts)
    spec = {"platform": "GPL96", "expression": "supplementary", "counts_file": "counts.tsv",
            "orientation": "samples_x_genes"}  # fmt: skip
    a = parse("kidney", spec, raw)
    assert a.shape == (17, 6) and a.obs_names.tolist() == GSE781_GPL96[::-1]
    assert a.obs.loc["GSM11805", "title"] == "N035 Normal Human Kidney U133A" and a.obs["batch"].iloc[0] == "a"
    np.testing.assert_array_equal(a.X.toarray(), counts.drop(columns="batch").to_numpy())
    counts.index = ["S" + s for s in counts.index]
    write_counts(raw / "counts.tsv", counts)
    with pytest.raises(ScmixInputError, match=r"17 of 17 counts-table samples match no GEO sample") as err:
        parse("kidney", spec, raw)
    assert_names(err, "kidney", raw / "counts.tsv")


def test_bad_input_errors(geo, tmp_path):
    fx = geo / "geoparse_fixtures"
    empty = raw_with(tmp_path, sub="empty")
    with pytest.raises(ScmixInputError, match="no SOFT file") as err:
        parse("d", {}, empty)
    assert_names(err, "d", empty)
    with pytest.raises(ScmixInputError, match="'soft_file: GSE1_family.soft.gz' is not a file") as err:
        parse("d", {"soft_file": "GSE1_family.soft.gz"}, empty)
    assert_names(err, "d", empty / "GSE1_family.soft.gz")

    two = raw_with(tmp_path, geo / "GDS507.soft.gz", fx / "GSE105845_family.soft", sub="two")
    with pytest.raises(ScmixInputError, match=r"several candidate SOFT files \['GDS507.soft.gz', 'GSE105845"):
        parse("d", {}, two)
    with pytest.raises(ScmixInputError, match="GSE GSE105845 holds no samples") as err:
        parse("d", {"soft_file": "GSE105845_family.soft"}, two)
    assert_names(err, "d", two / "GSE105845_family.soft")
    with pytest.raises(ScmixInputError, match="value_column 'ABS_CALL' does not apply to a GDS"):
        parse("d", {"soft_file": "GDS507.soft.gz", "value_column": "ABS_CALL"}, two)
    with pytest.raises(ScmixInputError, match="expression must be one of"):
        parse("d", {"expression": "counts"}, two)
    with pytest.raises(ScmixInputError, match="needs 'counts_file'"):
        parse("d", {"expression": "supplementary"}, two)

    seq = raw_with(tmp_path, fx / "GSM2795971.txt", sub="seq")  # a ChIP-seq sample: no table in SOFT
    with pytest.raises(ScmixInputError, match="sample GSM2795971 has no data table.*expression: supplementary") as err:
        parse("d", {}, seq)
    assert_names(err, "d", seq / "GSM2795971.txt")

    bad = raw_with(tmp_path, sub="bad")
    (bad / "GDS507.soft.gz").write_bytes((geo / "GDS507.soft.gz").read_bytes()[:200_000])  # cut download
    with pytest.raises(ScmixInputError, match="corrupt or truncated gzip file") as err:
        parse("d", {}, bad)
    assert_names(err, "d", bad / "GDS507.soft.gz")
    (bad / "GDS507.soft.gz").write_text("<html>Not Found</html>\n")  # an error page saved under the name
    with pytest.raises(ScmixInputError, match="corrupt or truncated gzip file.*Not a gzipped file"):
        parse("d", {}, bad)

    with gzip.open(geo / "GSM11805.txt.gz", "rt") as fh:  # an uncompressed SOFT file cut mid-table
        lines = fh.readlines()
    (bad / "GDS507.soft.gz").unlink()
    (bad / "GSM11805.txt").write_text("".join(lines[:5000]))
    with pytest.raises(ScmixInputError, match=r"declares 22283 data rows but holds \d+: the file looks truncated"):
        parse("d", {}, bad)
