"""Rule plot_heatmap: a summary metric as a heatmap mix x eval set, one panel per model."""

import pandas as pd

from scmix import plots, rulecall

LABELS = {"pearson_mean": "mean per-cell Pearson r", "marginal_ll": "held-out log p(x) per cell (nats)"}


def main(smk):
    table = pd.read_csv(smk.input.tsv, sep="\t")
    value = smk.params.value
    if "cell_type" in table:
        table = table[table["cell_type"] == "all"]
    plots.metric_heatmap(table.dropna(subset=[value]), smk.output.png, value, label=LABELS.get(value, value))


rulecall.run(main, snakemake)  # noqa: F821
