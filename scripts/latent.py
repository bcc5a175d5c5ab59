"""Rule latent: posterior means of every eval set's cells under one model, and silhouette scores."""

import logging

import numpy as np
import pandas as pd
import torch

from scmix import rulecall
from scmix.checkpoint import load_checkpoint
from scmix.evaluate import model_counts
from scmix.io import read_h5ad, write_table
from scmix.latent import latent_scores
from scmix.predict import latent_means
from scmix.train import resolve_device


def main(smk):
    w = smk.wildcards
    torch.set_num_threads(smk.threads)
    p = smk.params
    keys = list(p.label_keys)
    device = resolve_device(smk.resources.device)
    model, ckpt = load_checkpoint(smk.input.model, device=device)
    zs, obs = [], []
    for eval_set, path in zip(smk.params.eval_sets, smk.input.eval, strict=True):
        adata = read_h5ad(path, dataset=eval_set)
        counts, _ = model_counts(adata, ckpt, min_overlap=p.min_gene_overlap, name=eval_set, path=path)
        zs.append(latent_means(model, ckpt["meta"], counts, adata.obs, device=device))
        o = pd.DataFrame({"cell_id": adata.obs_names.to_numpy(), "eval_set": eval_set})
        for k in keys:
            if k != "eval_set":
                o[k] = adata.obs[k].astype(str).to_numpy() if k in adata.obs else None
        obs.append(o)
    z, obs = np.concatenate(zs), pd.concat(obs, ignore_index=True)
    scores = latent_scores(z, obs, keys, seed=int(w.seed))
    for i, (k, v) in enumerate((("model", w.model), ("mix", w.mix), ("seed", int(w.seed)))):
        scores.insert(i, k, v)
    for row in scores.itertuples():
        logging.info("silhouette by %s on %s: %.3f (%d cells, %d labels)", row.key, row.eval_set, row.silhouette,
                     row.n_cells, row.n_labels)  # fmt: skip
    table = obs.join(pd.DataFrame(z, columns=[f"z{i + 1}" for i in range(z.shape[1])]))
    write_table(table, smk.output.latent)
    write_table(scores, smk.output.scores)


rulecall.run(main, snakemake)  # noqa: F821
