"""Rule latent: posterior means of every eval set's cells under one model, as an AnnData (obsm X_scmix, and the
UMAP of that latent as obsm X_umap for the seed the UMAPs are drawn for), and silhouette scores."""

import logging

import numpy as np
import pandas as pd
import torch

from scmix import rulecall
from scmix.io import read_h5ad, write_h5ad, write_table
from scmix.latent import latent_scores, umap_coordinates
from scmix.train import resolve_device
from scmix.trained import latent_adata, load


def main(smk):
    w = smk.wildcards
    torch.set_num_threads(smk.threads)
    p = smk.params
    keys = list(p.label_keys)
    model = load(smk.input.model, device=resolve_device(smk.resources.device))
    zs, obs = [], []
    for eval_set, path in zip(p.eval_sets, smk.input.eval, strict=True):
        adata = read_h5ad(path, dataset=eval_set)
        cells = model.prepare(adata, min_overlap=p.min_gene_overlap, name=eval_set, path=path)
        zs.append(model.latent(cells, batch_size=p.chunk_cells))
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
    umap = umap_coordinates(z, seed=int(w.seed)) if p.umap else None
    # one row per eval cell: a cell in two eval sets keeps both rows, told apart by the eval set in its name
    obs.index = pd.Index((obs["eval_set"] + ":" + obs["cell_id"].astype(str)).to_numpy())
    write_h5ad(latent_adata(z, obs.astype({k: "category" for k in obs.columns if k != "cell_id"}), model=model,
                            umap=umap), smk.output.h5ad)  # fmt: skip
    write_table(scores, smk.output.scores)


rulecall.run(main, snakemake)  # noqa: F821
