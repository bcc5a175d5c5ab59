"""Rule qc: scanpy QC metrics and filters; writes the filtered h5ad and a table of removals."""

import logging

from scmix import rulecall
from scmix.io import check_integer_counts, counts_matrix, read_h5ad, write_h5ad, write_table
from scmix.qc import run_qc


def main(smk):
    name = smk.wildcards.dataset
    adata = read_h5ad(smk.input.h5ad, dataset=name)
    check_integer_counts(counts_matrix(adata), dataset=name, path=smk.input.h5ad)
    filtered, report = run_qc(adata, smk.params.qc)
    report.insert(0, "dataset", name)
    for row in report.itertuples():
        logging.info("%s: %s removed %d cells, %d genes", name, row.step, row.cells_removed, row.genes_removed)
    write_table(report, smk.output.report)
    write_h5ad(filtered, smk.output.h5ad)


rulecall.run(main, snakemake)  # noqa: F821
