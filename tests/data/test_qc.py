import subprocess
import sys
import textwrap
from pathlib import Path

import anndata as ad
import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from scmix.data.qc import QC_DEFAULTS, library_sizes, plot_thresholds, run_qc, samples_with_min_count
from scmix.errors import ScmixInputError
from scmix.io import as_csr_counts
from scmix.plots.data import qc_scatter
from scmix.settings import resolve_qc


def test_qc_removes_low_quality_cells_and_reports_each_step(blood):
    params = resolve_qc({"min_genes": 100, "min_counts": 300, "max_pct_mito": 20, "min_cells": 3})
    out, report = run_qc(blood.copy(), params)
    assert list(report["step"]) == ["input", "drop_features", "min_genes", "min_counts", "max_pct_mito",
                                    "max_pct_spikein", "min_cells"]  # fmt: skip
    # the steps add up: cells left = input - removed, and match the output
    assert report["cells_left"].iloc[-1] == out.n_obs == blood.n_obs - report["cells_removed"].sum()
    assert report["genes_left"].iloc[-1] == out.n_vars == blood.n_vars - report["genes_removed"].sum()
    assert out.obs["pct_counts_mt"].max() <= 20 and out.obs["n_genes_by_counts"].min() >= 100
    before = blood.obs["simulated_quality"].value_counts()
    kept = out.obs["simulated_quality"].value_counts()
    for bad in ("high_mito", "empty_like"):
        assert before[bad] >= 5 and kept.get(bad, 0) <= 0.1 * before[bad]
    assert kept["ok"] >= 0.97 * before["ok"]
    assert (np.asarray((out.X > 0).sum(0)).ravel() >= 3).all()
    # raw counts stay raw
    assert out.X.dtype == np.int32


def test_dataset_override_wins_and_unresolved_settings_are_refused(blood):
    assert resolve_qc({"min_genes": 200}, {"min_genes": 50})["min_genes"] == 50
    assert resolve_qc({"min_genes": 200})["min_cells"] == QC_DEFAULTS["min_cells"]
    # the package merges no defaults: a caller that skipped resolve_qc is told so
    with pytest.raises(ValueError, match="qc settings are not resolved .*min_counts"):
        run_qc(blood.copy(), {"min_genes": 100})
    with pytest.raises(ValueError, match="not resolved"):
        plot_thresholds({"mode": "bulk"})


def test_seurat_tutorial_qc_keeps_all_pbmc3k_cells(pbmc3k):
    # The shared PBMC 3k holds the 2,638 cells that passed the Seurat tutorial QC (200 genes, <5 % mito).
    out, report = run_qc(pbmc3k.copy(), resolve_qc({"min_genes": 200, "max_pct_mito": 5, "min_cells": 3}))
    assert out.n_obs == 2638
    assert report.loc[report["step"] == "max_pct_mito", "cells_removed"].item() == 0
    # stricter datamix-style filter removes cells (> 1,000 counts)
    strict, _ = run_qc(pbmc3k.copy(), resolve_qc({"min_genes": 200, "min_counts": 1001, "max_pct_mito": 10}))
    assert 0 < strict.n_obs < 2638


# ---------------------------------------------------------------------------------------------------------------
# QC plot, the bulk path, and other studies' filters expressed as QC params
# ---------------------------------------------------------------------------------------------------------------

REPO = Path(__file__).resolve().parents[2]


def assert_png_drawn(path, shape=(600, 1440)):
    img = mpimg.imread(path)
    assert img.shape[:2] == shape
    rgb = img[..., :3]
    assert rgb.std() > 0.05  # not a blank canvas
    assert (rgb.min(axis=2) < 0.9).mean() > 0.02  # a fair share of non-white pixels (points, axes, text)
    return img


def assert_table_adds_up(report, before, after):
    assert list(report.columns) == ["step", "threshold", "cells_removed", "genes_removed", "cells_left", "genes_left"]
    assert report["cells_left"].iloc[-1] == after.n_obs == before.n_obs - report["cells_removed"].sum()
    assert report["genes_left"].iloc[-1] == after.n_vars == before.n_vars - report["genes_removed"].sum()
    left = report["cells_left"].to_numpy()
    assert (left[1:] == left[:-1] - report["cells_removed"].to_numpy()[1:]).all()


