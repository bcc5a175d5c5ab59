"""Rule synthetic: a conditional model's synthetic cells judged by XGBoost against real cells of one eval set."""

import logging

import pandas as pd
import torch

from scmix import rulecall
from scmix import synthetic as syn
from scmix.errors import ScmixInputError
from scmix.evaluate import sparse_log1p_cp10k, top_variable_genes
from scmix.io import read_h5ad, read_label_map, write_table
from scmix.train import resolve_device
from scmix.trained import load


def labels_of(adata, key, path, **where):
    if key not in adata.obs:
        raise ScmixInputError(f"synthetic utility needs obs column '{key}' (has {list(adata.obs.columns)})",
                              path=path, **where)  # fmt: skip
    return adata.obs[key].astype(str).to_numpy()


def main(smk):
    w = smk.wildcards
    torch.set_num_threads(smk.threads)
    p = smk.params
    seed, key = int(w.seed), p.label_key
    device = resolve_device(smk.resources.device)
    xgb_device = "cuda" if device.type == "cuda" else "cpu"
    model = load(smk.input.model, device=device)
    train = read_h5ad(smk.input.mix, mix=w.mix)
    held = read_h5ad(smk.input.eval, dataset=w.eval_set)
    X_train = model.prepare(train, min_overlap=1.0, name=w.mix, kind="mix", path=smk.input.mix).counts
    X_held = model.prepare(held, min_overlap=p.min_gene_overlap, name=w.eval_set, path=smk.input.eval).counts
    y_train = labels_of(train, key, smk.input.mix, mix=w.mix)
    y_held = labels_of(held, key, smk.input.eval, dataset=w.eval_set)

    X_synth, y_synth = model.generate(train.obs, key, p.cells_per_label, seed=seed)
    log_train = sparse_log1p_cp10k(X_train)  # per cell: its rows are those of any subset of the cells
    features = top_variable_genes(log_train, p.n_features)  # the classifier's genes, over all training cells
    rows = syn.classifier_rows(len(y_train), p.max_train_cells, seed)
    y_train = y_train[rows]
    logs = (log_train[rows], sparse_log1p_cp10k(X_held), sparse_log1p_cp10k(X_synth))
    real_train, real_held, synth = (syn.feature_matrix(logx, features) for logx in logs)
    logging.info("%s | %s | seed %d on %s: %d real training (of %d in the mix), %d real held-out, %d synthetic "
                 "cells (%d per label); %d feature genes", w.model, w.mix, seed, w.eval_set, len(y_train),
                 train.n_obs, len(y_held), len(y_synth), p.cells_per_label, len(features))  # fmt: skip

    levels = [("fine", y_train, y_held, y_synth)]
    if smk.input.get("label_map"):
        m = read_label_map(smk.input.label_map)
        named = ((y_train, {"mix": w.mix}), (y_held, {"dataset": w.eval_set}), (y_synth, {"model": w.model}))
        levels.append(("coarse", *(syn.coarse_labels(y, m, path=smk.input.label_map, **d) for y, d in named)))
    parts = []
    for level, a, b, c in levels:
        scores = syn.utility(real_train, a, real_held, b, synth, c, seed=seed, device=xgb_device, n_jobs=smk.threads)
        scores.insert(0, "level", level)
        parts.append(scores)
        macro = scores.query("`class` == 'macro' and metric == 'f1'").set_index("setting")["value"]
        logging.info("%s level macro F1: real->real %.3f, real->synthetic %.3f, synthetic->real %.3f", level,
                     macro["real_to_real"], macro["real_to_synthetic"], macro["synthetic_to_real"])  # fmt: skip
    shared = pd.Series(y_held).isin(set(y_synth)).to_numpy()
    auc = syn.discriminator_auc(real_held[shared], synth, seed=seed, device=xgb_device, n_jobs=smk.threads)
    logging.info("real-vs-synthetic discriminator AUC %.3f (0.5 = indistinguishable)", auc)
    parts.append(pd.DataFrame([{"level": "all", "setting": "discriminator", "class": "all", "metric": "auc",
                                "value": auc}]))  # fmt: skip
    table = pd.concat(parts, ignore_index=True)
    for i, (k, v) in enumerate((("model", w.model), ("mix", w.mix), ("seed", seed), ("eval_set", w.eval_set))):
        table.insert(i, k, v)
    write_table(table, smk.output.tsv)


rulecall.run(main, snakemake)  # noqa: F821
