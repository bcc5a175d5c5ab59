"""Rule plot_celltypes: per-cell reconstruction accuracy by cell type for one model."""

import pandas as pd

from scmix import rulecall
from scmix.plots.evaluation import celltype_boxplot


def main(smk):
    cells = pd.concat([pd.read_csv(p, sep="\t") for p in smk.input.cells], ignore_index=True)
    celltype_boxplot(cells, smk.output.png, smk.wildcards.model)


rulecall.run(main, snakemake)  # noqa: F821
