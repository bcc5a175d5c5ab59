"""End to end: Snakemake runs the whole DAG on a tiny simulated config in a temporary directory."""

import re
import subprocess
import sys
from pathlib import Path

import anndata as ad
import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "tests" / "configs" / "tiny.yaml"


def snakemake(workdir, *args, config=TINY):
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(workdir),
           "--configfile", str(config), *args]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True)


def job_counts(dry_run_output: str) -> dict[str, int]:
    table = dry_run_output.split("Job stats:")[1]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, flags=re.M)}


def test_dry_run_lists_every_stage_and_scales_with_seeds(tmp_path):
    res = snakemake(tmp_path, "-n")
    assert res.returncode == 0, res.stderr
    jobs = job_counts(res.stdout)
    # 2 datasets, 2 mixes, 2 seeds, 1 model, 2 eval sets
    assert jobs["download"] == jobs["parse"] == jobs["qc"] == jobs["split"] == 2
    assert jobs["mix"] == 4 and jobs["train"] == 4 and jobs["evaluate"] == 8
    cfg = yaml.safe_load(TINY.read_text())
    cfg["seeds"] = [0, 1, 2, 3, 4]
    (tmp_path / "five.yaml").write_text(yaml.safe_dump(cfg))
    jobs5 = job_counts(snakemake(tmp_path, "-n", config=tmp_path / "five.yaml").stdout)
    assert jobs5["mix"] == 10 and jobs5["train"] == 10 and jobs5["evaluate"] == 20 and jobs5["qc"] == 2


@pytest.mark.e2e
def test_workflow_runs_end_to_end_and_summary_is_right(tmp_path):
    res = snakemake(tmp_path, "--cores", "2")
    assert res.returncode == 0, res.stderr[-5000:]
    summary = pd.read_csv(tmp_path / "results/summary/reconstruction_accuracy.tsv", sep="\t")
    assert list(summary.columns[:9]) == ["model", "mix", "seed", "eval_set", "cell_type", "n_cells", "pearson_mean",
                                         "pearson_median", "r2_mean"]  # fmt: skip

    # one row per model x mix x seed x eval set x (cell types of the eval set + "all")
    expected = set()
    for eval_set in ("blood", "tumour"):
        held = ad.read_h5ad(tmp_path / f"results/split/{eval_set}/eval.h5ad")
        types = set(held.obs["cell_type"].astype(str)) | {"all"}
        for mix in ("blood_only", "blood+tumour"):
            for seed in (0, 1):
                expected |= {("ldvae", mix, seed, eval_set, t) for t in types}
                row = summary.query("mix == @mix and seed == @seed and eval_set == @eval_set and cell_type == 'all'")
                assert row["n_cells"].item() == held.n_obs
    got = set(summary[["model", "mix", "seed", "eval_set", "cell_type"]].itertuples(index=False, name=None))
    assert got == expected and len(summary) == len(expected)
    assert summary["pearson_mean"].between(0.4, 1.0).all()
    assert np.allclose(summary["r2_mean"] <= summary["pearson_mean"].abs() + 1e-9, True)

    # a model that never saw malignant cells reconstructs them worse than its own kind of cells
    overall = summary[summary["cell_type"] == "all"].groupby(["mix", "eval_set"])["pearson_mean"].mean()
    assert overall["blood_only", "blood"] > overall["blood_only", "tumour"] + 0.03
    assert overall["blood+tumour", "tumour"] > overall["blood_only", "tumour"]

    img = mpimg.imread(tmp_path / "results/summary/reconstruction_accuracy.png")
    assert img.shape[0] > 200 and img.shape[1] > 200 and img.std() > 0.05

    model_dir = tmp_path / "results/models/ldvae/blood_only/seed0"
    history = pd.read_csv(model_dir / "history.tsv", sep="\t")
    assert 1 <= len(history) <= 12 and history["best"].sum() == 1
    assert {"train_recon", "train_kl", "val_elbo"} <= set(history.columns)
    # eval-mode (validation) loss improves with training: guards against stale batch-norm statistics
    assert history["val_elbo"].iloc[-1] < 0.8 * history["val_elbo"].iloc[0]
    assert mpimg.imread(model_dir / "loss.png").shape[0] > 100
    loadings = pd.read_csv(model_dir / "loadings.tsv", sep="\t", index_col=0)
    assert loadings.shape[1] == 5 and not loadings.isna().any().any()
    log = (tmp_path / "logs/train/ldvae/blood_only/seed0.log").read_text()
    assert "on device cpu" in log and "epoch 1/12" in log
    assert (tmp_path / "results/benchmarks/train/ldvae/blood_only/seed0.tsv").stat().st_size > 0

    manifest = pd.read_csv(tmp_path / "results/mixes/blood+tumour/seed1.manifest.tsv", sep="\t")
    assert manifest.groupby("dataset")["n_cells"].sum().to_dict() == {"blood": 125, "tumour": 125}

    # nothing left to do: the DAG is cached
    again = snakemake(tmp_path, "-n")
    assert "Nothing to be done" in again.stdout + again.stderr
