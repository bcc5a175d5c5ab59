"""recount3: R/recount3.R on the real (trimmed) recount3 mirror in ../shared/data, and the Python parser.

Read counts are recomputed here independently from the raw gene_sums and recount_qc files
(recount3's compute_read_counts: round(coverage sum / recount_qc.star.average_mapped_length)), and recount3's
own package test files for DRP002835 (ERCC) check the metadata merge and transform_counts against the numbers
recount3's test suite expects.
"""

from __future__ import annotations

import functools
import gzip
import http.server
import json
import shutil
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from scmix.data.sources import parse_dataset
from scmix.data.sources.recount3 import parse
from scmix.errors import ScmixInputError

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "R" / "recount3.R"
KEYS = ["rail_id", "external_id", "study"]


# ------------------------------------------------------------------------------------------------ helpers


@pytest.fixture(scope="module")
def rscript() -> str:
    exe = shutil.which("Rscript")
    if exe is None:
        pytest.skip("Rscript is not installed (Debian: apt-get install r-base-core r-bioc-edger)")
    probe = subprocess.run([exe, "-e", "quit(status = !requireNamespace('edgeR', quietly = TRUE))"],
                           capture_output=True, timeout=60)  # fmt: skip
    if probe.returncode != 0:
        pytest.skip("the R package edgeR is not installed (Debian: apt-get install r-bioc-edger)")
    return exe


@pytest.fixture(scope="module")
def mirror(shared_data) -> Path:
    path = shared_data / "recount3" / "mirror"
    if not path.is_dir():
        pytest.skip(f"recount3 mirror {path} is absent")
    return path


