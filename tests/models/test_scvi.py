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

REPO = Path(__file__).resolve().parents[2]

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


@pytest.mark.e2e
def test_rule_evaluate_refuses_a_model_file_of_another_architecture_than_the_configs(scvi_run, tmp_path):
    """The scvi-tools model's file where the config's ldvae belongs (a stale or misplaced checkpoint): rule
    evaluate stops with one line naming the model, the file and both architectures."""
    import shutil

    src, config = scvi_run
    workdir = tmp_path / "work"
    shutil.copytree(src, workdir, symlinks=True)  # modification times kept: the copy is up to date
    models = workdir / "results/models"
    shutil.copy(models / "linear_scvi/blood+tumour/seed0/model.pt", models / "ldvae/blood+tumour/seed0/model.pt")
    res = snakemake(workdir, "--cores", "1", "results/latent/ldvae/blood+tumour/seed0/latent.h5ad", config=config)
    assert res.returncode != 0
    line = ("model 'ldvae', file 'results/models/ldvae/blood+tumour/seed0/model.pt': the file holds architecture "
            "scvi_linear but the config's model 'ldvae' has architecture ldvae; delete it and rerun")  # fmt: skip
    assert line in res.stderr, res.stderr[-3000:]
    assert "Traceback" not in (workdir / "logs/evaluate/ldvae/blood+tumour/seed0.log").read_text()


@pytest.mark.parametrize(("architecture", "batch_key"), [("scvi", "batch"), ("scvi_linear", None)])
def test_an_scvi_tools_model_saved_as_weights_loads_to_the_same_outputs(tmp_path, blood, architecture, batch_key):
    """The checkpoint holds the module's tensors and plain data (no pickle); loaded, the model gives what the
    trained model gave, and what scvi-tools' own save and load (a pickle, of a file written here) gives."""
    import torch

    import scmix
    from scmix.models.checkpoint import load_payload
    from scmix.models.modelspec import resolve
    from scmix.models.scvi_models import ScviModel, _rebuild, fit_scvi, save_scvi, scvi_class

    cells = blood[:240].copy()
    spec = resolve("s", {"architecture": architecture, "n_latent": 3, "n_hidden": 16, "max_epochs": 3,
                         "batch_key": batch_key, "threads": 1})  # fmt: skip
    trained, _, _ = fit_scvi(cells.X, cells.obs, cells.var_names, spec, seed=0, device=torch.device("cpu"), name="m")
    categories = {"batch": sorted(cells.obs["batch"].astype(str).unique())} if batch_key else {}
    meta = {"model": "s", "spec": spec, "categories": categories}
    live = ScviModel(trained, architecture=architecture, genes=cells.var_names, meta=meta)
    path = tmp_path / "model.pt"
    save_scvi(path, trained, architecture=architecture, genes=cells.var_names, meta=meta)
    payload = load_payload(path)
    assert "scvi_model" not in payload and payload["scvi"]["class"] in ("SCVI", "LinearSCVI")
    loaded = scmix.load(path)
    # scvi-tools' own round trip of the same model, as scmix loaded these models before
    trained.save(tmp_path / "own", save_anndata=False)
    template = _rebuild(scvi_class(architecture), payload["scvi"], list(cells.var_names)).adata
    own = ScviModel(scvi_class(architecture).load(tmp_path / "own", adata=template, accelerator="cpu"),
                    architecture=architecture, genes=cells.var_names, meta=meta)  # fmt: skip
    query = blood[240:400]
    for other in (loaded, own):
        np.testing.assert_allclose(other.latent(query), live.latent(query), rtol=0, atol=1e-5)
        np.testing.assert_allclose(other.normalized_expression(query, library_size=1),
                                   live.normalized_expression(query, library_size=1), rtol=1e-5, atol=1e-8)  # fmt: skip
        like, ref = other.heldout_likelihood(query, n_samples=5), live.heldout_likelihood(query, n_samples=5)
        np.testing.assert_allclose(like["marginal_ll"], ref["marginal_ll"], rtol=1e-5)
        np.testing.assert_allclose(like["recon_nll"], ref["recon_nll"], rtol=1e-5)
    if architecture == "scvi_linear":
        pd.testing.assert_frame_equal(loaded.loadings(), live.loadings())
    # saved again by the loaded model, it is the same checkpoint
    loaded.save(tmp_path / "again.pt")
    again = load_payload(tmp_path / "again.pt")
    assert again["scvi"] == payload["scvi"] and again["genes"] == payload["genes"]
    assert all(torch.equal(again["state_dict"][k], v) for k, v in payload["state_dict"].items())


def test_an_scvi_tools_checkpoint_whose_genes_or_class_disagree_with_its_weights_is_refused(tmp_path, blood):
    import torch

    import scmix
    from scmix.errors import ScmixInputError
    from scmix.models.checkpoint import load_payload, save_payload
    from scmix.models.modelspec import resolve
    from scmix.models.scvi_models import fit_scvi, save_scvi

    cells = blood[:120].copy()
    spec = resolve("s", {"architecture": "scvi", "n_latent": 2, "n_hidden": 8, "max_epochs": 1, "threads": 1})
    trained, _, _ = fit_scvi(cells.X, cells.obs, cells.var_names, spec, seed=0, device=torch.device("cpu"), name="m")
    path = tmp_path / "model.pt"
    save_scvi(path, trained, architecture="scvi", genes=cells.var_names, meta={"model": "s", "spec": spec})
    payload = load_payload(path)
    save_payload(path, {**payload, "genes": payload["genes"][:50]})
    with pytest.raises(ScmixInputError, match=f"its weights are for {cells.n_vars} genes, not the 50 it lists") as err:
        scmix.load(path)
    assert "\n" not in str(err.value) and str(path) in str(err.value)
    save_payload(path, {**payload, "architecture": "scvi_linear"})
    with pytest.raises(ScmixInputError, match="says architecture 'scvi_linear' but holds an scvi-tools SCVI"):
        scmix.load(path)
