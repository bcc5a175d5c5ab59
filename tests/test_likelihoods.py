"""Each likelihood against torch.distributions or its reference formula, and the sparse per-cell forms
against the dense ones (values and gradients)."""

import pytest
import torch

from scmix.models import Batch
from scmix.models.likelihoods import (
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