def run_r(rscript: str, mirror_url: str, project: str, out: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [rscript, str(SCRIPT), "--mirror", mirror_url, "--project", project, "--out", str(out), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def run_ok(rscript: str, mirror_url: str, project: str, out: Path, *args: str) -> subprocess.CompletedProcess:
    proc = run_r(rscript, mirror_url, project, out, *args)
    assert proc.returncode == 0, proc.stderr
    return proc


def project_dir(mirror: Path, kind: str, project: str) -> Path:
    return mirror / "human" / "data_sources" / "sra" / kind / project[-2:] / project


def raw_gene_sums(mirror: Path, project: str) -> pd.DataFrame:
    """The coverage sums exactly as stored: two ## lines, then gene_id and one column per sample."""
    path = project_dir(mirror, "gene_sums", project) / f"sra.gene_sums.{project}.G026.gz"
    with gzip.open(path, "rt") as fh:
        assert fh.readline().startswith("##annotation=G026")
        assert fh.readline().startswith("##date.generated=")
        return pd.read_csv(fh, sep="\t", index_col=0)


def avg_mapped_length(mirror: Path, project: str) -> pd.Series:
    path = project_dir(mirror, "metadata", project) / f"sra.recount_qc.{project}.MD.gz"
    qc = pd.read_csv(path, sep="\t", index_col="external_id")
    return qc["star.average_mapped_length"]


def expected_counts(sums: pd.DataFrame, aml: pd.Series) -> pd.DataFrame:
    """compute_read_counts(): round(t(t(raw_counts) / avg_mapped_length), 0); R and numpy both round half to even."""
    return np.rint(sums / aml[sums.columns].to_numpy()).astype(np.int64)


def filter_by_expr(counts: pd.DataFrame, group=None, min_count=10, min_total_count=15, large_n=10, min_prop=0.7):
    """edgeR::filterByExpr.default written out in numpy (edgeR 3.40)."""
    lib = counts.sum(axis=0).to_numpy(dtype=float)
    n = counts.shape[1] if group is None else min(Counter(group).values())
    if n > large_n:
        n = large_n + (n - large_n) * min_prop
    cutoff = min_count / np.median(lib) * 1e6
    cpm = counts.to_numpy(dtype=float) / lib * 1e6
    keep_cpm = (cpm >= cutoff).sum(axis=1) >= n - 1e-14
    keep_total = counts.sum(axis=1).to_numpy() >= min_total_count - 1e-14
    return pd.Series(keep_cpm & keep_total, index=counts.index)


def read_out(out: Path):
    counts = pd.read_csv(out / "counts.tsv.gz", sep="\t", index_col="gene_id")
    samples = pd.read_csv(out / "samples.tsv", sep="\t", quoting=3, low_memory=False)
    genes = pd.read_csv(out / "genes.tsv", sep="\t", quoting=3, low_memory=False)
    info = json.loads((out / "filter.json").read_text())
    return counts, samples, genes, info


def assert_one_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1, proc.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]


def assert_no_output(out: Path) -> None:
    assert not out.exists()
    assert not list(out.parent.glob(out.name + ".tmp-*")), "a temporary output folder was left behind"


# ------------------------------------------------------------------------------ runs on the real mirror


@pytest.fixture(scope="module")
def runs(rscript, mirror, tmp_path_factory):
    """The R script once per configuration; the outputs are shared by the tests below."""
    base = tmp_path_factory.mktemp("recount3")
    url = mirror.as_uri()
    configs = {
        "srp_none": ("SRP014565", "--filter", "none"),
        "srp_edger": ("SRP014565",),
        "drp_none": ("DRP004088", "--filter", "none"),
        "drp_edger": ("DRP004088", "--filter", "edger"),
        "drp_edger_group": ("DRP004088", "--group", "sra.sample_attributes"),
        "drp_min": ("DRP004088", "--filter", "min_samples", "--min-samples", "2", "--min-count", "5"),
    }
    results = {}
    for key, (project, *args) in configs.items():
        proc = run_ok(rscript, url, project, base / key, *args)
        results[key] = (base / key, proc)
    return results


def test_srp014565_counts_equal_coverage_over_mapped_length(runs, mirror):
    out, proc = runs["srp_none"]
    counts, samples, genes, info = read_out(out)
    sums = raw_gene_sums(mirror, "SRP014565")
    aml = avg_mapped_length(mirror, "SRP014565")

    assert sums.shape == (20000, 1)  # the mirror is trimmed to 20,000 of GENCODE v26's genes
    assert aml["SRR527082"] == pytest.approx(35.35)
    assert list(counts.columns) == ["SRR527082"] and counts.shape == (20000, 1)
    assert info["samples"] == 1 and info["genes_before"] == 20000 and info["genes_after"] == 20000
    pd.testing.assert_frame_equal(counts, expected_counts(sums, aml), check_names=False)
    # a few genes by hand: the largest coverage sum and a small one
    assert sums.loc["ENSG00000255823.4", "SRR527082"] == 4047165
    assert counts.loc["ENSG00000255823.4", "SRR527082"] == 114488  # 4047165 / 35.35 = 114488.4
    assert sums.loc["ENSG00000228463.9", "SRR527082"] == 790
    assert counts.loc["ENSG00000228463.9", "SRR527082"] == 22  # 790 / 35.35 = 22.35
    assert counts.to_numpy().sum() == 1801887 == info["reads_before"]
    assert "counts" in info and "average_mapped_length" in info["counts"]
    # the gene annotation of the mirror covers only the first 2,000 genes (alt/unplaced contigs)
    assert info["genes_not_in_annotation"] == 18000
    assert list(genes["gene_id"]) == list(counts.index)
    assert genes["gene_name"].notna().sum() == 2000
    first = genes.iloc[0]
    assert (first["gene_id"], first["gene_name"], first["gene_type"]) == (
        "ENSG00000278704.1", "BX004987.1", "protein_coding")  # fmt: skip
    assert first["bp_length"] == 2237 and first["seqname"] == "GL000009.2"
    assert "not in the annotation GTF" in proc.stderr

    # metadata: recount3's read_metadata() merge of the five tables, plus BigWigURL
    assert list(samples.columns[:3]) == KEYS
    assert samples.shape == (1, 175)
    prefixes = Counter(c.split(".")[0] for c in samples.columns[3:] if "." in c)
    assert prefixes == {"sra": 38, "recount_project": 5, "recount_qc": 109, "recount_seq_qc": 12, "recount_pred": 7}
    for col in ["sra.sample_acc.x", "recount_pred.sample_acc.y", "recount_qc.star.average_mapped_length",
                "recount_qc.bc_auc.all_reads_all_bases", "recount_seq_qc.avg_len", "recount_project.file_source",
                "sra.study_title", "BigWigURL"]:  # fmt: skip
        assert col in samples.columns, col
    row = samples.iloc[0]
    assert (row["rail_id"], row["external_id"], row["study"]) == (985131, "SRR527082", "SRP014565")
    assert row["sra.sample_title"] == "Site identification in high-throughput RNA-protein interaction data"
    assert row["BigWigURL"].endswith("/base_sums/65/SRP014565/82/sra.base_sums.SRP014565_SRR527082.ALL.bw")


def test_srp014565_parse(runs):
    out, _ = runs["srp_none"]
    adata = parse_dataset("hek", {"source": "recount3", "project": "SRP014565"}, out)
    assert adata.shape == (1, 20000)
    assert sp.isspmatrix_csr(adata.X) and np.issubdtype(adata.X.dtype, np.integer)
    assert list(adata.obs_names) == ["SRR527082"]
    assert adata.obs.loc["SRR527082", "recount_qc.star.average_mapped_length"] == pytest.approx(35.35)
    # every metadata column is kept; '/' (refused by h5 stores) becomes '_'
    assert adata.obs.shape[1] == 175 + 1  # + the 'dataset' column parse_dataset adds
    assert "recount_qc.star.number_of_splices:_at_ac" in adata.obs.columns
    assert adata.var_names.is_unique
    assert adata.var.loc["BX004987.1", "gene_ids"] == "ENSG00000278704.1"
    # duplicated symbols (HLA region alt haplotypes) are made unique; genes without a symbol keep their Ensembl ID
    assert {"HCG15", "HCG15-1"} <= set(adata.var_names)
    assert "ENSG00000255823.4" in adata.var_names
    col = adata.var_names.get_loc("ENSG00000255823.4")
    assert adata.X[0, col] == 114488
    assert adata.uns["recount3"]["genes_before"] == 20000


def test_srp014565_edger_filter(runs, mirror):
    out, proc = runs["srp_edger"]
    counts, _, genes, info = read_out(out)
    full = expected_counts(raw_gene_sums(mirror, "SRP014565"), avg_mapped_length(mirror, "SRP014565"))
    keep = filter_by_expr(full)
    # one sample: filterByExpr keeps genes with >= 10 reads (CPM cut-off at the median library) and >= 15 in total
    assert keep.sum() == 4442 == (full["SRR527082"] >= 15).sum()
    assert info["filter"] == "edger" and info["genes_before"] == 20000 and info["genes_after"] == 4442
    assert list(counts.index) == list(full.index[keep])
    pd.testing.assert_frame_equal(counts, full[keep], check_names=False)
    assert counts.to_numpy().min() >= 15
    assert list(genes["gene_id"]) == list(counts.index)
    assert info["reads_after"] == counts.to_numpy().sum() < info["reads_before"]
    assert "gene filter edger: 4442 of 20000 genes kept" in proc.stderr
    adata = parse("hek", {"source": "recount3"}, out)
    assert adata.shape == (1, 4442)


def test_drp004088_two_samples_and_filters(runs, mirror):
    sums = raw_gene_sums(mirror, "DRP004088")
    aml = avg_mapped_length(mirror, "DRP004088")
    assert aml.to_dict() == pytest.approx({"DRR057223": 35.34, "DRR057224": 35.35})
    full = expected_counts(sums, aml)

    counts, samples, _, info = read_out(runs["drp_none"][0])
    assert list(counts.columns) == ["DRR057223", "DRR057224"]  # merge() orders samples by rail_id
    assert list(samples["rail_id"]) == [148551, 148552]
    assert counts.shape == (20000, 2) and info["samples"] == 2
    pd.testing.assert_frame_equal(counts, full, check_names=False)
    assert counts.loc["ENSG00000201428.1"].tolist() == [702863, 285869]  # 24839166 / 35.34, 10105460 / 35.35
    assert counts.loc["ENSG00000228463.9"].tolist() == [144, 66]  # 5091 / 35.34, 2333 / 35.35
    # recount_pred is header-only for this project: recount3 drops empty tables with a warning
    assert "sra.recount_pred.DRP004088.MD.gz is empty" in runs["drp_none"][1].stderr
    assert not [c for c in samples.columns if c.startswith("recount_pred.")]
    assert "sra.sample_acc" in samples.columns  # no .x suffix without the recount_pred table
    assert samples.shape == (2, 168)
    assert samples["sra.sample_attributes"].str.contains("EBV-negative Akata").tolist() == [True, False]

    # edgeR without a group: a gene must pass the CPM cut-off in both samples
    counts_e, _, _, info_e = read_out(runs["drp_edger"][0])
    keep = filter_by_expr(full)
    assert info_e["genes_after"] == keep.sum() == 5046
    assert list(counts_e.index) == list(full.index[keep])
    # with a group per sample (EBV- vs EBV+): in one sample is enough, so more genes are kept
    counts_g, _, _, info_g = read_out(runs["drp_edger_group"][0])
    keep_g = filter_by_expr(full, group=["EBV-", "EBV+"])
    assert info_g["genes_after"] == keep_g.sum() == 5545 and info_g["group"] == "sra.sample_attributes"
    assert list(counts_g.index) == list(full.index[keep_g])
    assert set(counts_e.index) < set(counts_g.index)
    # min-samples rule: >= 5 reads in both samples
    counts_m, _, _, info_m = read_out(runs["drp_min"][0])
    keep_m = (full >= 5).sum(axis=1) >= 2
    assert info_m["filter"] == "min_samples" and info_m["min_samples"] == 2 and info_m["min_count"] == 5
    assert info_m["genes_after"] == keep_m.sum() and list(counts_m.index) == list(full.index[keep_m])
    assert (counts_m.to_numpy() >= 5).all()

    adata = parse_dataset("ebv", {"source": "recount3"}, runs["drp_edger_group"][0])
    assert adata.shape == (2, 5545)
    assert list(adata.obs_names) == ["DRR057223", "DRR057224"]
    np.testing.assert_array_equal(adata.X.toarray(), full[keep_g].to_numpy().T)


# ------------------------------------------------------------------- recount3's own test files (ERCC)


@pytest.fixture(scope="module")
def ercc_mirror(shared_data, tmp_path_factory) -> Path:
    """A mirror built from recount3's inst/test_files for DRP002835 (BiocFileCache names: <hash>_<file>)."""
    src = shared_data / "recount3" / "ercc_fixtures"
    if not src.is_dir():
        pytest.skip(f"{src} is absent")
    root = tmp_path_factory.mktemp("ercc_mirror")
    for f in src.iterdir():
        name = f.name.split("_", 1)[1]
        if name.endswith(".MD.gz"):
            dest = root / "human/data_sources/sra/metadata/35/DRP002835"
        elif name.startswith("sra.gene_sums."):
            dest = root / "human/data_sources/sra/gene_sums/35/DRP002835"
        elif name.startswith("human.gene_sums."):
            dest = root / "human/annotations/gene_sums"
        else:
            continue  # exon sums
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copy(f, dest / name)
    return root


def test_ercc_fixtures_match_recount3_tests(rscript, ercc_mirror, tmp_path):
    url = ercc_mirror.as_uri()
    out = tmp_path / "auc"
    run_ok(rscript, url, "DRP002835", out, "--annotation", "ercc", "--filter", "none", "--scaled", "auc")
    counts, samples, genes, info = read_out(out)
    # recount3 tests: read_counts() gives 92 x 2, read_metadata() 2 rows x 174 columns (+ BigWigURL here)
    assert counts.shape == (92, 2) and info["annotation"] == "ERCC"
    assert samples.shape == (2, 174 + 1)
    with gzip.open(ercc_mirror / "human/data_sources/sra/gene_sums/35/DRP002835/sra.gene_sums.DRP002835.ERCC.gz",
                   "rt") as fh:  # fmt: skip
        sums = pd.read_csv(fh, sep="\t", index_col=0, comment="#")
    aml = samples.set_index("external_id")["recount_qc.star.average_mapped_length"]
    pd.testing.assert_frame_equal(counts, expected_counts(sums, aml), check_names=False)
    assert genes["gene_id"].str.startswith("ERCC-").all()
    # recount3 test-transform_counts.R: colSums(transform_counts(rse)) == c(1, 3) (by = "auc")
    scaled = pd.read_csv(out / "scaled_counts_auc.tsv.gz", sep="\t", index_col=0)
    assert scaled.sum().tolist() == [1, 3]
    out2 = tmp_path / "mapped"
    run_ok(rscript, url, "DRP002835", out2, "--annotation", "ERCC", "--filter", "none", "--scaled", "mapped_reads")
    scaled = pd.read_csv(out2 / "scaled_counts_mapped_reads.tsv.gz", sep="\t", index_col=0)
    assert scaled.sum().tolist() == [3, 9]  # ... and c(3, 9) by = "mapped_reads"
    adata = parse_dataset("ercc", {"source": "recount3"}, out)
    assert adata.shape == (2, 92) and adata.var_names[0] == "ERCC-00002"


# ----------------------------------------------------------------------------- http mirror, Snakemake


def test_http_mirror_gives_the_same_counts(rscript, mirror, runs, tmp_path):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(mirror))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        out = tmp_path / "http"
        run_ok(rscript, url, "SRP014565", out, "--filter", "none")
        missing = run_r(rscript, url, "SRP000000", tmp_path / "missing")
    finally:
        server.shutdown()
        thread.join()
    pd.testing.assert_frame_equal(read_out(out)[0], read_out(runs["srp_none"][0])[0])
    assert_one_error(missing, "SRP000000", "404", "/metadata/00/SRP000000/sra.sra.SRP000000.MD.gz")
    assert_no_output(tmp_path / "missing")


