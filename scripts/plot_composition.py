"""Rule plot_composition: one figure of composition_effects.tsv: a share sweep's dose-response curves, a size
sweep's scaling curves, or the effects heatmap of every share sweep (mean per-cell Pearson r, all eval cells)."""

import pandas as pd

from scmix import rulecall
from scmix.data import composition
from scmix.plots.composition import dose_response, effects_heatmap, scaling_curve


def main(smk):
    table = pd.read_csv(smk.input.tsv, sep="\t", dtype={"added": str, "cell_type": str})
    kind, figure = smk.params.kind, smk.wildcards.figure
    if kind == composition.SHARE:
        dose_response(table, smk.output.png, figure)
    elif kind == composition.SIZE:
        scaling_curve(table, smk.output.png, figure)
    else:
        effects_heatmap(table, smk.output.png)


rulecall.run(main, snakemake)  # noqa: F821
