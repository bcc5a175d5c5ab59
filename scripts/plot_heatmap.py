"""Rule plot_heatmap: a summary metric as a heatmap mix x eval set, one panel per model."""

import pandas as pd

from scmix import rulecall
from scmix.plots.evaluation import metric_heatmap


def main(smk):
    table = pd.read_csv(smk.input.tsv, sep="\t")
    if "cell_type" in table:
        table = table[table["cell_type"] == "all"]
    metric_heatmap(table, smk.output.png, smk.params.value)  # its label from scmix.plots.style.METRIC_LABELS


rulecall.run(main, snakemake)  # noqa: F821
