"""Rule plot_qc: total counts against detected genes per cell, before and after QC, with the thresholds."""

import logging

import pandas as pd

from scmix import rulecall
from scmix.data.qc import plot_thresholds
from scmix.plots.data import qc_scatter


def main(smk):
    name = smk.wildcards.dataset
    before = pd.read_csv(smk.input.metrics, sep="\t", index_col=0)
    report = pd.read_csv(smk.input.report, sep="\t")
    genes = (int(report["genes_left"].iloc[0]), int(report["genes_left"].iloc[-1]))
    thresholds = plot_thresholds(smk.params.qc)
    drawn = qc_scatter(before, before[before["kept"]], smk.output.png, dataset=name, genes=genes, **thresholds)
    logging.info("%s: QC plot %s (%d points before, %d after)", name, smk.output.png, drawn["before"], drawn["after"])


rulecall.run(main, snakemake)  # noqa: F821
