"""Rule plot_umap: the UMAP (obsm X_umap of the latent AnnData) of one model's held-out cells, coloured by each
label column."""

import anndata as ad

from scmix import rulecall
from scmix.plots.evaluation import umap_panels


def main(smk):
    w = smk.wildcards
    latent = ad.read_h5ad(smk.input.latent)
    table = latent.obs.astype(object).reset_index(drop=True)
    table["umap1"], table["umap2"] = latent.obsm["X_umap"][:, 0], latent.obsm["X_umap"][:, 1]
    keys = [k for k in smk.params.label_keys if k in table and table[k].notna().any()]
    table[keys] = table[keys].fillna("NA")
    umap_panels(table, keys, smk.output.png, title=f"{w.model} | {w.mix} | seed {w.seed}: latent of held-out cells")


rulecall.run(main, snakemake)  # noqa: F821
