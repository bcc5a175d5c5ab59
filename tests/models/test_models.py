import os

import numpy as np
import pytest
import scipy.sparse as sp
import torch

import scmix
from scmix.errors import ScmixInputError
from scmix.models.checkpoint import save_checkpoint
from scmix.models.modeldata import encode, prepare
from scmix.models.modelspec import module_kwargs, resolve
from scmix.models.modules import CellData, build_model
from scmix.models.train import TrainConfig, TrainingDiverged, build_and_fit, evaluate_elbo, fit, kl_weight

VARIANTS = {
    "ldvae": ("ldvae", {}),
    "vae-nb": ("vae", {"norm": "layer"}),
    "vae-zinb-latent-library": ("vae", {"likelihood": "zinb", "library": "latent"}),
    "vae-poisson": ("vae", {"likelihood": "poisson", "norm": "none"}),
    "vae-nb-gene-batch": ("vae", {"dispersion": "gene-batch"}),
    "vae-gaussian-pearson": ("vae", {"likelihood": "gaussian", "transform": "pearson_residuals"}),
    "cvae": ("cvae", {"conditions": ["cell_type", "donor"], "inject": "decoder"}),
    "gmvae": ("gmvae", {"n_components": 3}),
}


def _setup(blood, name, **extra):
    arch, spec = VARIANTS[name]
    spec = resolve(name, {"architecture": arch, "n_latent": 4, "hidden": [32], "dispersion_key": "donor", **spec,
                          **extra})  # fmt: skip
    data, vocab = prepare(blood, spec, name="blood")
    return spec, data, module_kwargs(spec, blood.n_vars, vocab), vocab


@pytest.mark.parametrize("name", list(VARIANTS))
def test_every_variant_gives_per_cell_losses_and_gradients_to_every_parameter(blood, name):
    spec, data, kwargs, _ = _setup(blood, name)
    torch.manual_seed(0)
    model = build_model(spec["architecture"], **kwargs)
    out = model(data.batch(torch.arange(32)))
    assert out["recon"].shape == out["kl"].shape == (32,)
    assert torch.isfinite(out["recon"]).all() and (out["kl"] >= 0).all()
    (out["recon"] + out["kl"]).mean().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
        if not pname.startswith("embeddings"):  # the "unknown" row of an embedding may see no cell
            assert p.grad.abs().sum() > 0, pname


@pytest.mark.parametrize("name", list(VARIANTS))
def test_every_variant_learns_generates_and_survives_a_checkpoint(tmp_path, blood, name):
    spec, data, kwargs, vocab = _setup(blood, name)
    cfg = TrainConfig(epochs=8, batch_size=64, lr=1e-2, kl_warmup_epochs=2, patience=0, seed=0)
    model, hist = build_and_fit(spec["architecture"], kwargs, data, cfg)
    assert hist["val_elbo"].min() < hist["val_elbo"].iloc[0]
    save_checkpoint(tmp_path / "m.pt", model, architecture=spec["architecture"], model_kwargs=kwargs,
                    genes=blood.var_names, meta={"spec": spec, "categories": vocab})  # fmt: skip
    loaded = scmix.load(tmp_path / "m.pt")
    back = loaded.module
    batch = data.batch(torch.arange(20))
    torch.testing.assert_close(back.reconstruct(batch), model.reconstruct(batch))
    assert loaded.categories == vocab
    codes = torch.ones(50, len(kwargs["covariates"]), dtype=torch.long) if kwargs["covariates"] else None
    cells = back.generate(50, codes=codes)
    assert cells.shape == (50, blood.n_vars) and torch.isfinite(cells).all()
    if back.counts_model:
        assert (cells >= 0).all() and torch.equal(cells, cells.round())
        # library sizes drawn from the prior fitted to the training cells
        ratio = cells.sum(1).median() / torch.as_tensor(blood.X.sum(1)).median()
        assert 0.5 < ratio < 2.0, ratio


def test_unknown_architecture_and_cvae_without_conditions_are_named():
    with pytest.raises(ValueError, match="unknown architecture 'gan'"):
        build_model("gan", n_genes=3)
    with pytest.raises(ValueError, match="'cvae' needs at least one condition"):
        build_model("cvae", n_genes=3)