def test_qc_plot_shows_before_and_after_with_fewer_points_after(blood, tmp_path):
    adata = blood.copy()
    params = resolve_qc({"min_genes": 100, "min_counts": 300, "max_counts": 20000, "max_pct_mito": 20})
    out, _ = run_qc(adata, params)
    spec = plot_thresholds(params)
    assert [t[0] for t in spec["thresholds"]] == ["y", "x", "x", "colour"]
    drawn = qc_scatter(adata.obs, out.obs, tmp_path / "blood.qc.png", dataset="blood", **spec)
    assert drawn == {"before": blood.n_obs, "after": out.n_obs} and drawn["after"] < drawn["before"]
    assert_png_drawn(tmp_path / "blood.qc.png")
    # above max_points a fixed random subset is drawn
    drawn = qc_scatter(adata.obs, out.obs, tmp_path / "sub.png", dataset="blood", max_points=100, **spec)
    assert drawn == {"before": 100, "after": 100}


def run_rule_script(script: str, workdir, **smk) -> subprocess.CompletedProcess:
    """A rule script run as Snakemake runs it: ``snakemake`` a namespace of Namedlists, in ``workdir``."""
    driver = textwrap.dedent(
        f"""
        import runpy
        from types import SimpleNamespace as NS
        from snakemake.iocontainers import Namedlist
        parts = {smk!r}
        smk = NS(**{{k: Namedlist(fromdict=v) if isinstance(v, dict) and k != "config" else v
                     for k, v in parts.items()}})
        smk.wildcards = NS(**parts["wildcards"])
        runpy.run_path({str(REPO / "scripts" / script)!r}, init_globals={{"snakemake": smk}})
        """
    )
    return subprocess.run([sys.executable, "-c", driver], cwd=workdir, capture_output=True, text=True)


# the least config a QC job reads: no model, so no label is required
NO_MODELS = {
    "datasets": {"blood": {}},
    "mixes": {},
    "models": {},
    "evaluation": {"synthetic": {"label_key": "cell_type"}},
}


def test_qc_rule_scripts_keep_raw_counts_and_draw_the_plot(blood, tmp_path):
    raw = blood.copy()
    raw.write_h5ad(tmp_path / "raw.h5ad")
    outputs = {"h5ad": "results/qc/blood.h5ad", "report": "results/qc/blood.qc.tsv",
               "metrics": "results/qc/blood.metrics.tsv"}  # fmt: skip
    # the rule's params are resolved settings (rules/common.smk), the defaults under the config's keys
    qc = resolve_qc({"min_genes": 100, "min_counts": 300})
    common = {"wildcards": {"dataset": "blood"}, "log": [], "params": {"qc": qc}, "config": NO_MODELS}
    res = run_rule_script("qc.py", tmp_path, input={"h5ad": "raw.h5ad"}, output=outputs, rule="qc", **common)
    assert res.returncode == 0, res.stderr[-3000:]
    out = ad.read_h5ad(tmp_path / outputs["h5ad"])
    report = pd.read_csv(tmp_path / outputs["report"], sep="\t")
    assert list(report["step"]) == ["input", "drop_features", "min_genes", "min_counts", "max_pct_mito",
                                    "max_pct_spikein", "min_cells"]  # fmt: skip
    assert_table_adds_up(report.drop(columns="dataset"), raw, out)
    assert out.uns["qc"]["max_pct_mito"] == QC_DEFAULTS["max_pct_mito"]  # missing keys took the defaults
    # X holds the same raw integer counts; the metrics sit in obs/var
    expected = raw[out.obs_names, out.var_names].X
    assert out.X.dtype == raw.X.dtype and (out.X != expected).nnz == 0
    assert {"total_counts", "n_genes_by_counts", "pct_counts_mt"} <= set(out.obs) and "mt" in out.var
    # the per-cell metrics of every input cell, the kept ones marked, for rule plot_qc
    metrics = pd.read_csv(tmp_path / outputs["metrics"], sep="\t", index_col=0)
    assert list(metrics.index) == list(raw.obs_names) and metrics["kept"].sum() == out.n_obs
    assert set(metrics.index[metrics["kept"]]) == set(out.obs_names)

    png = "results/qc/blood.qc.png"
    res = run_rule_script("plot_qc.py", tmp_path, input={"metrics": outputs["metrics"], "report": outputs["report"]},
                          output={"png": png}, rule="plot_qc", **common)  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    assert_png_drawn(tmp_path / png)
    assert f"{raw.n_obs} points before, {out.n_obs} after" in res.stderr


