"""Rule plot_umap: UMAP of one model's latent of every eval set, coloured by each label column."""

import pandas as pd

from scmix import plots, rulecall
from scmix.latent import umap_coordinates


def main(smk):
    w = smk.wildcards
    table = pd.read_csv(smk.input.latent, sep="\t")
    z = table.filter(regex=r"^z\d+$").to_numpy()
    coords = umap_coordinates(z, seed=int(w.seed))
    table["umap1"], table["umap2"] = coords[:, 0], coords[:, 1]
    keys = [k for k in smk.params.label_keys if k in table and table[k].notna().any()]
    table[keys] = table[keys].fillna("NA")
    plots.umap_panels(
        table, keys, smk.output.png, title=f"{w.model} | {w.mix} | seed {w.seed}: latent of held-out cells"
    )


rulecall.run(main, snakemake)  # noqa: F821
