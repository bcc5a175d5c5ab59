"""Rule plot_synthetic: macro F1 of the three synthetic-utility settings and the discriminator AUC."""

import pandas as pd

from scmix import rulecall
from scmix.plots.evaluation import synthetic_f1_bars


def main(smk):
    synthetic_f1_bars(pd.read_csv(smk.input.tsv, sep="\t", keep_default_na=False, na_values=[""]),
                            smk.output.png)  # fmt: skip


rulecall.run(main, snakemake)  # noqa: F821
