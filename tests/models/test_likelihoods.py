"""Each likelihood against torch.distributions or its reference formula, and the sparse per-cell forms
against the dense ones (values and gradients)."""

import copy

import numpy as np
import pytest
import torch

from scmix.models.modules import Batch
from scmix.models.modules.likelihoods import (
    gaussian_log_prob,
    nb_cell_log_lik,
    nb_log_prob,
    poisson_cell_log_lik,
    poisson_log_prob,
    zinb_cell_log_lik,
    zinb_log_prob,
)


def _random(seed=0, cells=40, genes=25):
    g = torch.Generator().manual_seed(seed)
    mu = torch.rand(cells, genes, generator=g) * 20 + 0.01
    theta = torch.rand(genes, generator=g) * 5 + 0.1
    x = torch.poisson(mu * (torch.rand(cells, genes, generator=g) < 0.5), generator=g)  # many zeros
    pi_logits = torch.randn(cells, genes, generator=g)
    return x, mu, theta, pi_logits


def test_nb_matches_torch_distributions():
    x, mu, theta, _ = _random()
    ref = torch.distributions.NegativeBinomial(total_count=theta, logits=torch.log(mu) - torch.log(theta))
    torch.testing.assert_close(nb_log_prob(x, mu, theta), ref.log_prob(x), rtol=1e-4, atol=1e-4)


def test_poisson_matches_torch_distributions():
    x, mu, _, _ = _random(1)
    torch.testing.assert_close(poisson_log_prob(x, mu), torch.distributions.Poisson(mu).log_prob(x), rtol=1e-4,
                               atol=1e-4)  # fmt: skip


def test_zinb_matches_the_mixture_formula():
    x, mu, theta, pi_logits = _random(2)
    pi = torch.sigmoid(pi_logits)
    nb = torch.distributions.NegativeBinomial(total_count=theta, logits=torch.log(mu) - torch.log(theta))
    ref = torch.log(pi * (x == 0) + (1 - pi) * nb.log_prob(x).exp())
    torch.testing.assert_close(zinb_log_prob(x, mu, theta, pi_logits), ref, rtol=1e-4, atol=1e-4)
    # a probability mass function: sums to one over counts (checked for one cell and gene up to 400)
    grid = torch.arange(400.0)
    total = zinb_log_prob(grid, mu[0, 0], theta[0], pi_logits[0, 0]).exp().sum()
    assert abs(total.item() - 1.0) < 1e-4


def test_gaussian_matches_torch_distributions():
    g = torch.Generator().manual_seed(3)
    x, mean, log_var = torch.randn(10, 5, generator=g), torch.randn(10, 5, generator=g), torch.randn(5, generator=g)
    ref = torch.distributions.Normal(mean, torch.exp(0.5 * log_var)).log_prob(x)
    torch.testing.assert_close(gaussian_log_prob(x, mean, log_var), ref)


@pytest.mark.parametrize("kind", ["nb", "nb_per_cell_theta", "zinb", "poisson"])
def test_sparse_per_cell_form_equals_dense_sum_with_the_same_gradients(kind):
    x, mu, theta, pi_logits = _random(4)
    counts = Batch.from_dense(x).counts
    assert counts.val.numel() < x.numel() * 0.7  # the sparse path really skips zeros
    if kind == "nb_per_cell_theta":
        theta = theta.expand_as(mu) * torch.linspace(0.5, 2.0, mu.shape[0])[:, None]
    log_mu = torch.log(mu).requires_grad_()
    log_theta = torch.log(theta).clone().requires_grad_()
    pl = pi_logits.clone().requires_grad_()

    def both():
        if kind.startswith("nb"):
            return nb_log_prob(x, log_mu.exp(), log_theta.exp()).sum(1), nb_cell_log_lik(counts, log_mu, log_theta)
        if kind == "zinb":
            return (zinb_log_prob(x, log_mu.exp(), log_theta.exp(), pl).sum(1),
                    zinb_cell_log_lik(counts, log_mu, log_theta, pl))  # fmt: skip
        return poisson_log_prob(x, log_mu.exp()).sum(1), poisson_cell_log_lik(counts, log_mu)

    dense, sparse = both()
    torch.testing.assert_close(sparse, dense, rtol=1e-5, atol=1e-3)
    params = [p for p in (log_mu, log_theta, pl) if p is not None]
    g_dense = torch.autograd.grad(dense.sum(), params, allow_unused=True)
    g_sparse = torch.autograd.grad(both()[1].sum(), params, allow_unused=True)
    for a, b in zip(g_dense, g_sparse, strict=True):
        if a is None:
            assert b is None
        else:
            torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4)
            assert torch.isfinite(a).all() and a.abs().sum() > 0


