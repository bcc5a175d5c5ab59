"""End to end: Snakemake runs the whole DAG on a tiny simulated config in a temporary directory."""

import re
from pathlib import Path

import anndata as ad
import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
import yaml
from snakerun import TINY, snakemake

REPO = Path(__file__).resolve().parents[2]


def job_counts(dry_run_output: str) -> dict[str, int]:
    table = dry_run_output.split("Job stats:")[1]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, flags=re.M)}


def test_dry_run_lists_every_stage_and_scales_with_seeds(tmp_path):
    res = snakemake(tmp_path, "-n")
    assert res.returncode == 0, res.stderr
    jobs = job_counts(res.stdout)
    # 2 datasets, 2 mixes, 2 seeds, 1 model, 2 eval sets
    assert jobs["download"] == jobs["parse"] == jobs["qc"] == jobs["split"] == 2
    # 2 models (ldvae, cvae); one evaluate job per model x mix x seed over both eval sets; loadings only for the
    # linear decoder
    assert jobs["mix"] == 4 and jobs["train"] == 8 and jobs["evaluate"] == 8 and jobs["loadings"] == 4
    # synthetic utility for the cell-type-conditioned model only; UMAPs for seed 0
    assert jobs["synthetic"] == 8 and jobs["plot_umap"] == 4 and jobs["summarize"] == 6
    assert "latent" not in jobs  # each evaluate job also computes its model's latent space
    cfg = yaml.safe_load(TINY.read_text())
    cfg["seeds"] = [0, 1, 2, 3, 4]
    (tmp_path / "five.yaml").write_text(yaml.safe_dump(cfg))
    jobs5 = job_counts(snakemake(tmp_path, "-n", config=tmp_path / "five.yaml").stdout)
    assert jobs5["mix"] == 10 and jobs5["train"] == 20 and jobs5["evaluate"] == 20 and jobs5["qc"] == 2
    assert jobs5["synthetic"] == 20 and jobs5["plot_umap"] == 4


def test_a_sweep_expands_into_one_model_per_grid_point(tmp_path):
    """The SAD2 grid: 4 networks x (NB, ZINB, Poisson, and Gaussian on 3 transforms) = 24 models."""
    cfg = yaml.safe_load(TINY.read_text())
    cfg["sweeps"] = {
        "sad2": {
            "networks": [{"hidden": [1024, 512, 256], "n_latent": 32}, {"hidden": [1024, 512, 256], "n_latent": 64},
                         {"hidden": [256, 128], "n_latent": 128}, {"hidden": [256], "n_latent": 32}],
            "likelihoods": ["nb", "zinb", "poisson", "gaussian"],
            "transforms": ["log1p_cp10k", "size_factor", "pearson_residuals"],
            "settings": {"epochs": 5},
        }
    }  # fmt: skip
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump(cfg))
    res = snakemake(tmp_path, "-n", config=tmp_path / "sweep.yaml")
    assert res.returncode == 0, res.stderr
    jobs = job_counts(res.stdout)
    assert jobs["train"] == (2 + 24) * 4 and jobs["evaluate"] == (2 + 24) * 4
    trained = set(re.findall(r"results/models/([^/]+)/blood_only/seed0/model.pt", res.stdout))
    assert {"sad2_1024-512-256_z32_nb", "sad2_256-128_z128_zinb", "sad2_256_z32_gaussian-pearson_residuals",
            "sad2_1024-512-256_z64_gaussian-size_factor"} <= trained and len(trained) == 26  # fmt: skip
    # a point that clashes with a named model, and a gaussian model without a transform, are refused
    cfg["models"]["sad2_256_z32_nb"] = {"architecture": "vae"}
    (tmp_path / "clash.yaml").write_text(yaml.safe_dump(cfg))
    res = snakemake(tmp_path, "-n", config=tmp_path / "clash.yaml")
    assert res.returncode != 0 and "sweeps.sad2 makes model 'sad2_256_z32_nb'" in res.stdout + res.stderr
    del cfg["models"]["sad2_256_z32_nb"], cfg["sweeps"]
    cfg["models"]["g"] = {"architecture": "vae", "likelihood": "gaussian"}
    (tmp_path / "gauss.yaml").write_text(yaml.safe_dump(cfg))
    res = snakemake(tmp_path, "-n", config=tmp_path / "gauss.yaml")
    assert res.returncode != 0 and "models.g: a gaussian likelihood needs transform" in res.stdout + res.stderr


@pytest.mark.e2e
def test_workflow_runs_end_to_end_and_summary_is_right(tiny_run):
    tmp_path, config = tiny_run
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
                expected |= {(model, mix, seed, eval_set, t) for t in types for model in ("ldvae", "cvae")}
                rows = summary.query("mix == @mix and seed == @seed and eval_set == @eval_set and cell_type == 'all'")
                assert len(rows) == 2 and (rows["n_cells"] == held.n_obs).all()
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
    assert not (tmp_path / "results/models/cvae/blood_only/seed0/loadings.tsv").exists()  # no linear decoder
    cvae_log = (tmp_path / "logs/train/cvae/blood_only/seed0.log").read_text()
    assert "(cvae, zinb likelihood)" in cvae_log
    assert (tmp_path / "results/benchmarks/train/ldvae/blood_only/seed0.tsv").stat().st_size > 0

    manifest = pd.read_csv(tmp_path / "results/mixes/blood+tumour/seed1.manifest.tsv", sep="\t")
    assert manifest.groupby("dataset")["n_cells"].sum().to_dict() == {"blood": 125, "tumour": 125}

    _check_evaluation_outputs(tmp_path, summary)

    # nothing left to do: the DAG is cached
    again = snakemake(tmp_path, "-n", config=config)
    assert "Nothing to be done" in again.stdout + again.stderr