@pytest.mark.parametrize("name", list(VARIANTS))
def test_every_variant_trains_to_the_same_weights_with_the_same_seed_on_two_threads(blood, name):
    """Reproducible on CPU with more than one thread: an op whose backward accumulates in a thread-dependent
    order (as indexing the gene-batch dispersion table did) makes two runs differ in the last digits."""
    spec, data, kwargs, _ = _setup(blood, name)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        runs = [build_and_fit(spec["architecture"], kwargs, data, TrainConfig(epochs=2, seed=4))[0] for _ in range(2)]
    finally:
        torch.set_num_threads(threads)
    a, b = (m.state_dict() for m in runs)
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])]


def test_tiny_model_overfits_a_tiny_batch_and_same_seed_gives_same_weights(blood):
    X = blood.X[:64]
    cfg = TrainConfig(epochs=150, batch_size=64, lr=1e-2, val_fraction=0.0, kl_warmup_epochs=0, patience=0, seed=1)
    kwargs = {"n_genes": X.shape[1], "n_latent": 5, "hidden": [64], "dropout": 0.0}
    weights = []
    for _ in range(2):
        torch.manual_seed(123)  # global state left by earlier code must not matter
        torch.rand(int(torch.randint(1, 50, (1,))))
        model, hist = build_and_fit("vae", kwargs, X, cfg)
        weights.append([p.detach().clone() for p in model.parameters()])
    assert hist["train_recon"].iloc[-1] < 0.7 * hist["train_recon"].iloc[0]
    # it fits these cells far better than their mean profile does (with the dispersion it learned)
    from scmix.models.modules.likelihoods import nb_log_prob

    x = torch.as_tensor(X.toarray(), dtype=torch.float32)
    mean_profile = x.sum(1, keepdim=True) * (x.sum(0) / x.sum())
    baseline = -nb_log_prob(x, mean_profile, torch.exp(model.lik.log_theta[0])).sum(1).mean().item()
    assert hist["train_recon"].iloc[-1] < 0.9 * baseline, (hist["train_recon"].iloc[-1], baseline)
    assert all(torch.equal(a, b) for a, b in zip(*weights, strict=True))
    model2, _ = build_and_fit("vae", kwargs, X, TrainConfig(**{**cfg.__dict__, "seed": 2, "epochs": 1}))
    assert not torch.equal(next(model2.parameters()), weights[0][0])


def test_kl_schedules():
    lin = TrainConfig(kl_schedule="linear", kl_warmup_epochs=4)
    assert [kl_weight(e, lin) for e in (1, 2, 4, 9)] == [0.25, 0.5, 1.0, 1.0]
    cyc = TrainConfig(kl_schedule="cyclical", kl_cycle_epochs=4, kl_cycle_ramp=0.5)
    assert [kl_weight(e, cyc) for e in range(1, 10)] == [0.0, 0.5, 1.0, 1.0, 0.0, 0.5, 1.0, 1.0, 0.0]
    assert kl_weight(1, TrainConfig(kl_schedule="constant")) == 1.0


def test_early_stopping_restores_the_best_validation_state(blood):
    model = build_model("ldvae", n_genes=blood.n_vars, n_latent=5, hidden=[32])
    hist = fit(model, blood.X, TrainConfig(epochs=30, lr=3e-2, patience=3, val_fraction=0.2, seed=0))
    best = hist.loc[hist["best"]]
    assert len(best) == 1 and best["val_elbo"].item() == hist["val_elbo"].min()
    assert len(hist) <= 30
    # the restored weights are the best epoch's: re-evaluating gives its validation loss
    order = np.random.default_rng(0).permutation(blood.n_obs)
    val = np.sort(order[: int(round(0.2 * blood.n_obs))])
    again = evaluate_elbo(model, CellData(blood.X), val)["val_elbo"]
    assert again == pytest.approx(best["val_elbo"].item(), rel=1e-5)


