"""Rule plot_posterior_checks: four posterior-predictive checks as heatmaps mix x eval set, per model."""

import pandas as pd

from scmix import rulecall
from scmix.plots.evaluation import posterior_checks


def main(smk):
    posterior_checks(pd.read_csv(smk.input.tsv, sep="\t"), smk.output.png)


rulecall.run(main, snakemake)  # noqa: F821