def test_bulk_counting_is_exact_on_every_matrix_layout():
    rng = np.random.default_rng(1)
    dense = (rng.poisson(6, (9, 40)) * (rng.random((9, 40)) < 0.5)).astype(np.float32)
    # row 0 sums to 2**24 + 3, which float32 cannot hold: the library size must not be summed in float32
    dense[0, :] = 0
    dense[0, 0] = 2.0**24
    dense[0, 1] = 3.0
    expected_samples = ((dense >= 5).sum(axis=0)).astype(np.int64)
    expected_lib = dense.astype(np.float64).sum(axis=1).astype(np.int64)
    for X in (dense, sp.csr_matrix(dense), sp.csc_matrix(dense), sp.coo_matrix(dense), as_csr_counts(dense)):
        assert (samples_with_min_count(X, 5) == expected_samples).all()
        lib = library_sizes(X)
        assert lib.dtype == np.int64 and (lib == expected_lib).all()
    assert library_sizes(dense)[0] == 2**24 + 3
    assert (samples_with_min_count(sp.csr_matrix(dense), 0) == 9).all()
    # duplicate entries (non-canonical CSR) are summed before comparing, without touching the input
    dup = sp.csr_matrix((np.array([3, 3], dtype=np.int32), np.array([1, 1]), np.array([0, 2, 2])), shape=(2, 3))
    assert list(samples_with_min_count(dup, 5)) == [0, 1, 0] and dup.nnz == 2


def test_bulk_mode_without_real_data_ignores_cell_filters():
    rng = np.random.default_rng(2)
    counts = sp.csr_matrix(rng.poisson(8, (6, 300)) * (rng.random((6, 300)) < 0.3))
    adata = ad.AnnData(counts.astype(np.int32))
    adata.var_names = [f"MT-{i}" if i < 30 else f"g{i}" for i in range(300)]  # 10 % "mito": a cell filter at 5 % ...
    out, report = run_qc(
        adata, resolve_qc({"max_pct_mito": 5, "min_genes": 10_000}, {"mode": "bulk", "min_samples": 2})
    )
    assert out.n_obs == 6  # ... which bulk mode does not apply
    assert list(report["step"]) == ["input", "drop_features", "min_samples"]
    assert out.var_names.equals(adata.var_names[(counts.toarray() >= 10).sum(0) >= 2])
    with pytest.raises(ValueError, match="min_samples=7 is more than the 6 samples"):
        run_qc(adata.copy(), resolve_qc({"mode": "bulk", "min_samples": 7}))
    with pytest.raises(ValueError, match="qc.mode"):
        run_qc(adata.copy(), resolve_qc({"mode": "bulkk"}))


@pytest.fixture(scope="module")
def airway(shared_data):
    return ad.read_h5ad(shared_data / "bulk" / "airway" / "airway.h5ad")


