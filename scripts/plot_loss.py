"""Rule plot_loss: one training run's negative ELBO, reconstruction NLL and KL per epoch."""

import pandas as pd

from scmix import rulecall
from scmix.plots.training import loss_curve


def main(smk):
    w = smk.wildcards
    history = pd.read_csv(smk.input.history, sep="\t")
    loss_curve(history, smk.output.png, title=f"{w.model} | {w.mix} | seed {w.seed}")


rulecall.run(main, snakemake)  # noqa: F821
