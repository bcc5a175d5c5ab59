"""Rule evaluate: reconstruction accuracy of one trained model on one held-out eval set."""

import logging

import torch

from scmix import rulecall
from scmix.checkpoint import load_checkpoint
from scmix.evaluate import reconstruction_accuracy, reindex_to_genes, summarise
from scmix.genes import gene_keys
from scmix.io import check_integer_counts, read_h5ad, write_table
from scmix.predict import reconstructed_proportions
from scmix.train import resolve_device


def main(smk):
    w = smk.wildcards
    torch.set_num_threads(smk.threads)
    p = smk.params.evaluation
    device = resolve_device(p.get("device", "auto"))
    model, ckpt = load_checkpoint(smk.input.model, device=device)
    adata = read_h5ad(smk.input.eval, dataset=w.eval_set)
    match_on = ckpt["meta"].get("match_on", "symbols")
    model_keys = ckpt["meta"].get("gene_keys", ckpt["genes"])
    counts, overlap = reindex_to_genes(adata, model_keys, keys=gene_keys(adata, match_on),
                                       min_overlap=p["min_gene_overlap"], eval_set=w.eval_set)  # fmt: skip
    check_integer_counts(counts, dataset=w.eval_set, path=smk.input.eval)
    rho = reconstructed_proportions(model, ckpt["meta"], counts, adata.obs, device=device)
    per_cell = reconstruction_accuracy(counts, rho, n_top_genes=p["n_top_genes"])
    per_cell.insert(0, "cell_id", adata.obs_names.to_numpy())
    per_cell["cell_type"] = adata.obs["cell_type"].astype(str).to_numpy() if "cell_type" in adata.obs else "unknown"
    for key, value in (("model", w.model), ("mix", w.mix), ("seed", int(w.seed)), ("eval_set", w.eval_set)):
        per_cell[key] = value
    summary = summarise(per_cell, ["model", "mix", "seed", "eval_set"])
    summary["gene_overlap"] = overlap
    logging.info(
        "%s | %s | seed %s on %s: mean Pearson r %.4f over %d cells (gene overlap %.1f%%)",
        w.model,
        w.mix,
        w.seed,
        w.eval_set,
        per_cell["pearson"].mean(),
        len(per_cell),
        100 * overlap,
    )
    write_table(per_cell, smk.output.cells)
    write_table(summary, smk.output.summary)


rulecall.run(main, snakemake)  # noqa: F821
