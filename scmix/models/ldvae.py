"""LDVAE: an MLP encoder to a Gaussian latent and a linear decoder to gene proportions.

As in Svensson et al. 2020 (scVI's LinearSCVI): the decoder's weights are gene x latent loadings,
the mean count is observed library size x softmax(W z + b), and counts are negative binomial with
one inverse dispersion per gene.
"""

from __future__ import annotations

import torch
from torch import nn

from scmix.models.likelihoods import nb_log_prob


def mlp(sizes: list[int], dropout: float, batch_norm: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True):
        layers.append(nn.Linear(n_in, n_out))
        if batch_norm:
            layers.append(nn.BatchNorm1d(n_out, momentum=0.1, eps=1e-3))
        layers.append(nn.ReLU())
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


class LDVAE(nn.Module):
    def __init__(
        self,
        n_genes: int,
        n_latent: int = 10,
        hidden: list[int] | tuple[int, ...] = (128, 128),
        dropout: float = 0.1,
        batch_norm: bool = True,
    ):
        super().__init__()
        self.n_genes, self.n_latent = int(n_genes), int(n_latent)
        hidden = [int(h) for h in hidden]
        self.encoder = mlp([self.n_genes, *hidden], dropout, batch_norm)
        self.z_mean = nn.Linear(hidden[-1], self.n_latent)
        self.z_logvar = nn.Linear(hidden[-1], self.n_latent)
        self.decoder = nn.Linear(self.n_latent, self.n_genes)
        self.log_theta = nn.Parameter(torch.zeros(self.n_genes))

    def encode(self, counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(torch.log1p(counts))
        return self.z_mean(h), self.z_logvar(h).clamp(-12.0, 8.0)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Normalised expression rho (rows sum to one)."""
        return torch.softmax(self.decoder(z), dim=-1)

    def loadings(self) -> torch.Tensor:
        """Gene x latent weights of the linear decoder."""
        return self.decoder.weight.detach()

    def forward(self, counts: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-cell reconstruction NLL and KL(q(z|x) || N(0, I)) with one reparameterised sample."""
        mean, logvar = self.encode(counts)
        z = mean + torch.randn_like(mean) * torch.exp(0.5 * logvar) if self.training else mean
        library = counts.sum(dim=1, keepdim=True)
        mu = library * self.decode(z)
        recon = -nb_log_prob(counts, mu, torch.exp(self.log_theta)).sum(dim=1)
        kl = 0.5 * (torch.exp(logvar) + mean.pow(2) - 1.0 - logvar).sum(dim=1)
        return {"recon": recon, "kl": kl, "z_mean": mean}

    @torch.no_grad()
    def normalised_expression(self, counts: torch.Tensor) -> torch.Tensor:
        """rho at the posterior mean of z: the model's reconstruction before library scaling."""
        mean, _ = self.encode(counts)
        return self.decode(mean)
