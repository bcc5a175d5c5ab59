"""scvi-tools' LinearSCVI beside scmix's LDVAE in one small workflow run: trained by rule train, judged by the same
evaluate rule (the latent space included), and loaded from a plain Python session with the README's three lines.
Skipped without scvi-tools (the optional extra: pip install -e '.[scvi]')."""

import subprocess
import sys
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import yaml
from snakerun import TINY, snakemake

pytest.importorskip("scvi")

REPO = Path(__file__).resolve().parents[1]

# the Python lines of the README's "Outputs" (docs/models.md), run as a user would run them
THREE_LINES = """
import sys, numpy as np, anndata, scmix
model = scmix.load(sys.argv[1])
z = model.latent(anndata.read_h5ad(sys.argv[2]))
np.save(sys.argv[3], z)
"""


@pytest.fixture(scope="module")
def scvi_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("scvi_run")
    cfg = yaml.safe_load(TINY.read_text())
    cfg["seeds"] = [0]
    cfg["mixes"] = {"blood+tumour": cfg["mixes"]["blood+tumour"]}
    cfg["models"] = {
        "ldvae": cfg["models"]["ldvae"],
        "linear_scvi": {"architecture": "scvi_linear", "n_layers": 2, "n_latent": 5, "max_epochs": 150, "lr": 5e-3,
                        "batch_size": 64, "threads": 1},
    }  # fmt: skip
    config = workdir / "scvi.yaml"
    config.write_text(yaml.safe_dump(cfg))
    res = snakemake(workdir, "--cores", "2", config=config)
    assert res.returncode == 0, res.stderr[-5000:]
    return workdir, config


@pytest.mark.e2e
def test_linear_scvi_is_trained_and_evaluated_by_the_same_rules(scvi_run):
    workdir, _ = scvi_run
    summary = pd.read_csv(workdir / "results/summary/reconstruction_accuracy.tsv", sep="\t")
    overall = summary.query("cell_type == 'all'").set_index(["model", "eval_set"])["pearson_mean"]
    assert set(overall.index) == {(m, e) for m in ("ldvae", "linear_scvi") for e in ("blood", "tumour")}
    assert overall.between(0.3, 1.0).all(), overall
    like = pd.read_csv(workdir / "results/summary/heldout_likelihood.tsv", sep="\t").set_index(["model", "eval_set"])
    scvi = like.loc["linear_scvi"]
    assert np.isfinite(scvi[["recon_nll", "elbo", "marginal_ll"]].to_numpy()).all()
    assert (scvi["likelihood"] == "nb").all() and (scvi["recon_nll"] > 0).all()
    assert (scvi["marginal_ll"] > scvi["elbo"]).all()  # 20 importance samples beat a one-draw ELBO on average
    # near scmix's LDVAE on the same cells (within 25 %): the same quantity, on the same scale
    assert np.allclose(scvi["marginal_ll"], like.loc["ldvae", "marginal_ll"], rtol=0.25)
    scores = pd.read_csv(workdir / "results/summary/latent_scores.tsv", sep="\t")
    by_type = scores.query("model == 'linear_scvi' and eval_set == 'all' and key == 'cell_type'")
    assert len(by_type) == 1 and by_type["silhouette"].item() > 0.1
    history = pd.read_csv(workdir / "results/models/linear_scvi/blood+tumour/seed0/history.tsv", sep="\t")
    assert len(history) == 150 and history["train_elbo"].iloc[-1] < history["train_elbo"].iloc[0]
    loadings = ad.read_h5ad(workdir / "results/models/linear_scvi/blood+tumour/seed0/loadings.h5ad")
    assert loadings.varm["loadings"].shape == (loadings.n_vars, 5) and np.abs(loadings.varm["loadings"]).sum() > 0
    genes = pd.read_csv(workdir / "results/eval/linear_scvi/blood+tumour/seed0/blood.genes.tsv", sep="\t")
    assert genes["expected_zero_fraction"].between(0, 1).all()
    assert "(scvi_linear, nb likelihood)" in (workdir / "logs/train/linear_scvi/blood+tumour/seed0.log").read_text()


@pytest.mark.e2e
@pytest.mark.parametrize("model", ["ldvae", "linear_scvi"])
def test_three_lines_of_python_give_the_workflows_latent(scvi_run, model, tmp_path):
    workdir, _ = scvi_run
    run = workdir / f"results/latent/{model}/blood+tumour/seed0"
    eval_h5ad = workdir / "results/split/tumour/eval.h5ad"
    out = tmp_path / "z.npy"
    checkpoint = workdir / f"results/models/{model}/blood+tumour/seed0/model.pt"
    cmd = [sys.executable, "-c", THREE_LINES, str(checkpoint), str(eval_h5ad), str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    latent = ad.read_h5ad(run / "latent.h5ad")
    mine = latent[latent.obs["eval_set"] == "tumour"]
    assert list(mine.obs["cell_id"]) == list(ad.read_h5ad(eval_h5ad).obs_names)
    np.testing.assert_allclose(np.load(out), mine.obsm["X_scmix"], rtol=0, atol=1e-5)
    assert latent.obsm["X_umap"].shape == (latent.n_obs, 2)  # seed 0: the seed the UMAPs are drawn for
