"""Rule qc: scanpy QC metrics and filters; writes the filtered h5ad, a table of removals and the per-cell metrics
(before filtering, with the cells kept marked) that rule plot_qc draws."""

import logging

from scmix import rulecall
from scmix.data.qc import cell_metrics, run_qc
from scmix.io import check_integer_counts, counts_matrix, read_h5ad, write_h5ad, write_table
from scmix.study import check_obs_columns, required_obs_columns


def main(smk):
    name = smk.wildcards.dataset
    adata = read_h5ad(smk.input.h5ad, dataset=name)
    # labels the study's models and evaluations will read, checked now rather than at training; read from the
    # config itself (not a param), so that adding a model does not rerun QC
    check_obs_columns(name, adata.obs.columns, required_obs_columns(smk.config)[name])
    if adata.uns.get("count_data", True):  # GEO SOFT values are not counts; count models refuse them later
        check_integer_counts(counts_matrix(adata), dataset=name, path=smk.input.h5ad)
    filtered, report = run_qc(adata, smk.params.qc, dataset=name)  # adds the QC metrics to adata.obs
    report.insert(0, "dataset", name)
    for row in report.itertuples():
        logging.info("%s: %s removed %d cells, %d genes", name, row.step, row.cells_removed, row.genes_removed)
    write_table(report, smk.output.report)
    write_table(cell_metrics(adata, filtered), smk.output.metrics, index=True)
    write_h5ad(filtered, smk.output.h5ad)


rulecall.run(main, snakemake)  # noqa: F821
