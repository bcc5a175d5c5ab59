"""Reading a trained model back: ``load`` gives the ``TrainedModel`` (``scmix.models.trained``) of a checkpoint
whatever trained it, an scvi-tools architecture as ``scmix.models.scvi_models.ScviModel``; ``load_for_config`` also
refuses a file of another architecture than the config's. ``scmix.load`` is ``load``."""

from __future__ import annotations

from scmix.errors import ScmixInputError
from scmix.models.checkpoint import REBUILD, load_payload, unreadable
from scmix.models.modelspec import ARCHITECTURES, SCVI_ARCHITECTURES
from scmix.models.trained import TrainedModel


def load(path, device="cpu") -> TrainedModel:
    """The trained model at ``path`` (a ``model.pt`` the workflow's rule train wrote), on ``device``."""
    return _from_payload(load_payload(path, device=device), path, device)


def load_for_config(path, *, model: str, architecture: str, device="cpu") -> TrainedModel:
    """``load`` for a rule that runs the config's model ``model`` of ``architecture``: a file of another
    architecture (a stale or misplaced checkpoint) is refused before it is built."""
    payload = load_payload(path, device=device)
    if payload["architecture"] != architecture:
        raise ScmixInputError(
            f"the file holds architecture {payload['architecture']} but the config's model '{model}' has "
            f"architecture {architecture}; {REBUILD} (or set the model's architecture to "
            f"{payload['architecture']})",
            model=model, path=str(path),
        )  # fmt: skip
    return _from_payload(payload, path, device)


def _from_payload(payload: dict, path, device) -> TrainedModel:
    arch = payload["architecture"]
    if arch in SCVI_ARCHITECTURES:
        from scmix.models.scvi_models import ScviModel  # scvi-tools is imported only for its architectures

        return ScviModel.from_payload(payload, device=device, path=path)
    if arch not in ARCHITECTURES:
        raise unreadable(f"architecture '{arch}' is not one of {', '.join(ARCHITECTURES + SCVI_ARCHITECTURES)}", path)
    return TrainedModel.from_payload(payload, device=device, path=path)