def test_snakemake_script_mode(rscript, mirror, tmp_path):
    pytest.importorskip("snakemake")
    (tmp_path / "Snakefile").write_text(
        f"""
rule recount3:
    output: directory("resources/raw/{{dataset}}")
    log: "logs/recount3/{{dataset}}.log"
    params:
        mirror="{mirror.as_uri()}",
        project="DRP004088",
        organism="human",
        source="sra",
        annotation="G026",
        filter="min_samples",
        min_samples=2,
        min_count=5,
        group=None,
    script: "{SCRIPT}"
"""
    )
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "1", "resources/raw/ebv"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    info = json.loads((tmp_path / "resources/raw/ebv/filter.json").read_text())
    assert info["filter"] == "min_samples" and info["samples"] == 2 and info["genes_before"] == 20000
    log = (tmp_path / "logs/recount3/ebv.log").read_text()
    assert "gene filter min_samples" in log


# ---------------------------------------------------------------------------------------- bad input


def copy_project(mirror: Path, project: str, dest: Path) -> Path:
    for kind in ("metadata", "gene_sums"):
        shutil.copytree(project_dir(mirror, kind, project), project_dir(dest, kind, project))
    ann = dest / "human/annotations/gene_sums"
    ann.mkdir(parents=True)
    shutil.copy(mirror / "human/annotations/gene_sums/human.gene_sums.G026.gtf.gz", ann)
    for f in dest.rglob("*"):
        f.chmod(0o755 if f.is_dir() else 0o644)
    return dest