def _padded(counts):
    """The same sparse rows with one trailing CSR row of padding (count 0 at gene 0), as fixed-shape batches
    carry them: ``n_rows`` stays the number of real cells."""
    from scmix.models.modules.counts import SparseRows

    return SparseRows(torch.cat([counts.crow, counts.crow[-1:] + 1]), torch.cat([counts.col, counts.col.new_zeros(1)]),
                      torch.cat([counts.val, counts.val.new_zeros(1)]), counts.n_genes, counts.row_log_factorial(),
                      padded=True)  # fmt: skip


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("padding", [False, True])
@pytest.mark.parametrize("upstream", ["per cell", "mean"])
def test_nb_from_logits_equals_the_reference_with_the_same_gradients(dtype, padding, upstream):
    """The fused NB (analytic backward) against the reference ``nb_log_prob`` at mu = l * softmax(logits):
    per-cell values and the gradients of logits, log library and log theta, under an uneven upstream gradient
    and under a training loss's (the same for every cell, which the backward folds into its coefficients)."""
    from scmix.models.modules.likelihoods import nb_cell_log_lik_logits

    g = torch.Generator().manual_seed(5)
    cells, genes = 40, 30
    logits = (3 * torch.randn(cells, genes, generator=g)).to(dtype).requires_grad_()
    log_l = (torch.rand(cells, 1, generator=g) * 4 + 2).to(dtype).requires_grad_()
    log_theta = torch.randn(genes, generator=g).to(dtype).requires_grad_()
    mu = torch.exp(log_l + torch.log_softmax(logits, 1)).detach()
    x = torch.poisson(mu * (torch.rand(cells, genes, generator=g) < 0.4), generator=g)
    counts = Batch.from_dense(x).counts
    counts.val = counts.val.to(dtype)
    if padding:
        counts = _padded(counts)
        assert counts.crow.numel() - 1 == counts.n_rows + 1
    if upstream == "mean":
        upstream = torch.full((cells,), -1.0 / cells, dtype=dtype)
    else:
        upstream = torch.randn(cells, generator=g, dtype=dtype)
    params = [logits, log_l, log_theta]

    ref = nb_log_prob(x.to(dtype), torch.exp(log_l + torch.log_softmax(logits, 1)), log_theta.exp(), eps=0.0).sum(1)
    got = nb_cell_log_lik_logits(counts, logits, log_l, log_theta)
    tol = {"rtol": 1e-5, "atol": 1e-3} if dtype == torch.float32 else {"rtol": 1e-10, "atol": 1e-9}
    torch.testing.assert_close(got, ref, **tol)
    for a, b in zip(torch.autograd.grad((ref * upstream).sum(), params),
                    torch.autograd.grad((got * upstream).sum(), params), strict=True):  # fmt: skip
        # the digamma of the log theta gradient is a series accurate to 2e-8
        torch.testing.assert_close(b, a, **({"rtol": 1e-4, "atol": 1e-4} if dtype == torch.float32 else
                                            {"rtol": 1e-7, "atol": 1e-7}))  # fmt: skip
        assert a.abs().sum() > 0


def test_nb_from_logits_gradients_do_not_depend_on_the_thread_count():
    """Every sum in the fused NB's backward has one order whatever the thread count: per cell a segment sum,
    per gene a bincount, over cells matrix-vector products."""
    import scipy.sparse as sp

    from scmix.models.modules.counts import CellData
    from scmix.models.modules.likelihoods import nb_cell_log_lik_logits

    rng = np.random.default_rng(0)
    X = sp.random(256, 4000, density=0.15, format="csr", random_state=1, data_rvs=lambda n: rng.integers(1, 30, n))
    counts = CellData(X).batch(torch.arange(256)).counts
    logits = torch.randn(256, 4000, generator=torch.Generator().manual_seed(2))
    log_l = torch.log(torch.as_tensor(X.sum(1), dtype=torch.float32))
    threads = torch.get_num_threads()
    results = []
    try:
        for n in (1, 2, 1, 2):
            torch.set_num_threads(n)
            params = [logits.clone().requires_grad_(), torch.linspace(-1.0, 2.0, 4000, requires_grad=True)]
            value = nb_cell_log_lik_logits(counts, params[0], log_l, params[1])
            results.append([value.detach(), *torch.autograd.grad(value.mean(), params)])
    finally:
        torch.set_num_threads(threads)
    for other in results[1:]:
        assert all(torch.equal(a, b) for a, b in zip(results[0], other, strict=True))


