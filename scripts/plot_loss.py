"""Rule plot_loss: one training run's negative ELBO, reconstruction NLL and KL per epoch."""

import pandas as pd

from scmix import plots, rulecall


def main(smk):
    w = smk.wildcards
    history = pd.read_csv(smk.input.history, sep="\t")
    plots.loss_curve(history, smk.output.png, title=f"{w.model} | {w.mix} | seed {w.seed}")


rulecall.run(main, snakemake)  # noqa: F821