def test_nan_loss_stops_with_epoch_and_hint(blood):
    model = build_model("ldvae", n_genes=blood.n_vars, n_latent=5, hidden=[32])
    with torch.no_grad():
        model.lik.log_theta.fill_(float("nan"))
    with pytest.raises(TrainingDiverged, match="at epoch 1 .*try a lower lr"):
        fit(model, blood.X, TrainConfig(epochs=2, seed=0))


def test_non_integer_counts_name_the_dataset_of_the_mix(blood):
    mix = blood.copy()
    mix.obs["dataset"] = np.where(np.arange(mix.n_obs) < 300, "pbmc", "normalised_study")
    X = sp.csr_matrix(mix.X, dtype=np.float32)
    X.data[-5:] = X.data[-5:] + 0.5
    mix.X = X
    spec = resolve("m", {"architecture": "ldvae"})
    with pytest.raises(
        ScmixInputError, match=r"mix m.*mix\.h5ad.*must be integers.*e\.g\. 3\.5\).*dataset\(s\) normalised_study\)"
    ):
        prepare(mix, spec, name="mix m", path="mix.h5ad")
    X.data[-5:] = -1
    with pytest.raises(ScmixInputError, match="negative"):
        prepare(mix, spec, name="mix m", path="mix.h5ad")


def test_missing_condition_column_and_unseen_categories(blood):
    spec = resolve("c", {"architecture": "cvae", "conditions": ["tissue"]})
    with pytest.raises(ScmixInputError, match="obs column 'tissue'"):
        prepare(blood, spec, name="mix c")
    vocab = {"cell_type": ["B", "T"]}
    obs = blood.obs.iloc[:4].copy()
    obs["cell_type"] = ["T", "B", "Mono", "T"]
    assert encode(obs, vocab)[:, 0].tolist() == [2, 1, 0, 2]


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_checkpoint_records_genes_and_rejects_garbage(tmp_path, blood):
    kwargs = {"n_genes": blood.n_vars, "n_latent": 3, "hidden": [16]}
    model = build_model("ldvae", **kwargs)
    fit(model, blood.X, TrainConfig(epochs=2, seed=0))
    save_checkpoint(tmp_path / "m.pt", model, architecture="ldvae", model_kwargs=kwargs, genes=blood.var_names,
                    meta={"mix": "m"})  # fmt: skip
    from scmix.models.checkpoint import load_payload

    payload = load_payload(tmp_path / "m.pt")
    loaded = scmix.load(tmp_path / "m.pt")
    back = loaded.module
    assert list(loaded.genes) == list(blood.var_names) and loaded.meta["mix"] == "m"
    assert payload["scmix_version"] and payload["torch_version"]
    assert (tmp_path / "m.pt").stat().st_mode & 0o777 == 0o666 & ~_umask()
    x = torch.as_tensor(blood.X[:10].toarray(), dtype=torch.float32)
    torch.testing.assert_close(back.normalised_expression(x), model.normalised_expression(x))
    assert loaded.loadings().shape == (blood.n_vars, 3) and list(loaded.loadings().index) == list(blood.var_names)
    (tmp_path / "bad.pt").write_bytes(b"garbage")
    with pytest.raises(ScmixInputError, match="bad.pt"):
        scmix.load(tmp_path / "bad.pt")
    with pytest.raises(ScmixInputError, match="no such model file"):
        scmix.load(tmp_path / "absent.pt")


def test_latent_library_tracks_the_observed_library(blood):
    from scipy.stats import spearmanr

    spec, data, kwargs, _ = _setup(blood, "vae-zinb-latent-library", likelihood="nb")
    model, _ = build_and_fit("vae", kwargs, data, TrainConfig(epochs=100, lr=1e-2, seed=0, patience=0))
    batch = data.batch(torch.arange(blood.n_obs))
    with torch.no_grad():
        l_mean = model.l_mean(model.l_encoder(model._encoder_input(batch, None))).squeeze(1)
    observed = torch.log(batch.counts.row_sums())
    assert spearmanr(l_mean.numpy(), observed.numpy()).statistic > 0.7
    assert abs(l_mean.mean().item() - observed.mean().item()) < 0.3
    # the prior is fitted to the training cells' log library sizes
    assert abs(float(model.log_library_loc) - observed.mean().item()) < 0.1
