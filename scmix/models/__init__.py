"""Torch modules (no I/O). ``build_model`` makes one from a checkpoint's recorded class and kwargs."""

from scmix.models.ldvae import LDVAE

MODEL_CLASSES = {"ldvae": LDVAE}


def build_model(architecture: str, **kwargs):
    try:
        cls = MODEL_CLASSES[architecture]
    except KeyError:
        raise ValueError(f"unknown architecture '{architecture}'; known: {sorted(MODEL_CLASSES)}") from None
    return cls(**kwargs)
