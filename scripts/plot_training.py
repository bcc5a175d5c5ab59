"""Rule plot_training: the validation curves of every training run in one figure."""

import re

import pandas as pd

from scmix import rulecall
from scmix.plots.training import training_curves

RUN = re.compile(r"results/models/(?P<model>[^/]+)/(?P<mix>[^/]+)/seed(?P<seed>\d+)/history\.tsv$")


def main(smk):
    parts = []
    for path in smk.input.histories:
        run = RUN.search(str(path)).groupdict()
        parts.append(pd.read_csv(path, sep="\t").assign(model=run["model"], mix=run["mix"], seed=int(run["seed"])))
    training_curves(pd.concat(parts, ignore_index=True), smk.output.png)


rulecall.run(main, snakemake)  # noqa: F821
