"""Rule evaluate: one trained model on one held-out eval set — reconstruction accuracy, held-out
likelihood, per-gene residuals and zero calibration."""

import logging

import torch

from scmix import rulecall
from scmix.checkpoint import load_checkpoint
from scmix.evaluate import (
    gene_fit,
    gene_fit_summary,
    likelihood_summary,
    model_counts,
    reconstruction_accuracy,
    summarise,
)
from scmix.io import read_h5ad, write_table
from scmix.predict import expected_zero_fraction, heldout_likelihood, reconstructed_proportions
from scmix.train import resolve_device


def main(smk):
    w = smk.wildcards
    torch.set_num_threads(smk.threads)
    p = smk.params
    seed = int(w.seed)
    device = resolve_device(smk.resources.device)
    model, ckpt = load_checkpoint(smk.input.model, device=device)
    adata = read_h5ad(smk.input.eval, dataset=w.eval_set)
    counts, overlap = model_counts(adata, ckpt, min_overlap=p.min_gene_overlap, name=w.eval_set,
                                   path=smk.input.eval)  # fmt: skip
    keys = {"model": w.model, "mix": w.mix, "seed": seed, "eval_set": w.eval_set}

    sample = p.reconstruction == "sample"
    rho = reconstructed_proportions(model, ckpt["meta"], counts, adata.obs, device=device, sample=sample, seed=seed)
    per_cell = reconstruction_accuracy(counts, rho, n_top_genes=p.n_top_genes, genes=p.reconstruction_genes)
    like = heldout_likelihood(model, ckpt["meta"], counts, adata.obs, n_samples=p.likelihood_samples,
                              device=device, seed=seed)  # fmt: skip
    per_cell = per_cell.join(like)
    per_cell.insert(0, "cell_id", adata.obs_names.to_numpy())
    per_cell.insert(1, "cell_type", adata.obs["cell_type"].astype(str).to_numpy() if "cell_type" in adata.obs
                    else "unknown")  # fmt: skip
    for key, value in keys.items():
        per_cell[key] = value
    summary = summarise(per_cell, list(keys))
    summary["gene_overlap"] = overlap
    likelihood = likelihood_summary(per_cell, list(keys))
    likelihood.insert(4, "likelihood", ckpt["meta"]["spec"]["likelihood"])
    likelihood["n_samples"] = p.likelihood_samples

    genes = gene_fit(counts, rho, expected_zero_fraction(model, ckpt["meta"], counts, adata.obs, device=device))
    genes.insert(0, "gene", [str(g) for g in ckpt["genes"]])
    logging.info(
        "%s | %s | seed %s on %s (%d cells, gene overlap %.1f%%): mean Pearson r %.4f; per cell reconstruction "
        "NLL %.2f, ELBO %.2f, log p(x) %.2f (%d samples); median explained variance %.3f; zero fraction "
        "observed - expected %.4f",
        w.model, w.mix, w.seed, w.eval_set, len(per_cell), 100 * overlap, per_cell["pearson"].mean(),
        like["recon_nll"].mean(), like["elbo"].mean(), like["marginal_ll"].mean(), p.likelihood_samples,
        genes["explained_variance"].median(),
        (genes["observed_zero_fraction"] - genes["expected_zero_fraction"]).mean(),
    )  # fmt: skip
    write_table(per_cell, smk.output.cells)
    write_table(summary, smk.output.summary)
    write_table(likelihood, smk.output.likelihood)
    write_table(genes, smk.output.genes)
    write_table(gene_fit_summary(genes, keys), smk.output.gene_summary)


rulecall.run(main, snakemake)  # noqa: F821
