"""Rule evaluate: one trained model on every held-out eval set, one after another — reconstruction accuracy,
held-out likelihood, per-gene residuals and zero calibration, a set of tables per eval set — then the latent space
of all eval sets together: posterior means as an AnnData (obsm X_scmix, and the UMAP of that latent as obsm X_umap
for the seed the UMAPs are drawn for) and silhouette scores. The model is loaded once; each eval set's cells are
prepared (and moved to the device) once, and the model's expression is scored a chunk of cells at a time
(evaluation.chunk_cells)."""

import logging

import numpy as np
import pandas as pd
import torch

from scmix import rulecall
from scmix.evaluation.latent import latent_scores, umap_coordinates
from scmix.evaluation.metrics import evaluate_cells, gene_fit_summary, likelihood_summary, summarise
from scmix.evaluation.ppc import CHECKS, CheckAccumulator, top_variable
from scmix.io import read_h5ad, write_h5ad, write_table
from scmix.models.loading import load_for_config
from scmix.models.train import resolve_device
from scmix.models.trained import latent_adata
from scmix.settings import HOLDOUT_COLUMN


def evaluate_set(model, adata, cells, eval_set, keys, p):
    """The six tables of one eval set, by name (the rule's outputs)."""
    seed = keys["seed"]
    sample = p.reconstruction == "sample"
    per_cell, fit = evaluate_cells(model, cells, n_top_genes=p.n_top_genes, genes=p.reconstruction_genes,
                                   chunk_cells=p.chunk_cells, sample=sample, seed=seed)  # fmt: skip
    like = model.heldout_likelihood(cells, n_samples=p.likelihood_samples, seed=seed)
    per_cell = per_cell.join(like)
    per_cell.insert(0, "cell_id", adata.obs_names.to_numpy())
    per_cell.insert(1, "cell_type", adata.obs["cell_type"].astype(str).to_numpy() if "cell_type" in adata.obs
                    else "unknown")  # fmt: skip
    for key, value in keys.items():
        per_cell[key] = value
    # the cells split.holdout_cell_types sent to this eval set: cell types kept out of its dataset's training cells
    per_cell[HOLDOUT_COLUMN] = (adata.obs[HOLDOUT_COLUMN].astype(bool).to_numpy() if HOLDOUT_COLUMN in adata.obs
                                else False)  # fmt: skip
    summary = summarise(per_cell, list(keys))
    summary["gene_overlap"] = cells.overlap
    likelihood = likelihood_summary(per_cell, list(keys))
    likelihood.insert(4, "likelihood", model.likelihood)
    likelihood["n_samples"] = p.likelihood_samples

    checks = posterior_check(model, cells, keys, p)
    genes = fit.table(model.zero_probability(cells, batch_size=p.chunk_cells))
    genes.insert(0, "gene", list(model.genes))
    logging.info(
        "%s | %s | seed %s on %s (%d cells, gene overlap %.1f%%): mean Pearson r %.4f; per cell reconstruction "
        "NLL %.2f, ELBO %.2f, log p(x) %.2f (%d samples); median explained variance %.3f; zero fraction "
        "observed - expected %.4f",
        keys["model"], keys["mix"], seed, eval_set, len(per_cell), 100 * cells.overlap, per_cell["pearson"].mean(),
        like["recon_nll"].mean(), like["elbo"].mean(), like["marginal_ll"].mean(), p.likelihood_samples,
        genes["explained_variance"].median(),
        (genes["observed_zero_fraction"] - genes["expected_zero_fraction"]).mean(),
    )  # fmt: skip
    return {"cells": per_cell, "summary": summary, "likelihood": likelihood, "genes": genes,
            "gene_summary": gene_fit_summary(genes, keys), "ppc": checks}  # fmt: skip


def posterior_check(model, cells, keys, p) -> pd.DataFrame:
    """One row: the posterior-predictive checks of a count model on the eval set's cells (one replicate of each
    cell against the cell; scmix.evaluation.ppc), NaN for a model of transformed values."""
    row = dict(keys)
    if model.counts_model:
        acc = CheckAccumulator(len(model.genes), top_variable(cells.counts, p.ppc_genes))
        for start, replicate in model.posterior_predictive(cells, chunk_cells=p.chunk_cells, seed=keys["seed"]):
            acc.add(cells.counts[start : start + len(replicate)], replicate)
        row.update(acc.summary())
        logging.info("posterior-predictive check on %s: gene means r %.3f, zero fractions MAE %.4f, library KS %.3f, "
                     "gene-gene correlation distance %.3f (%d genes)", keys["eval_set"], row["mean_corr"],
                     row["zero_fraction_mae"], row["library_ks"], row["corr_distance"], row["n_top_genes"])  # fmt: skip
    else:
        row.update(dict.fromkeys(CHECKS, np.nan))
    return pd.DataFrame([row])


def latent_obs(adata, eval_set, keys) -> pd.DataFrame:
    """One row per cell of an eval set: its id, the eval set and the latent's label columns (None where absent)."""
    obs = pd.DataFrame({"cell_id": adata.obs_names.to_numpy(), "eval_set": eval_set})
    for k in keys:
        if k != "eval_set":
            obs[k] = adata.obs[k].astype(str).to_numpy() if k in adata.obs else None
    return obs


def write_latent(model, zs, obs, smk):
    """latent.h5ad and the silhouette scores of every eval set's posterior means, together."""
    w, p = smk.wildcards, smk.params
    z, obs = np.concatenate(zs), pd.concat(obs, ignore_index=True)
    scores = latent_scores(z, obs, list(p.latent_keys), seed=int(w.seed))
    for i, (k, v) in enumerate((("model", w.model), ("mix", w.mix), ("seed", int(w.seed)))):
        scores.insert(i, k, v)
    for row in scores.itertuples():
        logging.info("silhouette by %s on %s: %.3f (%d cells, %d labels)", row.key, row.eval_set, row.silhouette,
                     row.n_cells, row.n_labels)  # fmt: skip
    umap = umap_coordinates(z, seed=int(w.seed)) if p.umap else None
    # one row per eval cell: a cell in two eval sets keeps both rows, told apart by the eval set in its name
    obs.index = pd.Index((obs["eval_set"] + ":" + obs["cell_id"].astype(str)).to_numpy())
    write_h5ad(latent_adata(z, obs.astype({k: "category" for k in obs.columns if k != "cell_id"}), model=model,
                            umap=umap), smk.output.latent)  # fmt: skip
    write_table(scores, smk.output.latent_scores)


def main(smk):
    w = smk.wildcards
    torch.set_num_threads(smk.threads)
    p = smk.params
    device = resolve_device(smk.resources.device, setting="evaluation.device")
    model = load_for_config(smk.input.model, model=w.model, architecture=p.architecture, device=device)
    zs, obs = [], []
    for i, (eval_set, path) in enumerate(zip(p.eval_sets, smk.input.eval, strict=True)):
        keys = {"model": w.model, "mix": w.mix, "seed": int(w.seed), "eval_set": eval_set}
        adata = read_h5ad(path, dataset=eval_set)
        cells = model.prepare(adata, min_overlap=p.min_gene_overlap, name=eval_set, path=path)
        for name, table in evaluate_set(model, adata, cells, eval_set, keys, p).items():
            write_table(table, smk.output[name][i])
        zs.append(model.latent(cells, batch_size=p.chunk_cells))
        obs.append(latent_obs(adata, eval_set, p.latent_keys))
    write_latent(model, zs, obs, smk)


rulecall.run(main, snakemake)  # noqa: F821