def test_bulk_qc_on_real_airway(airway, tmp_path):
    X = np.asarray(airway.X, dtype=np.float64)  # 8 samples x 64,102 genes, float32 holding integers
    assert airway.shape == (8, 64102) and (X == np.round(X)).all()
    column_sums = X.T.sum(axis=0)  # genes x samples, as bulk tables are written: per-sample column sums
    params = resolve_qc({"min_genes": 200, "max_pct_mito": 10, "min_counts": 1001}, {"mode": "bulk"})
    before = airway.copy()
    out, report = run_qc(before, params)
    # library sizes are recorded before filtering, exactly (scanpy's float32 total_counts is off by a few)
    assert before.obs["library_size"].dtype == np.int64
    assert (before.obs["library_size"].to_numpy() == column_sums).all()
    assert (out.obs["library_size"].to_numpy() == column_sums).all()
    assert column_sums.min() == 15163415 and column_sums.max() == 30818215
    # no sample dropped by default; the gene rule is >= 10 counts in >= 1 sample, exactly
    assert out.n_obs == 8 and list(report["step"]) == ["input", "drop_features", "min_samples"]
    keep = (X >= 10).sum(axis=0) >= 1
    assert out.var_names.equals(airway.var_names[keep]) and out.n_vars == 18086
    assert (out.var["n_samples_min_count"].to_numpy() == (X[:, keep] >= 10).sum(axis=0)).all()
    assert_table_adds_up(report, airway, out)
    assert np.array_equal(out.X, airway.X[:, keep])  # raw counts untouched
    # the smallest group (dex: 4 treated, 4 untreated), on the parsed layout (CSR int32) as the workflow has it
    csr = airway.copy()
    csr.X = as_csr_counts(csr.X)
    out4, report4 = run_qc(csr, resolve_qc({"mode": "bulk", "min_count": 10, "min_samples": 4}))
    keep4 = (X >= 10).sum(axis=0) >= 4
    assert out4.var_names.equals(airway.var_names[keep4]) and out4.n_vars == int(keep4.sum()) == 16139
    assert report4["genes_removed"].iloc[-1] == 64102 - 16139
    # a library-size floor removes samples first; the gene rule then counts only the samples left
    out_lib, report_lib = run_qc(airway.copy(), resolve_qc({"mode": "bulk", "min_library_size": 19_000_000}))
    small = column_sums < 19_000_000
    assert report_lib.loc[report_lib["step"] == "min_library_size", "cells_removed"].item() == small.sum() == 2
    assert out_lib.obs_names.equals(airway.obs_names[~small])
    assert out_lib.var_names.equals(airway.var_names[(X[~small] >= 10).sum(axis=0) >= 1])
    assert_table_adds_up(report_lib, airway, out_lib)
    drawn = qc_scatter(before.obs, out_lib.obs, tmp_path / "airway.png", dataset="airway", **plot_thresholds(
        resolve_qc({"mode": "bulk", "min_library_size": 19_000_000})))  # fmt: skip
    assert drawn == {"before": 8, "after": 6}
    assert_png_drawn(tmp_path / "airway.png")


@pytest.fixture(scope="module")
def seurat_metrics(shared_data):
    """Seurat's own per-cell metrics for PBMC 3k (nCount_RNA, nFeature_RNA, percent.mt), read with pandas."""
    return pd.read_csv(shared_data / "pbmc3k" / "cell_types.csv", index_col=0)


def test_datamix_filter_on_real_pbmc3k(pbmc3k, seurat_metrics):
    # datamix: mitochondrial fraction < 0.1 and total counts > 1,000; no gene-count or gene filter
    m = seurat_metrics.loc[pbmc3k.obs_names]
    assert not np.isclose(m["percent.mt"], 10).any()  # nobody on the boundary, where <= 10 and < 10 differ
    out, report = run_qc(pbmc3k.copy(), resolve_qc({"min_genes": 0, "min_cells": 0, "min_counts": 1001,
                                                   "max_pct_mito": 10}))  # fmt: skip
    removed = report.set_index("step")["cells_removed"]
    low_counts = m["nCount_RNA"] <= 1000
    assert removed["min_counts"] == low_counts.sum() == 127
    assert removed["max_pct_mito"] == (~low_counts & (m["percent.mt"] >= 10)).sum() == 0
    assert out.obs_names.equals(m.index[(m["nCount_RNA"] > 1000) & (m["percent.mt"] < 10)])
    assert out.n_obs == 2638 - 127 and out.n_vars == pbmc3k.n_vars
    assert (out.obs["total_counts"].to_numpy() == m.loc[out.obs_names, "nCount_RNA"].to_numpy()).all()


def test_genailab_filter_on_real_pbmc3k(pbmc3k, seurat_metrics):
    # genailab: min 200 genes per cell, genes in >= 3 cells, mitochondrial fraction < 20 %
    m = seurat_metrics.loc[pbmc3k.obs_names]
    assert not np.isclose(m["percent.mt"], 20).any()
    out, report = run_qc(pbmc3k.copy(), resolve_qc({"min_genes": 200, "min_cells": 3, "max_pct_mito": 20}))
    removed = report.set_index("step")
    few_genes = m["nFeature_RNA"] < 200
    assert removed.loc["min_genes", "cells_removed"] == few_genes.sum() == 0
    assert removed.loc["max_pct_mito", "cells_removed"] == (~few_genes & (m["percent.mt"] >= 20)).sum() == 0
    kept = m.index[~few_genes & (m["percent.mt"] < 20)]
    genes_in_3 = np.asarray((pbmc3k[kept].X > 0).sum(axis=0)).ravel() >= 3
    assert removed.loc["min_cells", "genes_removed"] == (~genes_in_3).sum() == 58
    assert out.shape == (2638, 13714 - 58)
    assert (out.obs["n_genes_by_counts"].to_numpy() == m["nFeature_RNA"].to_numpy()).all()


