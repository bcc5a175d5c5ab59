"""The checkpoint format: weights plus the gene list, config and package version they belong to."""

from __future__ import annotations

import io
import os
from pathlib import Path

import torch

import scmix
from scmix.errors import ScmixInputError, writing
from scmix.io import sibling_tempfile
from scmix.models import build_model

FORMAT = "scmix-checkpoint/1"


def save_checkpoint(path, model, *, architecture: str, model_kwargs: dict, genes, meta: dict) -> None:
    payload = {
        "format": FORMAT,
        "scmix_version": scmix.__version__,
        "torch_version": str(torch.__version__),
        "architecture": architecture,
        "model_kwargs": model_kwargs,
        "genes": [str(g) for g in genes],
        "meta": meta,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
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


def load_checkpoint(path, device="cpu"):
    """Return (model in eval mode, payload without the weights)."""
    try:
        payload = torch.load(path, map_location=device, weights_only=True)
    except Exception as err:  # torch raises several types for corrupt files
        raise ScmixInputError(f"cannot load checkpoint: {err}", path=str(path)) from err
    if payload.get("format") != FORMAT:
        raise ScmixInputError(f"not an {FORMAT} checkpoint (format={payload.get('format')!r})", path=str(path))
    model = build_model(payload["architecture"], **payload["model_kwargs"])
    model.load_state_dict(payload.pop("state_dict"))
    model.to(device).eval()
    return model, payload
