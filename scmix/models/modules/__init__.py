"""Torch modules (no I/O). Every architecture is a setting of ``VAE``; ``build_model`` makes one by name.

* ``vae``: MLP encoder and decoder;
* ``ldvae``: MLP encoder, linear decoder (gene x latent loadings);
* ``cvae``: conditional VAE, categorical conditions as embeddings (needs ``conditions``);
* ``gmvae``: mixture-of-Gaussians prior with ``n_components`` components.
"""

from scmix.models.modules.counts import Batch, CellData, SparseRows
from scmix.models.modules.vae import VAE

PRESETS = {
    "vae": {"decoder": "mlp"},
    "ldvae": {"decoder": "linear"},
    "cvae": {"decoder": "mlp"},
    "gmvae": {"decoder": "mlp", "prior": "gmm"},
}


def build_model(architecture: str, **kwargs) -> VAE:
    try:
        preset = PRESETS[architecture]
    except KeyError:
        raise ValueError(f"unknown architecture '{architecture}'; known: {sorted(PRESETS)}") from None
    if architecture == "cvae" and not kwargs.get("conditions"):
        raise ValueError("architecture 'cvae' needs at least one condition (e.g. conditions: [cell_type])")
    return VAE(**{**preset, **kwargs})


__all__ = ["PRESETS", "Batch", "CellData", "SparseRows", "VAE", "build_model"]