def test_gene_detection_over_kept_rows_matches_numpy_on_every_layout():
    import scipy.sparse as sp

    from scmix.data.qc import samples_with_min_count

    rng = np.random.default_rng(0)
    dense = rng.poisson(0.3, (300, 40)) * (rng.random((300, 40)) < 0.5)
    rows = rng.random(300) < 0.6
    for min_count in (np.finfo(float).tiny, 1, 2):
        expected = (dense[rows] >= min_count).sum(axis=0)
        for X in (sp.csr_matrix(dense), sp.csc_matrix(dense), dense):
            np.testing.assert_array_equal(samples_with_min_count(X, min_count, rows=rows), expected)


# ------------------------------------------------------------- spike-ins and other non-gene features (real data)
def ercc_ids(shared_data) -> list[str]:
    """The 92 ERCC spike-in IDs, from recount3's real ERCC annotation."""
    import gzip

    gtf = next((shared_data / "recount3" / "ercc_fixtures").glob("*human.gene_sums.ERCC.gtf.gz"))
    with gzip.open(gtf, "rt") as fh:
        ids = {line.split('gene_id "')[1].split('"')[0] for line in fh if 'gene_id "' in line}
    return sorted(ids)


def with_spike_ins(pbmc3k, ids, share=0.6, seed=0):
    """PBMC 3k with ERCC rows: in every other cell the spike-ins hold ``share`` of its counts."""
    import anndata as ad

    rng = np.random.default_rng(seed)
    genes = np.asarray(pbmc3k.X.sum(axis=1)).ravel()
    target = np.where(np.arange(pbmc3k.n_obs) % 2 == 0, genes * share / (1 - share), 0).round().astype(int)
    spikes = np.stack([rng.multinomial(t, np.full(len(ids), 1 / len(ids))) for t in target])
    X = sp.hstack([pbmc3k.X, sp.csr_matrix(spikes.astype(pbmc3k.X.dtype))]).tocsr()
    var = pd.DataFrame({"gene_ids": list(pbmc3k.var["gene_ids"]) + ids}, index=list(pbmc3k.var_names) + ids)
    return ad.AnnData(X, obs=pbmc3k.obs.copy(), var=var), genes


def test_spike_ins_are_removed_before_library_sizes_and_reported(pbmc3k, shared_data, caplog):
    ids = ercc_ids(shared_data)
    assert len(ids) == 92 and ids[0].startswith("ERCC-")
    adata, gene_totals = with_spike_ins(pbmc3k, ids)
    with caplog.at_level("INFO", logger="scmix.data.qc"):
        out, report = run_qc(adata, resolve_qc({"min_genes": 0, "min_counts": 0, "max_pct_mito": None,
                                               "max_pct_spikein": None, "min_cells": 0}), dataset="spiked")  # fmt: skip
    # library sizes are the genes' counts alone
    np.testing.assert_array_equal(adata.obs["total_counts"].to_numpy(), gene_totals)
    assert not out.var_names.str.startswith("ERCC-").any() and out.n_vars == pbmc3k.n_vars
    row = report.set_index("step").loc["drop_features"]
    assert row["genes_removed"] == 92 and row["threshold"] == "^ERCC-"
    pct = adata.obs["pct_counts_dropped"].to_numpy()
    assert np.median(pct[::2]) == pytest.approx(60, abs=0.5) and (pct[1::2] == 0).all()
    assert "qc.drop_features ['^ERCC-'] removed 92 features (e.g. ERCC-00002" in caplog.text
    # the threshold applies to the genes' counts: spike-ins no longer carry a cell over min_counts
    low = gene_totals < 1500
    kept, _ = run_qc(with_spike_ins(pbmc3k, ids)[0], resolve_qc({"min_genes": 0, "min_counts": 1500,
                                                                "max_pct_mito": None, "max_pct_spikein": None,
                                                                "min_cells": 0}))  # fmt: skip
    assert kept.n_obs == int((~low).sum())
    # drop_features: [] keeps them as genes (and in library size)
    no_drop = resolve_qc({"drop_features": [], "min_genes": 0, "max_pct_mito": None, "min_cells": 0})
    asis, report = run_qc(with_spike_ins(pbmc3k, ids)[0], no_drop)
    assert asis.var_names.str.startswith("ERCC-").sum() == 92 and "drop_features" not in set(report["step"])


