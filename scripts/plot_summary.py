"""Rule plot_reconstruction: heatmap of mean reconstruction accuracy, mix x eval set."""

import pandas as pd

from scmix import plots, rulecall


def main(smk):
    plots.accuracy_heatmap(pd.read_csv(smk.input.tsv, sep="\t"), smk.output.png)


rulecall.run(main, snakemake)  # noqa: F821
