"""Rule mix: draw one training mix for one seed; check that no held-out cell leaks into it, by ID or as the same
cell in another source."""

import logging

from scmix import rulecall
from scmix.data.genes import MIN_SHARED_GENES, read_gene_list, resolve_match_on, shared_keys
from scmix.data.mix import (
    check_no_duplicate_leak,
    check_no_leak,
    cross_source_duplicates,
    drop_cross_source_duplicates,
    make_mix,
    manifest,
    manifest_summary,
    mix_cell_ids,
    qualified_ids,
    warn_same_cells_within,
)
from scmix.io import read_h5ad, write_h5ad, write_json, write_table


def main(smk):
    mix, seed = smk.wildcards.mix, int(smk.wildcards.seed)
    g = smk.params.genes
    # backed: obs and var in memory, the counts read as needed (fingerprints a block of rows at a time, the draw)
    parts = {d: read_h5ad(p, dataset=d, backed=True) for d, p in zip(smk.params.datasets, smk.input.train, strict=True)}
    gene_list = read_gene_list(smk.input.gene_list) if smk.input.get("gene_list") else None
    match_on = g["match_on"]
    min_shared = g.get("min_shared", MIN_SHARED_GENES)
    if smk.params.universe:  # genes.universe: all — the genes every dataset of the study shares
        every = {d: read_h5ad(p, dataset=d, backed=True) for d, p in zip(smk.params.universe, smk.input.universe,
                                                                     strict=True)}  # fmt: skip
        match_on = resolve_match_on(every, match_on, what="the gene universe")
        gene_list = list(shared_keys(every, match_on, gene_list, min_shared=min_shared, what="the gene universe"))
        logging.info("gene universe: %d genes (%s) shared by all %d datasets", len(gene_list), match_on, len(every))
    held = {d: read_h5ad(p, dataset=d, backed=True) for d, p in zip(smk.params.eval_sets, smk.input.eval, strict=True)}
    found = cross_source_duplicates(parts, held, g["match_on"])
    rows, found = drop_cross_source_duplicates(parts, found, smk.params.drop_duplicates)
    adata = make_mix(mix, smk.params.recipe, parts, seed, match_on=match_on, gene_list=gene_list,
                     n_top_genes=g.get("n_top_genes"), hvg_flavor=g["hvg_flavor"],
                     hvg_batch_key=g.get("hvg_batch_key"), min_shared=min_shared, rows=rows)  # fmt: skip
    check_no_leak(mix_cell_ids(adata), {d: qualified_ids(d, h.obs_names) for d, h in held.items()}, mix)
    check_no_duplicate_leak(adata, found, mix)
    warn_same_cells_within(adata, mix)
    logging.info("mix %s seed %d: %d cells x %d genes (matched on %s) %s", mix, seed, adata.n_obs, adata.n_vars,
                 adata.uns["mix"]["match_on"], adata.uns["mix"]["cells_per_dataset"])  # fmt: skip
    tab = manifest(adata)
    tab.insert(0, "seed", seed)
    tab.insert(0, "mix", mix)
    write_table(tab, smk.output.manifest)
    summary = manifest_summary(adata, smk.params.recipe)
    summary["genes_file"] = smk.output.genes
    write_json(summary, smk.output.summary)
    genes = adata.var[[c for c in ("gene_ids", "match_key") if c in adata.var]].copy()
    write_table(genes, smk.output.genes, index=True, index_label="gene")
    write_h5ad(adata, smk.output.h5ad)


rulecall.run(main, snakemake)  # noqa: F821