def test_project_not_on_mirror(rscript, mirror, tmp_path):
    out = tmp_path / "out"
    proc = run_r(rscript, mirror.as_uri(), "SRP999999", out)
    assert_one_error(
        proc, "SRP999999", "not found on the mirror", mirror.as_uri() + "/human/data_sources/sra/metadata/99/SRP999999"
    )
    assert_no_output(out)


def test_truncated_gene_sums(rscript, mirror, tmp_path):
    bad = copy_project(mirror, "DRP004088", tmp_path / "mirror")
    path = project_dir(bad, "gene_sums", "DRP004088") / "sra.gene_sums.DRP004088.G026.gz"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # R's gzfile() would read the first half silently
    out = tmp_path / "out"
    proc = run_r(rscript, bad.as_uri(), "DRP004088", out)
    assert_one_error(proc, "DRP004088", "truncated", path.as_uri())
    assert_no_output(out)


def test_malformed_gene_sums_and_bad_group(rscript, mirror, tmp_path):
    bad = copy_project(mirror, "SRP014565", tmp_path / "mirror")
    path = project_dir(bad, "gene_sums", "SRP014565") / "sra.gene_sums.SRP014565.G026.gz"
    with gzip.open(path, "rt") as fh:
        lines = fh.readlines()
    lines[10] = lines[10].split("\t")[0] + "\tabc\n"
    with gzip.open(path, "wt") as fh:
        fh.writelines(lines)
    out = tmp_path / "out"
    proc = run_r(rscript, bad.as_uri(), "SRP014565", out)
    assert_one_error(proc, "SRP014565", "malformed gene sums file", "abc", path.as_uri())
    assert_no_output(out)

    proc = run_r(rscript, mirror.as_uri(), "SRP014565", out, "--group", "tissue")
    assert_one_error(proc, "SRP014565", "group column 'tissue' is not in the sample metadata", "curated.tissue")
    assert_no_output(out)


