"""Rule download: acquire one dataset as raw counts (the simulated source generates it)."""

from scmix import rulecall
from scmix.io import write_h5ad
from scmix.sources import acquire


def main(smk):
    adata = acquire(smk.wildcards.dataset, smk.params.spec, smk.params.simulation)
    write_h5ad(adata, smk.output.h5ad)


rulecall.run(main, snakemake)  # noqa: F821
