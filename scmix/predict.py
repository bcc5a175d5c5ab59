"""What a trained model says about cells: reconstructions, held-out likelihoods, zero probabilities, latents
and generated cells. Runs the torch model; the metrics on these outputs live in ``scmix.evaluate`` and
``scmix.synthetic``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from scmix import transforms
from scmix.modeldata import cell_data, encode


def _data(model, meta: dict, counts, obs, device):
    """The cells as the model reads them: counts in its gene order, its category codes, its transform."""
    transform = meta.get("spec", {}).get("transform") if not model.counts_model else None
    return cell_data(sp.csr_matrix(counts), obs, transform=transform, vocab=meta.get("categories") or {},
                     device=device)  # fmt: skip


def _generator(seed: int, device) -> torch.Generator:
    return torch.Generator(device=torch.device(device)).manual_seed(int(seed))


def reconstructed_proportions(model, meta: dict, counts, obs, *, device="cpu", batch_size: int = 1024,
                              sample: bool = False, seed: int = 0) -> np.ndarray:  # fmt: skip
    """rho-hat per cell (rows sum to one), at the posterior mean of z or (``sample``) one draw of it.

    ``counts`` are in the model's gene order; ``obs`` gives the covariates of a conditional model
    (categories it never saw get the "unknown" code). A Gaussian model's output is mapped back from its
    transform space with ``transforms.to_proportions``.
    """
    counts = sp.csr_matrix(counts)
    data = _data(model, meta, counts, obs, device)
    gen = _generator(seed, device)
    model.eval()
    with torch.no_grad():
        out = np.concatenate([model.reconstruct(b, sample=sample, generator=gen).cpu().numpy()
                              for b in data.batches(batch_size)])  # fmt: skip
    if model.counts_model:
        return out
    return transforms.to_proportions(out, meta["spec"]["transform"], counts)


def heldout_likelihood(model, meta: dict, counts, obs, *, n_samples: int = 100, device="cpu", seed: int = 0,
                       batch_size: int = 256) -> pd.DataFrame:  # fmt: skip
    """Per cell: reconstruction NLL at the posterior mean (as in training's validation), a Monte Carlo ELBO
    and the importance-sampled log p(x) from ``n_samples`` draws of q (both in nats; higher is better).

    Count models only; a Gaussian model's densities are over transformed values, not counts, so its rows
    are NaN rather than numbers that look comparable.
    """
    n = counts.shape[0]
    if not model.counts_model:
        return pd.DataFrame({"recon_nll": np.full(n, np.nan), "elbo": np.nan, "marginal_ll": np.nan})
    data = _data(model, meta, counts, obs, device)
    gen = _generator(seed, device)
    model.eval()
    parts = []
    with torch.no_grad():
        for b in data.batches(batch_size):
            log_w = model.log_importance_weights(b, n_samples, generator=gen)
            parts.append(
                torch.stack([
                    model(b)["recon"],
                    log_w.mean(0),
                    torch.logsumexp(log_w, 0) - np.log(n_samples),
                ], 1).cpu().numpy()
            )  # fmt: skip
    values = np.concatenate(parts)
    return pd.DataFrame(values.astype(np.float64), columns=["recon_nll", "elbo", "marginal_ll"])


def expected_zero_fraction(model, meta: dict, counts, obs, *, device="cpu", batch_size: int = 1024) -> np.ndarray:
    """Per gene, the model's mean probability of a zero count over these cells (NaN for a Gaussian model)."""
    if not model.counts_model:
        return np.full(counts.shape[1], np.nan)
    data = _data(model, meta, counts, obs, device)
    model.eval()
    total = torch.zeros(counts.shape[1], dtype=torch.float64, device=torch.device(device))
    with torch.no_grad():
        for b in data.batches(batch_size):
            total += model.zero_probability(b).double().sum(0)
    return (total / max(counts.shape[0], 1)).cpu().numpy()


def latent_means(model, meta: dict, counts, obs, *, device="cpu", batch_size: int = 1024) -> np.ndarray:
    """Posterior means of z (cells x n_latent)."""
    data = _data(model, meta, counts, obs, device)
    model.eval()
    with torch.no_grad():
        return np.concatenate([model.latent(b).cpu().numpy() for b in data.batches(batch_size)])


def generate_cells(model, meta: dict, train_obs: pd.DataFrame, label_key: str, n_per_label: int, *,
                   seed: int = 0, device="cpu") -> tuple[sp.csr_matrix, np.ndarray]:  # fmt: skip
    """``n_per_label`` cells for each ``label_key`` category the model was trained on (counts, labels).

    The model's other conditions (donor, batch, dataset, ...) are drawn, per label, from the training
    cells of that label, so each synthetic cell has a combination of conditions that occurred in training.
    The library size comes from the model's log-normal library prior.
    """
    vocab = meta.get("categories") or {}
    if label_key not in vocab:
        raise ValueError(f"model '{meta.get('model')}' is not conditioned on '{label_key}' (conditions: {list(vocab)})")
    torch.manual_seed(int(seed))
    rng = np.random.default_rng(seed)
    labels = train_obs[label_key].astype(str).to_numpy()
    blocks, out_labels = [], []
    model.eval()
    for label in vocab[label_key]:
        rows = rng.choice(np.flatnonzero(labels == label), size=n_per_label, replace=True)
        codes = encode(train_obs.iloc[rows], vocab)
        counts = model.generate(n_per_label, codes=torch.as_tensor(codes, device=torch.device(device)))
        blocks.append(sp.csr_matrix(counts.cpu().numpy()))
        out_labels += [label] * n_per_label
    return sp.vstack(blocks).tocsr(), np.asarray(out_labels)
