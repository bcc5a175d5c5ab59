"""Rule plot_zero_calibration: observed vs model-expected zero fraction per gene on held-out cells."""

import re

import pandas as pd

from scmix import rulecall
from scmix.plots.evaluation import zero_calibration

JOB = re.compile(r"results/eval/(?P<model>[^/]+)/(?P<mix>[^/]+)/seed\d+/(?P<eval_set>[^/]+)\.genes\.tsv$")


def main(smk):
    parts = []
    for path in smk.input.genes:
        parts.append(pd.read_csv(path, sep="\t").assign(**JOB.search(str(path)).groupdict()))
    zero_calibration(pd.concat(parts, ignore_index=True), smk.output.png)


rulecall.run(main, snakemake)  # noqa: F821
