"""The models on real PBMC 3k (2,638 cells, 9 cell types; 2,000 most variable genes, 20 % held out).
Skipped without ../shared."""

import numpy as np
import pytest
import torch

from scmix.data.expression import log1p_cp10k
from scmix.evaluation.metrics import reconstruction_accuracy
from scmix.models.modeldata import encode, prepare
from scmix.models.modelspec import module_kwargs, resolve
from scmix.models.modules import CellData, build_model
from scmix.models.train import TrainConfig, build_and_fit, evaluate_elbo, fit

CFG = TrainConfig(epochs=30, batch_size=128, lr=5e-3, kl_warmup_epochs=5, patience=8, seed=0)


def _train(train, name, **spec):
    spec = resolve(name, {"architecture": "vae", "hidden": [128, 128], "n_latent": 10, **spec})
    data, vocab = prepare(train, spec, name="pbmc3k train")
    model, hist = build_and_fit(spec["architecture"], module_kwargs(spec, train.n_vars, vocab), data, CFG)
    return model, vocab


def test_nb_beats_poisson_in_heldout_nll(pbmc3k_split):
    train, held = pbmc3k_split
    nll = {}
    for lik in ("nb", "poisson"):
        model, _ = _train(train, lik, likelihood=lik)
        nll[lik] = evaluate_elbo(model, CellData(held.X), prefix="heldout")["heldout_recon"]
    print(f"PBMC 3k held-out reconstruction NLL per cell: NB {nll['nb']:.1f}, Poisson {nll['poisson']:.1f}")
    assert nll["nb"] < 0.97 * nll["poisson"], nll


def test_cvae_generates_cells_a_classifier_trained_on_real_cells_recognises(pbmc3k_split):
    from sklearn.linear_model import LogisticRegression

    train, held = pbmc3k_split
    model, vocab = _train(train, "cvae", architecture="cvae", conditions=["cell_type"])
    types = vocab["cell_type"]
    clf = LogisticRegression(max_iter=2000).fit(log1p_cp10k(train.X), train.obs["cell_type"].astype(str))
    real_acc = clf.score(log1p_cp10k(held.X), held.obs["cell_type"].astype(str))
    torch.manual_seed(1)
    n = 60
    codes = torch.arange(1, len(types) + 1).repeat_interleave(n)[:, None]
    library = torch.as_tensor(np.asarray(train.X.sum(1))).ravel()
    library = library[torch.randint(len(library), (len(codes),))]  # real library sizes
    synth = model.generate(len(codes), codes=codes, library=library).numpy()
    labels = np.repeat(types, n)
    synth_acc = (clf.predict(log1p_cp10k(synth)) == labels).mean()
    per_type = {t: (clf.predict(log1p_cp10k(synth[labels == t])) == t).mean().round(2) for t in types}
    print(f"classifier accuracy on held-out real cells {real_acc:.3f}; on cVAE cells {synth_acc:.3f}; {per_type}")
    assert synth_acc > 3 / len(types)  # chance is 1/9
    assert synth_acc > 0.6


def test_cvae_reconstructs_held_out_cells_of_an_unseen_type_through_the_unknown_code(pbmc3k_split):
    train, held = pbmc3k_split
    model, vocab = _train(train, "cvae", architecture="cvae", conditions=["cell_type"])
    obs = held.obs.copy()
    obs["cell_type"] = "never seen"
    codes = encode(obs, vocab)
    assert (codes == 0).all()
    data = CellData(held.X, codes=codes)
    rho = np.concatenate([model.reconstruct(b).numpy() for b in data.batches(512)])
    acc = reconstruction_accuracy(held.X, rho, 1000)["pearson"].mean()
    assert acc > 0.5, acc


def test_ldvae_learns_real_pbmc3k(pbmc3k_split):
    """A trained LDVAE reconstructs held-out cells far better than an untrained one."""
    train, held = pbmc3k_split
    kwargs = {"n_genes": train.n_vars, "n_latent": 10, "hidden": [128, 128]}
    torch.manual_seed(0)
    untrained = build_model("ldvae", **kwargs).eval()
    model = build_model("ldvae", **kwargs)
    hist = fit(model, train.X, TrainConfig(epochs=25, batch_size=128, lr=5e-3, seed=0))
    x = torch.as_tensor(held.X.toarray(), dtype=torch.float32)
    acc = reconstruction_accuracy(held.X, model.normalised_expression(x).numpy(), 1000)["pearson"].mean()
    base = reconstruction_accuracy(held.X, untrained.normalised_expression(x).numpy(), 1000)["pearson"].mean()
    assert hist["val_elbo"].min() < 0.9 * hist["val_elbo"].iloc[0]
    assert acc > 0.5 and acc > base + 0.1, (acc, base)


@pytest.mark.parametrize("transform", ["log1p_cp10k", "pearson_residuals"])
def test_gaussian_baseline_on_transformed_input_reconstructs(pbmc3k_split, transform):
    from scmix.models.trained import TrainedModel

    train, held = pbmc3k_split
    spec = {"architecture": "vae", "likelihood": "gaussian", "transform": transform}
    module, vocab = _train(train, f"gauss-{transform}", **spec)
    model = TrainedModel.from_module(module, spec=spec, genes=train.var_names, categories=vocab)
    rho = model.normalized_expression(held, library_size=1)
    assert np.allclose(rho.sum(1), 1.0, atol=1e-6)
    acc = reconstruction_accuracy(held.X, rho, 1000)["pearson"].mean()
    print(f"gaussian on {transform}: held-out mean Pearson r {acc:.3f}")
    assert acc > 0.4, acc
