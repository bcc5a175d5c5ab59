"""Log-likelihoods of count models, per cell and gene."""

from __future__ import annotations

import torch


def nb_log_prob(x: torch.Tensor, mu: torch.Tensor, theta: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Negative binomial log-probability with mean ``mu`` and inverse dispersion ``theta``.

    log NB(x; mu, theta) = lgamma(x + theta) - lgamma(theta) - lgamma(x + 1)
                           + theta * log(theta / (theta + mu)) + x * log(mu / (theta + mu))
    """
    log_theta_mu = torch.log(theta + mu + eps)
    return (
        torch.lgamma(x + theta)
        - torch.lgamma(theta)
        - torch.lgamma(x + 1.0)
        + theta * (torch.log(theta + eps) - log_theta_mu)
        + x * (torch.log(mu + eps) - log_theta_mu)
    )
