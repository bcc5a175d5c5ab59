import numpy as np
import pytest
import torch

from scmix.checkpoint import load_checkpoint, save_checkpoint
from scmix.errors import ScmixInputError
from scmix.models import build_model
from scmix.models.likelihoods import nb_log_prob
from scmix.train import TrainConfig, TrainingDiverged, build_and_fit, fit


def test_nb_log_prob_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    mu = torch.rand(50, 20, generator=g) * 30 + 0.01
    theta = torch.rand(20, generator=g) * 5 + 0.1
    x = torch.poisson(mu, generator=g)
    ref = torch.distributions.NegativeBinomial(total_count=theta, logits=torch.log(mu) - torch.log(theta))
    torch.testing.assert_close(nb_log_prob(x, mu, theta), ref.log_prob(x), rtol=1e-4, atol=1e-4)


def test_ldvae_shapes_gradients_and_normalised_expression():
    model = build_model("ldvae", n_genes=30, n_latent=4, hidden=[16])
    x = torch.poisson(torch.full((8, 30), 2.0))
    out = model(x)
    assert out["recon"].shape == (8,) and out["kl"].shape == (8,)
    (out["recon"] + out["kl"]).mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    model.eval()
    rho = model.normalised_expression(x)
    torch.testing.assert_close(rho.sum(1), torch.ones(8))
    assert model.loadings().shape == (30, 4)


def test_unknown_architecture_is_named():
    with pytest.raises(ValueError, match="unknown architecture 'gan'"):
        build_model("gan", n_genes=3)


def test_tiny_model_overfits_and_same_seed_gives_same_weights(blood):
    X = blood.X[:200]
    cfg = TrainConfig(epochs=40, batch_size=64, lr=1e-2, val_fraction=0.0, kl_warmup_epochs=5, patience=0, seed=1)
    kwargs = {"n_genes": X.shape[1], "n_latent": 5, "hidden": [32], "dropout": 0.0}
    weights = []
    for _ in range(2):
        torch.manual_seed(123)  # global state left by earlier code must not matter
        torch.rand(int(torch.randint(1, 50, (1,))))
        model, hist = build_and_fit("ldvae", kwargs, X, cfg)
        weights.append(model.decoder.weight.detach().clone())
    assert hist["train_recon"].iloc[-1] < 0.8 * hist["train_recon"].iloc[0]
    assert torch.equal(weights[0], weights[1])
    model2, _ = build_and_fit("ldvae", kwargs, X, TrainConfig(**{**cfg.__dict__, "seed": 2}))
    assert not torch.equal(model2.decoder.weight, weights[0])


def test_early_stopping_restores_the_best_validation_state(blood):
    model = build_model("ldvae", n_genes=blood.n_vars, n_latent=5, hidden=[32])
    hist = fit(model, blood.X, TrainConfig(epochs=30, lr=3e-2, patience=3, val_fraction=0.2, seed=0))
    best = hist.loc[hist["best"]]
    assert len(best) == 1 and best["val_elbo"].item() == hist["val_elbo"].min()
    assert len(hist) <= 30


def test_nan_loss_stops_with_epoch_and_hint(blood):
    model = build_model("ldvae", n_genes=blood.n_vars, n_latent=5, hidden=[32])
    with torch.no_grad():
        model.log_theta.fill_(float("nan"))
    with pytest.raises(TrainingDiverged, match="epoch 1; try a lower lr"):
        fit(model, blood.X, TrainConfig(epochs=2, seed=0))


def test_checkpoint_roundtrip_records_genes_and_predicts_the_same(tmp_path, blood):
    kwargs = {"n_genes": blood.n_vars, "n_latent": 3, "hidden": [16]}
    model = build_model("ldvae", **kwargs)
    fit(model, blood.X, TrainConfig(epochs=2, seed=0))
    save_checkpoint(tmp_path / "m.pt", model, architecture="ldvae", model_kwargs=kwargs, genes=blood.var_names,
                    meta={"mix": "m"})  # fmt: skip
    back, payload = load_checkpoint(tmp_path / "m.pt")
    assert payload["genes"] == list(blood.var_names) and payload["meta"]["mix"] == "m"
    x = torch.as_tensor(blood.X[:10].toarray(), dtype=torch.float32)
    torch.testing.assert_close(back.normalised_expression(x), model.normalised_expression(x))
    (tmp_path / "bad.pt").write_bytes(b"garbage")
    with pytest.raises(ScmixInputError, match="bad.pt"):
        load_checkpoint(tmp_path / "bad.pt")


def test_ldvae_learns_real_pbmc3k(pbmc3k):
    """On real PBMC 3k held-out cells, a trained LDVAE reconstructs far better than an untrained one."""
    from scmix.evaluate import log1p_cp10k, reconstruction_accuracy, top_variable_genes
    from scmix.split import split_heldout

    genes = top_variable_genes(log1p_cp10k(pbmc3k.X), 2000)
    data = pbmc3k[:, genes].copy()
    train, held = split_heldout(data, 0.2, seed=0)
    kwargs = {"n_genes": data.n_vars, "n_latent": 10, "hidden": [128, 128]}
    torch.manual_seed(0)
    untrained = build_model("ldvae", **kwargs).eval()
    model = build_model("ldvae", **kwargs)
    hist = fit(model, train.X, TrainConfig(epochs=25, batch_size=128, lr=5e-3, seed=0))
    x = torch.as_tensor(held.X.toarray(), dtype=torch.float32)
    acc = reconstruction_accuracy(held.X, model.normalised_expression(x).numpy(), 1000)["pearson"].mean()
    base = reconstruction_accuracy(held.X, untrained.normalised_expression(x).numpy(), 1000)["pearson"].mean()
    assert hist["val_elbo"].min() < 0.9 * hist["val_elbo"].iloc[0]
    assert acc > 0.5 and acc > base + 0.1, (acc, base)
    assert np.isfinite(acc)
