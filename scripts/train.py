"""Rule train: fit one model on one mix and seed; write checkpoint, per-epoch TSV and loss curve."""

import logging

import pandas as pd
import torch

from scmix import plots, rulecall
from scmix.checkpoint import save_checkpoint
from scmix.io import check_integer_counts, counts_matrix, read_h5ad, write_table
from scmix.train import TrainConfig, build_and_fit, config_dict, resolve_device


def main(smk):
    model_name, mix, seed = smk.wildcards.model, smk.wildcards.mix, int(smk.wildcards.seed)
    torch.set_num_threads(smk.threads)
    adata = read_h5ad(smk.input.h5ad, dataset=mix)
    X = counts_matrix(adata)
    check_integer_counts(X, dataset=f"mix {mix}", path=smk.input.h5ad)
    spec = dict(smk.params.spec)
    cfg = TrainConfig.from_mapping(spec, seed=seed)
    device = resolve_device(cfg.device)
    logging.info(
        "training %s on mix %s seed %d: %d cells x %d genes on device %s (%d threads)",
        model_name,
        mix,
        seed,
        adata.n_obs,
        adata.n_vars,
        device,
        torch.get_num_threads(),
    )
    kwargs = {
        "n_genes": adata.n_vars,
        "n_latent": spec["n_latent"],
        "hidden": list(spec["hidden"]),
        "dropout": spec["dropout"],
        "batch_norm": spec["batch_norm"],
    }
    model, history = build_and_fit(spec["architecture"], kwargs, X, cfg)
    match_keys = adata.var["match_key"] if "match_key" in adata.var else adata.var_names
    meta = {
        "match_on": adata.uns.get("mix", {}).get("match_on", "symbols"),
        "gene_keys": [str(k) for k in match_keys],
        "model": model_name,
        "mix": mix,
        "seed": seed,
        "device": str(device),
        "train": config_dict(cfg),
        "n_cells": adata.n_obs,
    }
    save_checkpoint(
        smk.output.model,
        model,
        architecture=spec["architecture"],
        model_kwargs=kwargs,
        genes=adata.var_names,
        meta=meta,
    )
    write_table(history, smk.output.history)
    loadings = pd.DataFrame(
        model.loadings().cpu().numpy(), index=adata.var_names, columns=[f"z{i}" for i in range(kwargs["n_latent"])]
    )
    write_table(loadings, smk.output.loadings, index=True, index_label="gene")
    plots.loss_curve(history, smk.output.curve, title=f"{model_name} | {mix} | seed {seed}")


rulecall.run(main, snakemake)  # noqa: F821