def test_per_gene_dispersion_gradient_is_the_same_on_every_run_with_several_threads():
    """The per-gene log theta is gathered at every stored count (genes repeat); with advanced indexing its gradient
    was accumulated in a thread-dependent order, so two trainings of the demo's LDVAE with one seed on 2 threads
    differed. Large enough a batch (~150k stored counts) for the CPU kernels to split the work."""
    import numpy as np
    import scipy.sparse as sp

    from scmix.models.modules.counts import CellData
    from scmix.models.modules.likelihoods import nb_cell_log_lik, zinb_cell_log_lik

    rng = np.random.default_rng(0)
    X = sp.random(256, 4000, density=0.15, format="csr", random_state=1, data_rvs=lambda n: rng.integers(1, 30, n))
    counts = CellData(X).batch(torch.arange(256)).counts
    log_mu = torch.randn(256, 4000, generator=torch.Generator().manual_seed(2))
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        grads = []
        for _ in range(3):
            log_theta = torch.linspace(-1.0, 2.0, 4000, requires_grad=True)
            pi = torch.zeros(256, 4000, requires_grad=True)
            (nb_cell_log_lik(counts, log_mu, log_theta).sum() + zinb_cell_log_lik(counts, log_mu, log_theta, pi).sum()
             ).backward()  # fmt: skip
            grads.append(log_theta.grad.clone())
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(grads[0], g) for g in grads[1:])


def test_heldout_likelihood_of_a_deep_cell_is_exact_in_float64():
    """~1.2 M counts per cell: the per-cell NB log-likelihood is a sum of terms of ~1e7, where float32 is off by
    about a nat (float32's spacing there); the trained-model interface sums it in float64 and matches
    torch.distributions to 1e-6."""
    import anndata as ad
    import pandas as pd
    import scipy.sparse as sp

    from scmix.models.modelspec import resolve
    from scmix.models.modules import build_model
    from scmix.models.modules.counts import CellData
    from scmix.models.trained import TrainedModel

    rng = np.random.default_rng(0)
    n_genes = 3000
    torch.manual_seed(0)
    module = build_model("ldvae", n_genes=n_genes, n_latent=4, hidden=[16]).eval()
    with torch.no_grad():
        module.lik.log_theta.fill_(1.0)
    counts = sp.csr_matrix(rng.poisson(1.2e6 * rng.dirichlet(np.full(n_genes, 0.3)), (3, n_genes)).astype(np.float32))
    assert counts.sum(1).min() > 1.1e6
    cells = ad.AnnData(counts, var=pd.DataFrame(index=[f"g{i}" for i in range(n_genes)]))
    spec = resolve("m", {"architecture": "ldvae", "n_latent": 4, "hidden": [16]})
    model = TrainedModel.from_module(module, spec=spec, genes=cells.var_names)
    nll = model.heldout_likelihood(cells, n_samples=2)["recon_nll"].to_numpy()

    wide = copy.deepcopy(module).double()
    x = torch.as_tensor(counts.toarray(), dtype=torch.float64)
    with torch.no_grad():
        mu = x.sum(1, keepdim=True) * torch.softmax(wide.px(wide.z_mean(wide.encoder(torch.log1p(x)))), 1)
        theta = torch.exp(wide.lik.log_theta[0]).expand_as(mu)
        ref = -torch.distributions.NegativeBinomial(theta, logits=torch.log(mu) - torch.log(theta)).log_prob(x).sum(1)
        in_float32 = module(CellData(counts).batch(torch.arange(3)))["recon"].double()
    np.testing.assert_allclose(nll, ref.numpy(), rtol=0, atol=1e-6)
    assert (in_float32 - ref).abs().max() > 0.1  # the float32 sum of the same cells is visibly off (~1 nat)


# -------------------------------------------------------------------------------------- the observation models
def test_the_likelihood_classes_are_the_allowed_values_and_know_which_model_counts():
    from scmix.models.modelspec import COUNT_LIKELIHOODS, LIKELIHOODS
    from scmix.models.modules.likelihoods import LIKELIHOOD_CLASSES

    assert tuple(LIKELIHOOD_CLASSES) == LIKELIHOODS
    assert tuple(name for name, cls in LIKELIHOOD_CLASSES.items() if cls.counts) == COUNT_LIKELIHOODS


