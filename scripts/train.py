"""Rule train: fit one model on one mix and seed; write the checkpoint and the per-epoch TSV (rule plot_loss
draws its curve). scmix's models train with scmix.models.train; scvi-tools' (architecture scvi, scvi_linear) with
scvi-tools' own trainer (scmix.models.scvi_models)."""

import logging

import torch

from scmix import rulecall
from scmix.errors import ScmixInputError
from scmix.io import read_h5ad, write_table
from scmix.models.checkpoint import save_checkpoint
from scmix.models.modeldata import checked_counts, model_input
from scmix.models.modelspec import SCVI_ARCHITECTURES, module_kwargs
from scmix.models.train import TrainConfig, TrainingDiverged, build_and_fit, config_dict, resolve_device


def main(smk):
    model_name, mix, seed = smk.wildcards.model, smk.wildcards.mix, int(smk.wildcards.seed)
    torch.set_num_threads(smk.threads)
    spec = dict(smk.params.spec)
    arch = spec["architecture"]
    device = resolve_device(smk.resources.device, setting=f"models.{model_name}.device", model=model_name)
    adata = read_h5ad(smk.input.h5ad, mix=mix)
    X, vocab = checked_counts(adata, spec, name=mix, path=smk.input.h5ad, kind="mix")
    gpu = f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""
    logging.info(
        "training %s (%s, %s likelihood) on mix %s seed %d: %d cells x %d genes on device %s%s, %d threads",
        model_name, arch, spec["likelihood"], mix, seed, adata.n_obs, adata.n_vars, device, gpu,
        torch.get_num_threads(),
    )  # fmt: skip
    match_keys = adata.var["match_key"] if "match_key" in adata.var else adata.var_names
    meta = {
        "match_on": adata.uns.get("mix", {}).get("match_on", "symbols"),
        "gene_keys": [str(k) for k in match_keys],
        "model": model_name,
        "spec": spec,
        "categories": vocab,
        "transform": spec["transform"],
        "mix": mix,
        "seed": seed,
        "device": str(device),
        "n_cells": adata.n_obs,
    }
    if arch in SCVI_ARCHITECTURES:
        from scmix.models.scvi_models import fit_scvi, save_scvi

        model, history, epochs = fit_scvi(X, adata.obs, adata.var_names, spec, seed=seed, device=device, name=mix)
        meta["train"] = {"seed": seed, "epochs": epochs, "lr": spec["lr"], "batch_size": spec["batch_size"]}
        save_scvi(smk.output.model, model, architecture=arch, genes=adata.var_names, meta=meta)
    else:
        cfg = TrainConfig.from_mapping(spec, seed=seed, device=smk.resources.device)
        data = model_input(X, adata.obs, spec, vocab, device=device)
        kwargs = module_kwargs(spec, adata.n_vars, vocab)
        try:
            model, history = build_and_fit(arch, kwargs, data, cfg)
        except TrainingDiverged as err:
            raise ScmixInputError(f"seed {seed}: training diverged: {err}", model=model_name, mix=mix) from None
        meta["train"] = config_dict(cfg)
        save_checkpoint(smk.output.model, model, architecture=arch, model_kwargs=kwargs, genes=adata.var_names,
                        meta=meta)  # fmt: skip
    write_table(history, smk.output.history)


rulecall.run(main, snakemake)  # noqa: F821
