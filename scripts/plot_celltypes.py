"""Rule plot_celltypes: per-cell reconstruction accuracy by cell type for one model."""

import pandas as pd

from scmix import plots, rulecall


def main(smk):
    cells = pd.concat([pd.read_csv(p, sep="\t") for p in smk.input.cells], ignore_index=True)
    plots.celltype_boxplot(cells, smk.output.png, smk.wildcards.model)


rulecall.run(main, snakemake)  # noqa: F821
