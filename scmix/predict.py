"""A trained model's reconstruction of held-out cells, as per-cell proportions for every likelihood."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from scmix import transforms
from scmix.modeldata import cell_data


def reconstructed_proportions(model, meta: dict, counts, obs, *, device="cpu", batch_size: int = 1024) -> np.ndarray:
    """rho-hat per cell (rows sum to one) at the posterior mean of z.

    ``counts`` are in the model's gene order; ``obs`` gives the covariates of a conditional model
    (categories it never saw get the "unknown" code). A Gaussian model's output is mapped back from its
    transform space with ``transforms.to_proportions``.
    """
    counts = sp.csr_matrix(counts)
    transform = meta.get("spec", {}).get("transform")
    data = cell_data(counts, obs, transform=transform, vocab=meta.get("categories") or {}, device=device)
    model.eval()
    with torch.no_grad():
        out = np.concatenate([model.reconstruct(b).cpu().numpy() for b in data.batches(batch_size)])
    return transforms.to_proportions(out, transform, counts) if transform else out
