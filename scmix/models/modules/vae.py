"""One VAE family for every model of the study; the named architectures are settings of it.

* encoder: MLP from log1p(counts) (count likelihoods) or from the transformed input (Gaussian) to a
  Gaussian posterior q(z | x);
* decoder: ``mlp`` (hidden layers) or ``linear`` (LDVAE, Svensson et al. 2020: gene x latent loadings);
  count likelihoods get mean = library x softmax(decoder output), as in scVI;
* likelihood: ``nb``, ``zinb``, ``poisson`` on raw counts, or ``gaussian`` on a transformed input, each a
  class of ``scmix.models.modules.likelihoods`` holding its own parameters (NB/ZINB inverse dispersion per gene or per
  gene and batch, the ZINB dropout head, the Gaussian variance);
* library size: ``observed`` (log total counts as offset) or ``latent`` (log-normal posterior with a
  log-normal prior fitted to the training data);
* conditions (cVAE): categorical covariates as learned embeddings fed to the encoder and/or decoder;
  code 0 is "unknown" (unseen category), trained through condition dropout;
* prior: ``normal`` N(0, I) or ``gmm``, a learned mixture of K Gaussians (GMVAE), with the
  mixture-assignment bound of VaDE (Jiang et al. 2017): q(c | x) = p(c | z).

The module reads no files; the trainer lives in ``scmix.models.train``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from scmix.models.modelspec import DISPERSIONS, INJECTS, LIBRARIES, NORMS
from scmix.models.modules.counts import Batch
from scmix.models.modules.likelihoods import LIKELIHOOD_CLASSES

# state_dict keys of checkpoints written before the likelihood's parameters moved into ``VAE.lik``
_LEGACY_KEYS = {"log_theta": "lik.log_theta", "log_var": "lik.log_var",
                "px_dropout.weight": "lik.pi.weight", "px_dropout.bias": "lik.pi.bias"}  # fmt: skip


def mlp(sizes: list[int], dropout: float, norm: str) -> nn.Sequential:
    layers: list[nn.Module] = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True):
        layers.append(nn.Linear(n_in, n_out))
        if norm == "batch":
            layers.append(nn.BatchNorm1d(n_out, momentum=0.1, eps=1e-3))
        elif norm == "layer":
            layers.append(nn.LayerNorm(n_out, elementwise_affine=False))
        layers.append(nn.ReLU())
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


def _normal_kl(mean, logvar, prior_mean=0.0, prior_logvar=0.0) -> torch.Tensor:
    """KL(N(mean, e^logvar) || N(prior_mean, e^prior_logvar)), summed over the last dimension."""
    inverse_prior_var = torch.exp(-prior_logvar) if torch.is_tensor(prior_logvar) else math.exp(-prior_logvar)
    squared = torch.exp(logvar) + (mean - prior_mean) ** 2
    return 0.5 * (prior_logvar - logvar + squared * inverse_prior_var - 1.0).sum(-1)


class VAE(nn.Module):
    def __init__(
        self,
        n_genes: int,
        n_latent: int = 10,
        hidden: list[int] | tuple[int, ...] = (128, 128),
        *,
        decoder: str = "mlp",
        decoder_hidden: list[int] | None = None,
        likelihood: str = "nb",
        dispersion: str = "gene",
        dispersion_key: str | None = None,
        library: str = "observed",
        dropout: float = 0.1,
        norm: str = "batch",
        covariates: dict[str, int] | None = None,
        conditions: list[str] | tuple[str, ...] = (),
        condition_dim: int = 8,
        inject: str = "both",
        condition_dropout: float = 0.0,
        prior: str = "normal",
        n_components: int = 10,
    ):
        super().__init__()
        self._check(likelihood, dispersion, dispersion_key, library, norm, decoder, inject, prior, covariates,
                    conditions)  # fmt: skip
        self.n_genes, self.n_latent = int(n_genes), int(n_latent)
        self.likelihood, self.dispersion, self.library, self.prior = likelihood, dispersion, library, prior
        self.decoder_kind, self.inject = decoder, inject
        self.covariates = dict(covariates or {})
        self.conditions = list(conditions)
        self.condition_dropout = float(condition_dropout)
        names = list(self.covariates)
        self._condition_cols = [names.index(c) for c in self.conditions]
        gene_batch = dispersion == "gene-batch"

        hidden = [int(h) for h in hidden]
        self.embeddings = nn.ModuleList(nn.Embedding(self.covariates[c] + 1, condition_dim) for c in self.conditions)
        n_cond = condition_dim * len(self.conditions)
        enc_cond = n_cond if inject in ("encoder", "both") else 0
        dec_cond = n_cond if inject in ("decoder", "both") else 0

        self.encoder = mlp([self.n_genes + enc_cond, *hidden], dropout, norm)
        self.z_mean = nn.Linear(hidden[-1], self.n_latent)
        self.z_logvar = nn.Linear(hidden[-1], self.n_latent)
        if library == "latent":
            self.l_encoder = mlp([self.n_genes + enc_cond, hidden[0]], dropout, norm)
            self.l_mean = nn.Linear(hidden[0], 1)
            self.l_logvar = nn.Linear(hidden[0], 1)
        # log-normal library prior, also used to draw library sizes when generating cells
        self.register_buffer("log_library_loc", torch.tensor(0.0))
        self.register_buffer("log_library_scale", torch.tensor(1.0))

        dec_in = self.n_latent + dec_cond
        if decoder == "linear":
            self.decoder_mlp = None
            last = dec_in
        else:
            dec_hidden = [int(h) for h in (decoder_hidden if decoder_hidden is not None else hidden[::-1])]
            self.decoder_mlp = mlp([dec_in, *dec_hidden], 0.0, norm)
            last = dec_hidden[-1]
        self.px = nn.Linear(last, self.n_genes)
        self.lik = LIKELIHOOD_CLASSES[likelihood](
            self.n_genes,
            last,
            dispersion_rows=self.covariates[dispersion_key] if gene_batch else 1,
            dispersion_col=names.index(dispersion_key) if gene_batch else None,
        )
        if prior == "gmm":
            self.prior_logits = nn.Parameter(torch.zeros(n_components))
            self.prior_mean = nn.Parameter(torch.randn(n_components, self.n_latent))
            self.prior_logvar = nn.Parameter(torch.zeros(n_components, self.n_latent))

    @staticmethod
    def _check(likelihood, dispersion, dispersion_key, library, norm, decoder, inject, prior, covariates, conditions):
        choices = {
            "likelihood": (likelihood, tuple(LIKELIHOOD_CLASSES)),
            "dispersion": (dispersion, DISPERSIONS),
            "library": (library, LIBRARIES),
            "norm": (norm, NORMS),
            "decoder": (decoder, ("mlp", "linear")),
            "inject": (inject, INJECTS),
            "prior": (prior, ("normal", "gmm")),
        }
        for key, (value, allowed) in choices.items():
            if value not in allowed:
                raise ValueError(f"{key} '{value}' is not one of {list(allowed)}")
        covariates = covariates or {}
        for c in conditions:
            if c not in covariates:
                raise ValueError(f"condition '{c}' has no category count in covariates {sorted(covariates)}")
        if dispersion == "gene-batch" and dispersion_key not in covariates:
            raise ValueError(f"dispersion gene-batch needs dispersion_key among covariates, got {dispersion_key!r}")
        if not LIKELIHOOD_CLASSES[likelihood].counts and (library == "latent" or dispersion != "gene"):
            raise ValueError(f"the {likelihood} likelihood has no library size or dispersion settings")

    @property
    def counts_model(self) -> bool:
        return self.lik.counts

    def load_state_dict(self, state_dict, *args, **kwargs):
        return super().load_state_dict({_LEGACY_KEYS.get(k, k): v for k, v in state_dict.items()}, *args, **kwargs)

    # -- parts ---------------------------------------------------------------------------------------
    def _embedded(self, batch: Batch) -> torch.Tensor | None:
        if not self.conditions:
            return None
        codes = batch.codes[:, self._condition_cols]
        if self.training and self.condition_dropout > 0:
            keep = torch.rand(codes.shape, device=codes.device) >= self.condition_dropout
            codes = codes * keep
        return torch.cat([emb(codes[:, i]) for i, emb in enumerate(self.embeddings)], dim=1)

    def _encoder_input(self, batch: Batch, emb) -> torch.Tensor:
        x = batch.log1p_counts() if self.counts_model else batch.target
        if emb is not None and self.inject in ("encoder", "both"):
            x = torch.cat([x, emb], dim=1)
        return x

    def _encode(self, batch: Batch):
        """(condition embedding, encoder input, mean and clamped log variance of q(z | x))."""
        emb = self._embedded(batch)
        x_in = self._encoder_input(batch, emb)
        h = self.encoder(x_in)
        return emb, x_in, self.z_mean(h), self.z_logvar(h).clamp(-12.0, 8.0)

    @staticmethod
    def _observed_log_library(batch: Batch) -> torch.Tensor:
        return torch.log(batch.counts.row_sums().clamp(min=1.0))[:, None]

    def _library_posterior(self, x_in: torch.Tensor):
        """Mean and clamped log variance of q(log l | x) (a latent library)."""
        hl = self.l_encoder(x_in)
        return self.l_mean(hl), self.l_logvar(hl).clamp(-12.0, 8.0)

    def _log_library(self, batch: Batch, x_in: torch.Tensor) -> torch.Tensor | None:
        """The log library size a count model decodes with outside training: the observed one, or the posterior
        mean of a latent one; ``None`` for a model of transformed data."""
        if not self.counts_model:
            return None
        if self.library == "observed":
            return self._observed_log_library(batch)
        return self._library_posterior(x_in)[0]

    def decode(self, z: torch.Tensor, emb: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Decoder outputs: ``logits`` (log proportions up to a constant, or the Gaussian mean) and the
        likelihood's own per-cell parameters (``pi_logits`` for ZINB)."""
        if emb is not None and self.inject in ("decoder", "both"):
            z = torch.cat([z, emb], dim=1)
        h = z if self.decoder_mlp is None else self.decoder_mlp(z)
        return {"logits": self.px(h), **self.lik.heads(h)}

    def _kl_z(self, mean, logvar, z) -> torch.Tensor:
        if self.prior == "normal":
            return _normal_kl(mean, logvar)
        log_pi_pz_c = self._log_joint_components(z)
        log_pi = torch.log_softmax(self.prior_logits, 0)
        mk, lvk = self.prior_mean, self.prior_logvar
        gamma = torch.softmax(log_pi_pz_c, dim=1)
        kl_components = 0.5 * (
            lvk - logvar[:, None] + (torch.exp(logvar)[:, None] + (mean[:, None] - mk) ** 2) * torch.exp(-lvk) - 1.0
        ).sum(-1)
        return (gamma * (kl_components + torch.log(gamma + 1e-10) - log_pi)).sum(1)

    # -- the ELBO --------------------------------------------------------------------------------------
    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Per-cell reconstruction NLL and KL terms; one reparameterised sample in training, means in eval."""
        emb, x_in, mean, logvar = self._encode(batch)
        z = mean + torch.randn_like(mean) * torch.exp(0.5 * logvar) if self.training else mean
        kl_z = self._kl_z(mean, logvar, z)
        kl_l = torch.zeros_like(kl_z)
        log_l = None
        if self.counts_model:
            if self.library == "observed":
                log_l = self._observed_log_library(batch)
            else:
                l_mean, l_logvar = self._library_posterior(x_in)
                log_l = l_mean + torch.randn_like(l_mean) * torch.exp(0.5 * l_logvar) if self.training else l_mean
                prior_logvar = 2 * torch.log(self.log_library_scale.double())  # a tensor: no read back to the host
                kl_l = _normal_kl(l_mean, l_logvar, self.log_library_loc, prior_logvar)
        recon = -self.lik.cell_log_lik(batch, self.decode(z, emb), log_l)
        return {"recon": recon, "kl": kl_z + kl_l, "kl_z": kl_z, "kl_l": kl_l, "z_mean": mean}

    # -- uses of a trained model -------------------------------------------------------------------------
    def fit_library_prior(self, library_sizes: torch.Tensor) -> None:
        """Set the log-normal library prior from the training cells' total counts."""
        log_l = torch.log(library_sizes.float().clamp(min=1.0))
        self.log_library_loc.fill_(float(log_l.mean()))
        self.log_library_scale.fill_(max(float(log_l.std()) if log_l.numel() > 1 else 1.0, 1e-3))

    @torch.no_grad()
    def latent(self, batch: Batch) -> torch.Tensor:
        """Posterior mean of z."""
        return self._encode(batch)[2]

    @torch.no_grad()
    def posterior(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and variance of q(z | x) per cell."""
        _, _, mean, logvar = self._encode(batch)
        return mean, torch.exp(logvar)

    @torch.no_grad()
    def posterior_predictive(self, batch: Batch, generator: torch.Generator | None = None) -> torch.Tensor:
        """One replicate of each cell: z ~ q(z | x) (and log l ~ q(log l | x) for a latent library; the observed
        library otherwise), decoded with the cell's conditions, counts drawn from the likelihood (scvi-tools'
        posterior predictive). Count models only; the count draws use torch's global generator."""
        if not self.counts_model:
            raise ValueError("a Gaussian model has no count likelihood to sample replicates from")
        emb, x_in, mean, logvar = self._encode(batch)
        z = mean + torch.exp(0.5 * logvar) * torch.randn(mean.shape, generator=generator, device=mean.device)
        if self.library == "observed":
            log_l = self._observed_log_library(batch)
        else:
            l_mean, l_logvar = self._library_posterior(x_in)
            log_l = l_mean + torch.exp(0.5 * l_logvar) * torch.randn(l_mean.shape, generator=generator,
                                                                     device=l_mean.device)  # fmt: skip
        return self.lik.sample(batch, self.decode(z, emb), log_l)

    @torch.no_grad()
    def normalised_expression(self, batch: Batch | torch.Tensor) -> torch.Tensor:
        """Decoder proportions rho at the posterior mean of z (rows sum to one); count models only."""
        if isinstance(batch, torch.Tensor):
            batch = Batch.from_dense(batch)
        if not self.counts_model:
            raise ValueError("a Gaussian model has no count proportions; use reconstruct()")
        return self.reconstruct(batch)

    @torch.no_grad()
    def reconstruct(self, batch: Batch, sample: bool = False, generator: torch.Generator | None = None):
        """The decoder mean in the model's own space (rho for count models, else the transformed values), at
        the posterior mean of z or, with ``sample``, at one draw z ~ q(z | x) (the datamix study's variant)."""
        emb, _, z, logvar = self._encode(batch)
        if sample:
            std = torch.exp(0.5 * logvar)
            z = z + std * torch.randn(z.shape, generator=generator, device=z.device)
        logits = self.decode(z, emb)["logits"]
        return torch.softmax(logits, dim=1) if self.counts_model else logits

    def _log_prior_z(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z) per cell: N(0, I), or the mixture of Gaussians of the GMVAE prior."""
        if self.prior == "normal":
            return -0.5 * (math.log(2 * math.pi) + z**2).sum(-1)
        return torch.logsumexp(self._log_joint_components(z), dim=1)

    def _log_joint_components(self, z: torch.Tensor) -> torch.Tensor:
        """log pi_c + log N(z; mu_c, sigma_c^2) per cell and mixture component (GMVAE prior)."""
        log_pi = torch.log_softmax(self.prior_logits, 0)
        lvk = self.prior_logvar
        log_pz_c = -0.5 * (math.log(2 * math.pi) + lvk + (z[:, None] - self.prior_mean) ** 2 * torch.exp(-lvk)).sum(-1)
        return log_pi + log_pz_c

    @torch.no_grad()
    def log_importance_weights(self, batch: Batch, n_samples: int, generator: torch.Generator | None = None):
        """(n_samples, cells) log weights log p(x, z, l) - log q(z, l | x) with (z, l) ~ q(z, l | x).

        Their mean over samples is a Monte Carlo ELBO; logsumexp - log(n_samples) the importance-sampled
        estimate of log p(x) (IWAE, Burda et al. 2016), never below that ELBO for the same samples. For a
        conditional model the conditions are given (p(x | c)); a latent library enters as a second latent.
        """
        emb, x_in, mean, logvar = self._encode(batch)
        std = torch.exp(0.5 * logvar)
        latent_library = self.counts_model and self.library == "latent"
        if latent_library:
            l_mean, l_logvar = self._library_posterior(x_in)
            l_std = torch.exp(0.5 * l_logvar)
        else:
            log_l = self._log_library(batch, x_in)
        weights = []
        for _ in range(int(n_samples)):
            eps = torch.randn(mean.shape, generator=generator, device=mean.device)
            z = mean + std * eps
            log_w = self._log_prior_z(z) + 0.5 * (math.log(2 * math.pi) + logvar + eps**2).sum(-1)
            if latent_library:
                eps_l = torch.randn(l_mean.shape, generator=generator, device=l_mean.device)
                log_l = l_mean + l_std * eps_l
                prior = torch.distributions.Normal(self.log_library_loc, self.log_library_scale)
                posterior = torch.distributions.Normal(l_mean, l_std)
                log_w = log_w + (prior.log_prob(log_l) - posterior.log_prob(log_l))[:, 0]
            weights.append(log_w + self.lik.cell_log_lik(batch, self.decode(z, emb), log_l))
        return torch.stack(weights)

    @torch.no_grad()
    def zero_probability(self, batch: Batch) -> torch.Tensor:
        """P(x = 0) per cell and gene under the model at the posterior mean of z (and of a latent library)."""
        emb, x_in, z, _ = self._encode(batch)
        return self.lik.zero_probability(batch, self.decode(z, emb), self._log_library(batch, x_in))

    def loadings(self) -> torch.Tensor:
        """Gene x latent weights of a linear decoder."""
        if self.decoder_kind != "linear":
            raise ValueError("only a linear decoder (LDVAE) has gene loadings")
        return self.px.weight[:, : self.n_latent].detach()

    @torch.no_grad()
    def generate(self, n: int, codes: torch.Tensor | None = None, library: torch.Tensor | None = None,
                 z: torch.Tensor | None = None):  # fmt: skip
        """Draw ``n`` cells from the generative model: z from the prior (or ``z``), the library from its
        log-normal prior (or ``library``), then counts from the likelihood (values in the transformed space for
        Gaussian). ``codes``: (n, n_covariates) category codes (1-based; 0 = unknown) for a conditional model."""
        device = self.px.weight.device
        if z is not None:
            z = torch.as_tensor(z, dtype=torch.float32, device=device).reshape(n, self.n_latent)
        elif self.prior == "normal":
            z = torch.randn(n, self.n_latent, device=device)
        else:
            comp = torch.multinomial(torch.softmax(self.prior_logits, 0), n, replacement=True)
            z = self.prior_mean[comp] + torch.randn(n, self.n_latent, device=device) * torch.exp(
                0.5 * self.prior_logvar[comp]
            )
        batch = None
        if self.covariates:
            if codes is None:
                raise ValueError(f"a conditional model needs codes for {list(self.covariates)} to generate")
            batch = Batch(None, torch.as_tensor(codes, device=device).reshape(n, -1))
        was_training = self.training
        self.eval()
        try:
            emb = None if batch is None or not self.conditions else self._embedded(batch)
            out = self.decode(z, emb)
        finally:
            self.train(was_training)
        if not self.counts_model:
            log_l = None
        elif library is None:
            log_l = self.log_library_loc + self.log_library_scale * torch.randn(n, 1, device=device)
        else:
            log_l = torch.log(torch.as_tensor(library, dtype=torch.float32, device=device).reshape(n, 1))
        return self.lik.sample(batch, out, log_l)
