"""The checkpoint format: weights plus the gene list, config and package version they belong to.

``save_checkpoint`` writes one atomically; ``scmix.load`` (``scmix.models.loading``) reads one back as a model."""

from __future__ import annotations

import io
import os
import re
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


REBUILD = "delete it and rerun the train rule that writes it"


def unreadable(why: str, path) -> ScmixInputError:
    """The one line for a file that is not a checkpoint scmix can read: why, and to rebuild it."""
    return ScmixInputError(f"not a readable scmix checkpoint ({why}); {REBUILD}", path=str(path))


def _why_unloadable(err: Exception) -> str:
    """What torch's refusal means, in words of our own (torch's advice is to unpickle with code enabled)."""
    found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(err))
    if found:
        return (f"it asks to import {found.group(1)}; a checkpoint holds only weights and plain data, and scmix "
                f"never runs code from a model file")  # fmt: skip
    if isinstance(err, EOFError):
        return "the file is empty or cut short"
    return "not a torch checkpoint, or cut short"


def load_payload(path, device="cpu") -> dict:
    """The checkpoint's contents (weights under ``state_dict``); ``scmix.load`` makes a model of them.

    Read with torch's weights-only unpickler: tensors and plain data (dicts, lists, strings, numbers) only, so
    nothing in a file can run code. A file that is not such a checkpoint is one ``ScmixInputError``."""
    try:
        payload = torch.load(path, map_location=device, weights_only=True)
    except FileNotFoundError:
        raise ScmixInputError("no such model file", path=str(path)) from None
    except IsADirectoryError:
        raise unreadable("a folder, not a file", path) from None
    except Exception as err:  # torch raises several types for corrupt files
        raise unreadable(_why_unloadable(err), path) from None
    if not isinstance(payload, dict):
        raise unreadable(f"it holds a {type(payload).__name__}, not a checkpoint's fields", path)
    if payload.get("format") != FORMAT:
        raise unreadable(f"format {payload.get('format')!r}, not {FORMAT}", path)
    if "scvi_model" in payload:
        # scvi-tools' own model.pt, a pickle that only a code-running unpickler reads
        raise ScmixInputError(
            "holds an scvi-tools model as scvi-tools' own pickled model file (as earlier versions of scmix "
            "stored one), which scmix does not unpickle because a pickle can run code; delete it and rerun the "
            "train rule to retrain it as weights",
            path=str(path),
        )  # fmt: skip
    for key, kind in (("architecture", str), ("genes", list), ("meta", dict), ("model_kwargs", dict),
                      ("state_dict", dict)):  # fmt: skip
        if not isinstance(payload.get(key), kind):
            raise unreadable(f"no {key} ({kind.__name__}) in it", path)
    if not all(isinstance(g, str) for g in payload["genes"]):
        raise unreadable("its gene list holds values that are not names", path)
    if not all(isinstance(k, str) and torch.is_tensor(v) for k, v in payload["state_dict"].items()):
        raise unreadable("its state_dict holds values that are not tensors", path)
    return payload
