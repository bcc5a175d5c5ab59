"""Rule download: fetch (or, for simulated sources, generate) one dataset's raw files."""

from pathlib import Path

from scmix import rulecall
from scmix.fetch import fetch_dataset


def main(smk):
    fetch_dataset(smk.wildcards.dataset, smk.params.spec, Path(smk.output.raw), simulation=smk.params.simulation,
                  retries=smk.params.retries, timeout=smk.params.timeout)  # fmt: skip


rulecall.run(main, snakemake)  # noqa: F821
