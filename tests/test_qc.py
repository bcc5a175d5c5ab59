import numpy as np

from scmix.qc import qc_params, run_qc


def test_qc_removes_low_quality_cells_and_reports_each_step(blood):
    params = qc_params({"min_genes": 100, "min_counts": 300, "max_pct_mito": 20, "min_cells": 3})
    out, report = run_qc(blood.copy(), params)
    assert list(report["step"]) == ["input", "min_genes", "min_counts", "max_pct_mito", "min_cells"]
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


def test_dataset_override_wins():
    assert qc_params({"min_genes": 200}, {"min_genes": 50})["min_genes"] == 50


def test_seurat_tutorial_qc_keeps_all_pbmc3k_cells(pbmc3k):
    # The shared PBMC 3k holds the 2,638 cells that passed the Seurat tutorial QC (200 genes, <5 % mito).
    out, report = run_qc(pbmc3k.copy(), qc_params({"min_genes": 200, "max_pct_mito": 5, "min_cells": 3}))
    assert out.n_obs == 2638
    assert report.loc[report["step"] == "max_pct_mito", "cells_removed"].item() == 0
    # stricter datamix-style filter removes cells (> 1,000 counts)
    strict, _ = run_qc(pbmc3k.copy(), qc_params({"min_genes": 200, "min_counts": 1001, "max_pct_mito": 10}))
    assert 0 < strict.n_obs < 2638
