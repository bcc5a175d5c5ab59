"""Rule parse: turn one dataset's raw files into an h5ad of raw integer counts with every label."""

from scmix import rulecall
from scmix.io import write_h5ad
from scmix.sources import parse_dataset


def main(smk):
    write_h5ad(parse_dataset(smk.wildcards.dataset, smk.params.spec, smk.input.raw), smk.output.h5ad)


rulecall.run(main, snakemake)  # noqa: F821
