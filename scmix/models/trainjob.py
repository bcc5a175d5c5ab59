"""What a training job does around the trainer: one seed's mix read and checked, the checkpoint's record of it, the
trainer's arguments for scmix's architectures, and that seed's checkpoint and history written.

Rule train (``scripts/train.py``: one model, mix and seed per job) and rule train_seeds (``scripts/train_seeds.py``:
every seed of a model on a mix in one job, ``models.NAME.seeds_together``) both run these functions, so a seed's
files are the same whichever rule trained it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch

from scmix.errors import ScmixInputError
from scmix.io import read_h5ad, write_table
from scmix.models.checkpoint import save_checkpoint
from scmix.models.modeldata import checked_counts, model_input
from scmix.models.modelspec import module_kwargs
from scmix.models.train import TrainConfig, TrainingDiverged, config_dict, resolve_device

log = logging.getLogger("scmix.models.trainjob")


def job_device(model: str, device_setting: str, threads: int) -> torch.device:
    """The job's torch threads set, and the device of the model's ``device`` setting (a missing GPU is bad input)."""
    torch.set_num_threads(threads)
    return resolve_device(device_setting, setting=f"models.{model}.device", model=model)


class TrainerArgs(NamedTuple):
    """What ``scmix.models.train.build_and_fit`` takes after the architecture: the module's constructor arguments,
    its input on the training device and the trainer's config."""

    kwargs: dict
    data: object  # scmix.models.modules.counts.CellData
    cfg: TrainConfig


@dataclass
class SeedRun:
    """One seed's training of a model on a mix: the mix's cells (checked raw counts and the covariates' vocabulary)
    and ``meta``, what the checkpoint records of them."""

    model: str
    mix: str
    seed: int
    spec: dict
    adata: object  # anndata.AnnData
    X: object  # scipy.sparse.csr_matrix of raw counts
    vocab: dict
    meta: dict
    device: torch.device

    @classmethod
    def read(cls, path, spec: Mapping, *, model: str, mix: str, seed: int, device: torch.device) -> SeedRun:
        """The mix file of one seed, read and checked, and logged."""
        spec = dict(spec)
        adata = read_h5ad(path, mix=mix)
        X, vocab = checked_counts(adata, spec, name=mix, path=str(path), kind="mix")
        gpu = f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""
        log.info(
            "training %s (%s, %s likelihood) on mix %s seed %d: %d cells x %d genes on device %s%s, %d threads",
            model, spec["architecture"], spec["likelihood"], mix, seed, adata.n_obs, adata.n_vars, device, gpu,
            torch.get_num_threads(),
        )  # fmt: skip
        match_keys = adata.var["match_key"] if "match_key" in adata.var else adata.var_names
        meta = {
            "match_on": adata.uns.get("mix", {}).get("match_on", "symbols"),
            "gene_keys": [str(k) for k in match_keys],
            "model": model,
            "spec": spec,
            "categories": vocab,
            "transform": spec["transform"],
            "mix": mix,
            "seed": seed,
            "device": str(device),
            "n_cells": adata.n_obs,
        }
        return cls(model, mix, seed, spec, adata, X, vocab, meta, device)

    def trainer_args(self, device_setting: str) -> TrainerArgs:
        """The trainer's arguments for this seed's model of an scmix architecture (``device_setting``: the model's
        ``device``, which the checkpoint records)."""
        cfg = TrainConfig.from_mapping(self.spec, seed=self.seed, device=device_setting)
        data = model_input(self.X, self.adata.obs, self.spec, self.vocab, device=self.device)
        return TrainerArgs(module_kwargs(self.spec, self.adata.n_vars, self.vocab), data, cfg)

    def write(self, net, history, args: TrainerArgs, *, model_path, history_path) -> None:
        """A trained scmix model's checkpoint and its per-epoch history."""
        meta = {**self.meta, "train": config_dict(args.cfg)}
        save_checkpoint(model_path, net, architecture=self.spec["architecture"], model_kwargs=args.kwargs,
                        genes=self.adata.var_names, meta=meta)  # fmt: skip
        write_table(history, history_path)


def diverged(err: TrainingDiverged, *, model: str, mix: str, seeds: Sequence[int]) -> ScmixInputError:
    """The one line of a training that diverged, naming the model, mix and seed (and the seeds trained with it)."""
    seed = seeds[0] if err.seed is None else err.seed  # fit_many names the seed of a run it trained with others
    together = "" if len(seeds) == 1 else f" (trained together with seeds {', '.join(map(str, seeds))})"
    return ScmixInputError(f"seed {seed}{together}: training diverged: {err}", model=model, mix=mix)
