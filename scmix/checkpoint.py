"""The checkpoint format: weights plus the gene list, config and package version they belong to.

``save_checkpoint`` writes one atomically; ``scmix.load`` (``scmix.trained``) reads one back as a model."""

from __future__ import annotations

import io
import os
from pathlib import Path

import torch

import scmix
from scmix.errors import ScmixInputError, writing
from scmix.io import sibling_tempfile

FORMAT = "scmix-checkpoint/1"


def save_checkpoint(path, model, *, architecture: str, model_kwargs: dict, genes, meta: dict) -> None:
    save_payload(path, {
        "format": FORMAT,
        "architecture": architecture,
        "model_kwargs": model_kwargs,
        "genes": [str(g) for g in genes],
        "meta": meta,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    })  # fmt: skip


def save_payload(path, payload: dict) -> None:
    """Write a checkpoint's contents (with the package versions) atomically: a sibling temp file, then a rename."""
    payload = {**payload, "scmix_version": scmix.__version__, "torch_version": str(torch.__version__)}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = sibling_tempfile(path)
    try:
        # serialised in memory, then written by Python: torch's own writer turns a full disk into a RuntimeError
        buffer = io.BytesIO()
        torch.save(payload, buffer)
        with writing(path), open(tmp, "wb") as fh:
            fh.write(buffer.getbuffer())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_payload(path, device="cpu") -> dict:
    """The checkpoint's contents (weights under ``state_dict``); ``scmix.load`` makes a model of them."""
    try:
        payload = torch.load(path, map_location=device, weights_only=True)
    except FileNotFoundError:
        raise ScmixInputError("no such model file", path=str(path)) from None
    except Exception as err:  # torch raises several types for corrupt files
        raise ScmixInputError(f"cannot load checkpoint: {err}", path=str(path)) from err
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise ScmixInputError(f"not an {FORMAT} checkpoint (format={found!r})", path=str(path))
    return payload
