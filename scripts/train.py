"""Rule train: fit one model on one mix and seed; write the checkpoint and the per-epoch TSV (rule plot_loss
draws its curve)."""

import logging

import torch

from scmix import rulecall
from scmix.checkpoint import save_checkpoint
from scmix.io import read_h5ad, write_table
from scmix.modeldata import prepare
from scmix.modelspec import module_kwargs
from scmix.train import TrainConfig, build_and_fit, config_dict, resolve_device


def main(smk):
    model_name, mix, seed = smk.wildcards.model, smk.wildcards.mix, int(smk.wildcards.seed)
    torch.set_num_threads(smk.threads)
    spec = dict(smk.params.spec)
    cfg = TrainConfig.from_mapping(spec, seed=seed, device=smk.resources.device)
    device = resolve_device(cfg.device)
    adata = read_h5ad(smk.input.h5ad, mix=mix)
    data, vocab = prepare(adata, spec, name=mix, kind="mix", path=smk.input.h5ad, device=device)
    gpu = f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""
    logging.info(
        "training %s (%s, %s likelihood) on mix %s seed %d: %d cells x %d genes on device %s%s, %d threads",
        model_name, spec["architecture"], spec["likelihood"], mix, seed, adata.n_obs, adata.n_vars, device, gpu,
        torch.get_num_threads(),
    )  # fmt: skip
    kwargs = module_kwargs(spec, adata.n_vars, vocab)
    model, history = build_and_fit(spec["architecture"], kwargs, data, cfg)
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
        "train": config_dict(cfg),
        "n_cells": adata.n_obs,
    }
    save_checkpoint(smk.output.model, model, architecture=spec["architecture"], model_kwargs=kwargs,
                    genes=adata.var_names, meta=meta)  # fmt: skip
    write_table(history, smk.output.history)


rulecall.run(main, snakemake)  # noqa: F821
