"""Rule qc: scanpy QC metrics and filters; writes the filtered h5ad, a table of removals and a before/after plot."""

import logging

from scmix import rulecall
from scmix.io import check_integer_counts, counts_matrix, read_h5ad, write_h5ad, write_table
from scmix.plots import qc_scatter
from scmix.qc import plot_thresholds, qc_params, run_qc


def main(smk):
    name = smk.wildcards.dataset
    adata = read_h5ad(smk.input.h5ad, dataset=name)
    if adata.uns.get("count_data", True):  # GEO SOFT values are not counts; count models refuse them later
        check_integer_counts(counts_matrix(adata), dataset=name, path=smk.input.h5ad)
    params = qc_params(smk.params.qc)  # QC_DEFAULTS under the config's keys
    filtered, report = run_qc(adata, params)  # adds the QC metrics to adata.obs (the "before" panel)
    report.insert(0, "dataset", name)
    for row in report.itertuples():
        logging.info("%s: %s removed %d cells, %d genes", name, row.step, row.cells_removed, row.genes_removed)
    write_table(report, smk.output.report)
    write_h5ad(filtered, smk.output.h5ad)
    genes = (adata.n_vars, filtered.n_vars)
    drawn = qc_scatter(adata.obs, filtered.obs, smk.output.plot, dataset=name, genes=genes, **plot_thresholds(params))
    logging.info("%s: QC plot %s (%d points before, %d after)", name, smk.output.plot, drawn["before"], drawn["after"])


rulecall.run(main, snakemake)  # noqa: F821
