"""Rule download: fetch (or, for simulated sources, generate) one dataset's raw files."""

from pathlib import Path

from scmix import rulecall
from scmix.fetch import fetch_dataset


def main(smk):
    # how hard to try (download: retries, timeout) is read from the config, not params: changing it never
    # makes a fetched dataset stale
    settings = smk.config["download"]  # the schema fills in its defaults
    fetch_dataset(smk.wildcards.dataset, smk.params.spec, Path(smk.output.raw), simulation=smk.params.simulation,
                  retries=settings["retries"], timeout=settings["timeout"])  # fmt: skip


rulecall.run(main, snakemake)  # noqa: F821