@pytest.mark.parametrize("name", ["nb", "zinb", "poisson"])
def test_each_count_likelihood_gives_p0_and_samples_of_its_distribution(name):
    """P(0) against torch.distributions; the mean and zero fraction of many draws against mu and P(0)."""
    from scmix.models.modules.likelihoods import LIKELIHOOD_CLASSES

    torch.manual_seed(0)
    genes, hidden = 6, 4
    lik = LIKELIHOOD_CLASSES[name](genes, hidden)
    if hasattr(lik, "log_theta"):
        with torch.no_grad():
            lik.log_theta.copy_(torch.linspace(-1.0, 1.5, genes)[None])
    h = torch.randn(1, hidden).expand(20000, hidden)
    out = {"logits": torch.linspace(-1.0, 1.0, genes).expand(20000, genes).clone(), **lik.heads(h)}
    log_l = torch.full((20000, 1), np.log(30.0))
    mu = torch.exp(lik.log_mean(out, log_l))[0]
    p0 = lik.zero_probability(None, out, log_l)[0]
    if name == "poisson":
        ref = torch.distributions.Poisson(mu).log_prob(torch.zeros(genes)).exp()
    else:
        theta = torch.exp(lik.log_theta[0])
        ref = torch.distributions.NegativeBinomial(theta, logits=torch.log(mu) - torch.log(theta)).log_prob(
            torch.zeros(genes)).exp()  # fmt: skip
        if name == "zinb":
            pi = torch.sigmoid(out["pi_logits"][0])
            ref, mu = pi + (1 - pi) * ref, (1 - pi) * mu
    torch.testing.assert_close(p0, ref, rtol=1e-5, atol=1e-6)
    draws = lik.sample(None, out, log_l)
    assert torch.equal(draws, draws.round()) and (draws >= 0).all()
    torch.testing.assert_close(draws.mean(0), mu, rtol=0.05, atol=0.05)
    torch.testing.assert_close((draws == 0).float().mean(0), p0, rtol=0, atol=0.02)


def test_a_new_likelihood_is_one_class_and_the_vae_needs_no_change(monkeypatch):
    """A geometric likelihood (NB with theta = 1) registered beside the others trains, scores P(0) and generates
    through an unchanged VAE: the VAE holds no likelihood-specific code."""
    from scmix.models.modules import VAE, likelihoods
    from scmix.models.modules.counts import CellData

    class Geometric(likelihoods.Likelihood):
        def cell_log_lik(self, batch, out, log_l):
            zero = torch.zeros(batch.counts.n_genes)
            return likelihoods.nb_cell_log_lik(batch.counts, self.log_mean(out, log_l), zero)

        def zero_probability(self, batch, out, log_l):
            return torch.exp(likelihoods.nb_log_zero(self.log_mean(out, log_l), torch.zeros(())))

        def sample(self, batch, out, log_l):
            mu = torch.exp(self.log_mean(out, log_l))
            return torch.poisson(torch.distributions.Gamma(1.0, 1.0 / mu.clamp(min=1e-8)).sample())

    monkeypatch.setitem(likelihoods.LIKELIHOOD_CLASSES, "geometric", Geometric)
    x, _, _, _ = _random(cells=64, genes=30)
    torch.manual_seed(0)
    model = VAE(30, n_latent=3, hidden=[16], likelihood="geometric")
    batch = CellData(x.numpy()).batch(torch.arange(64))
    out = model(batch)
    out["recon"].mean().backward()
    assert model.px.weight.grad.abs().sum() > 0
    model.eval()
    assert model.counts_model and model.zero_probability(batch).shape == (64, 30)
    assert model.generate(5).shape == (5, 30)


def test_a_checkpoint_with_the_likelihood_parameters_at_the_top_level_still_loads():
    """State dicts written before the parameters moved into VAE.lik (log_theta, px_dropout.*, log_var)."""
    from scmix.models.modules import VAE

    torch.manual_seed(0)
    for likelihood, keys in (
        ("zinb", ["log_theta", "px_dropout.weight", "px_dropout.bias"]),
        ("gaussian", ["log_var"]),
    ):
        model = VAE(12, n_latent=2, hidden=[8], likelihood=likelihood)
        state = model.state_dict()
        state = {k: v + 1.0 if v.is_floating_point() else v for k, v in state.items()}
        legacy = {k.replace("lik.pi.", "px_dropout.").replace("lik.", ""): v for k, v in state.items()}
        assert set(keys) <= set(legacy)
        fresh = VAE(12, n_latent=2, hidden=[8], likelihood=likelihood)
        fresh.load_state_dict(legacy)
        for k, v in fresh.state_dict().items():
            torch.testing.assert_close(v, state[k], msg=k)
