"""Rule plot_posterior_checks: four posterior-predictive checks as heatmaps mix x eval set, per model."""

import pandas as pd

from scmix import plots, rulecall


def main(smk):
    plots.posterior_checks(pd.read_csv(smk.input.tsv, sep="\t"), smk.output.png)


rulecall.run(main, snakemake)  # noqa: F821