def _check_evaluation_outputs(tmp_path, summary):
    """The tables and figures beyond reconstruction accuracy, on the tiny run."""
    like = pd.read_csv(tmp_path / "results/summary/heldout_likelihood.tsv", sep="\t")
    assert len(like) == 2 * 2 * 2 * 2 and (like["n_samples"] == 20).all()
    assert (like["marginal_ll"] >= like["elbo"]).all() and (like["recon_nll"] > 0).all()
    # the per-cell likelihoods in the cells table average to the summary
    cells = pd.read_csv(tmp_path / "results/eval/ldvae/blood_only/seed0/tumour.cells.tsv", sep="\t")
    row = like.query("model == 'ldvae' and mix == 'blood_only' and seed == 0 and eval_set == 'tumour'")
    assert cells["marginal_ll"].mean() == pytest.approx(row["marginal_ll"].item())
    # blood-only models explain tumour cells less well than a model that saw tumour cells
    ll = like.groupby(["mix", "eval_set"])["marginal_ll"].mean()
    assert ll["blood+tumour", "tumour"] > ll["blood_only", "tumour"]

    genes = pd.read_csv(tmp_path / "results/eval/cvae/blood+tumour/seed1/blood.genes.tsv", sep="\t")
    assert genes["expected_zero_fraction"].between(0, 1).all() and genes["observed_zero_fraction"].between(0, 1).all()
    fit = pd.read_csv(tmp_path / "results/summary/gene_fit.tsv", sep="\t")
    assert len(fit) == 16 and fit["mean_abs_zero_error"].between(0, 0.3).all()

    synth = pd.read_csv(tmp_path / "results/summary/synthetic_utility.tsv", sep="\t")
    assert set(synth["model"]) == {"cvae"}  # the only model conditioned on cell type
    macro = synth.query("`class` == 'macro' and metric == 'f1' and eval_set == 'blood'")
    assert set(macro["level"]) == {"fine", "coarse"} and len(macro) == 2 * 2 * 2 * 3
    assert macro["value"].between(0, 1).all()
    real = macro.query("setting == 'real_to_real'")["value"]
    assert real.min() > 0.8  # blood types are easy to tell apart
    auc = synth.query("setting == 'discriminator' and metric == 'auc'")
    assert len(auc) == 2 * 2 * 2 and auc["value"].dropna().between(0, 1).all()
    # and the genes it told real from synthetic cells by: ten per job, gains in [0, 1], the most informative first
    importance = synth.query("setting == 'discriminator' and metric == 'importance' and eval_set == 'blood'")
    assert importance.groupby(["mix", "seed"]).size().eq(10).all() and importance["value"].between(0, 1).all()
    first = importance.groupby(["mix", "seed"])["value"]
    assert (first.first() == first.max()).all() and importance["class"].str.match(r"^(SIMG|MT-)").all()  # genes

    checks = pd.read_csv(tmp_path / "results/summary/posterior_checks.tsv", sep="\t")
    assert len(checks) == 16 and checks[["mean_corr", "library_ks", "corr_distance"]].notna().all().all()
    # one replicate per held-out cell: gene means follow the cells', libraries and zeros nearly too
    assert (checks["mean_corr"] > 0.7).all() and checks["library_ks"].between(0, 0.5).all()
    assert checks["zero_fraction_mae"].between(0, 0.3).all() and checks["corr_distance"].between(0, 1).all()
    own = checks.query("mix == 'blood_only'").groupby("eval_set")["mean_corr"].mean()
    assert own["blood"] > own["tumour"]  # a blood model replicates blood cells better than tumour cells
    # a blood-only model has one label in common with the tumour set (T): nothing to classify there
    tumour = synth.query("mix == 'blood_only' and eval_set == 'tumour' and level == 'fine' and metric == 'f1'")
    assert tumour["value"].isna().all()

    scores = pd.read_csv(tmp_path / "results/summary/latent_scores.tsv", sep="\t")
    assert set(scores["key"]) == {"cell_type", "eval_set", "donor", "batch"}
    by_type = scores.query("eval_set == 'all' and key == 'cell_type'")
    assert len(by_type) == 8 and (by_type["silhouette"] > 0.1).all()  # cell types are apart in the latent
    for png in ["heldout_likelihood", "training_curves", "zero_calibration", "synthetic_utility", "posterior_checks",
                "celltype_accuracy/ldvae", "celltype_accuracy/cvae"]:  # fmt: skip
        img = mpimg.imread(tmp_path / f"results/summary/{png}.png")
        assert img.shape[0] > 200 and img.std() > 0.05, png
    assert mpimg.imread(tmp_path / "results/latent/cvae/blood_only/seed0/umap.png").std() > 0.05
    assert not (tmp_path / "results/latent/cvae/blood_only/seed1/umap.png").exists()  # UMAPs for the first seed