def test_parse_rejects_bad_folders(runs, tmp_path):
    src = runs["drp_min"][0]
    with pytest.raises(ScmixInputError, match="lacks"):
        parse("ebv", {"source": "recount3"}, tmp_path)
    with pytest.raises(ScmixInputError, match="config asks for 'SRP014565'"):
        parse("ebv", {"source": "recount3", "project": "SRP014565"}, src)

    bad = tmp_path / "bad"
    shutil.copytree(src, bad)
    counts = pd.read_csv(src / "counts.tsv.gz", sep="\t", index_col=0).astype(float)
    counts.iloc[0, 0] = 1.5
    counts.to_csv(bad / "counts.tsv.gz", sep="\t")
    with pytest.raises(ScmixInputError, match="integers"):
        parse("ebv", {"source": "recount3"}, bad)
    counts.iloc[0, 0] = 1
    counts[["DRR057224", "DRR057223"]].to_csv(bad / "counts.tsv.gz", sep="\t")
    with pytest.raises(ScmixInputError, match="do not match samples.tsv"):
        parse("ebv", {"source": "recount3"}, bad)
    (bad / "counts.tsv.gz").write_bytes((src / "counts.tsv.gz").read_bytes()[:200])
    with pytest.raises(ScmixInputError, match="cannot read table") as err:
        parse("ebv", {"source": "recount3"}, bad)
    assert "dataset 'ebv'" in str(err.value) and "counts.tsv.gz" in str(err.value)
