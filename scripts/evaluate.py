"""Rule evaluate: one trained model on one held-out eval set — reconstruction accuracy, held-out
likelihood, per-gene residuals and zero calibration. The eval cells are prepared (and moved to the device) once,
and the model's expression is scored a chunk of cells at a time (evaluation.chunk_cells)."""

import logging

import torch

from scmix import rulecall
from scmix.evaluate import evaluate_cells, gene_fit_summary, likelihood_summary, summarise
from scmix.io import read_h5ad, write_table
from scmix.train import resolve_device
from scmix.trained import load


def main(smk):
    w = smk.wildcards
    torch.set_num_threads(smk.threads)
    p = smk.params
    seed = int(w.seed)
    model = load(smk.input.model, device=resolve_device(smk.resources.device))
    adata = read_h5ad(smk.input.eval, dataset=w.eval_set)
    cells = model.prepare(adata, min_overlap=p.min_gene_overlap, name=w.eval_set, path=smk.input.eval)
    keys = {"model": w.model, "mix": w.mix, "seed": seed, "eval_set": w.eval_set}

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
    summary = summarise(per_cell, list(keys))
    summary["gene_overlap"] = cells.overlap
    likelihood = likelihood_summary(per_cell, list(keys))
    likelihood.insert(4, "likelihood", model.likelihood)
    likelihood["n_samples"] = p.likelihood_samples

    genes = fit.table(model.zero_probability(cells, batch_size=p.chunk_cells))
    genes.insert(0, "gene", list(model.genes))
    logging.info(
        "%s | %s | seed %s on %s (%d cells, gene overlap %.1f%%): mean Pearson r %.4f; per cell reconstruction "
        "NLL %.2f, ELBO %.2f, log p(x) %.2f (%d samples); median explained variance %.3f; zero fraction "
        "observed - expected %.4f",
        w.model, w.mix, w.seed, w.eval_set, len(per_cell), 100 * cells.overlap, per_cell["pearson"].mean(),
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