def test_cells_mostly_of_spike_ins_are_removed_by_max_pct_spikein(pbmc3k, shared_data):
    """A cell whose counts are 90.9 % ERCC spike-ins holds little mRNA of its own: QC removes it by default."""
    ids = ercc_ids(shared_data)
    adata, _ = with_spike_ins(pbmc3k, ids, share=0.909)
    adata.obs_names_make_unique()
    loose = {"min_genes": 0, "min_counts": 0, "max_pct_mito": None, "min_cells": 0}
    out, report = run_qc(adata, resolve_qc(loose), dataset="spiked")
    pct = adata.obs["pct_counts_dropped"].to_numpy()
    spiked = pct > 50
    assert spiked.sum() == (pbmc3k.n_obs + 1) // 2 and np.median(pct[spiked]) == pytest.approx(90.9, abs=0.5)
    assert resolve_qc({})["max_pct_spikein"] == 50.0
    row = report.set_index("step").loc["max_pct_spikein"]
    assert row["cells_removed"] == spiked.sum() and row["threshold"] == 50.0
    assert list(out.obs_names) == list(adata.obs_names[~spiked]) and out.uns["qc"]["max_pct_spikein"] == 50.0
    # the threshold is the user's: 95 % keeps them, null turns the filter off
    assert run_qc(adata.copy(), resolve_qc({**loose, "max_pct_spikein": 95}))[0].n_obs == pbmc3k.n_obs
    off, report = run_qc(adata.copy(), resolve_qc({**loose, "max_pct_spikein": None}))
    assert off.n_obs == pbmc3k.n_obs and "max_pct_spikein" not in set(report["step"])


def test_real_human_ercc_genes_are_not_spike_ins(shared_data):
    """ERCC3, ERCC6L2 and ERCC8 are human DNA-repair genes: the default pattern leaves them alone."""
    import gzip

    import anndata as ad

    with gzip.open(shared_data / "tenx/GSM6544281_raw_feature_bc_matrix/features.tsv.gz", "rt") as fh:
        rows = [line.rstrip("\n").split("\t") for line in fh]
    var = pd.DataFrame({"gene_ids": [r[0] for r in rows]}, index=pd.Index([r[1] for r in rows]).astype(str))
    var = var[~var.index.duplicated()]
    adata = ad.AnnData(sp.csr_matrix((1, len(var))), var=var)
    from scmix.data.qc import matching_features

    assert {"ERCC3", "ERCC8", "ERCC6L2"} <= set(adata.var_names[adata.var_names.str.startswith("ERCC")])
    assert not matching_features(adata, QC_DEFAULTS["drop_features"]).any()


def test_a_mito_prefix_matching_no_gene_warns_with_the_names_and_a_hint(pbmc3k, caplog):
    with caplog.at_level("WARNING", logger="scmix.data.qc"):
        run_qc(pbmc3k.copy(), resolve_qc({"mito_prefix": "mt-"}), dataset="pbmc3k")
    assert "dataset 'pbmc3k': qc.mito_prefix 'mt-' matches no gene (genes: AL627309.1, AP006222.2" in caplog.text
    assert "set qc.mito_prefix: 'MT-'" in caplog.text


def test_a_gene_list_naming_a_gene_qc_removed_says_so(pbmc3k):
    from scmix.data.genes import shared_keys

    out, _ = run_qc(pbmc3k.copy(), resolve_qc({"min_cells": 50}), dataset="pbmc3k")
    removed = out.uns["qc_removed_genes"]
    gone = removed.loc[removed["step"] == "min_cells", "gene"].iloc[0]
    assert gone in pbmc3k.var_names and gone not in out.var_names
    with pytest.raises(ScmixInputError, match=rf"dataset 'pbmc3k': 1 genes of the gene list are not in the dataset "
                       rf".*1 of them were removed by QC \(1 by qc.min_cells; e.g. {gone}\)"):  # fmt: skip
        shared_keys({"pbmc3k": out}, "symbols", [out.var_names[0], gone])
    with pytest.raises(ScmixInputError, match="QC removed none of them"):
        shared_keys({"pbmc3k": out}, "symbols", [out.var_names[0], "NOT_A_GENE"])
