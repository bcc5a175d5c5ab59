"""Rule download: fetch (or, for simulated sources, generate) one dataset's raw files."""

from pathlib import Path

from scmix import rulecall
from scmix.data.fetch import fetch_dataset


def main(smk):
    # how hard to try (download: retries, timeout) and how far an archive may expand (max_expansion) are read
    # from the config, not params: changing them never makes a fetched dataset stale
    settings = smk.config["download"]  # the schema fills in its defaults
    fetch_dataset(smk.wildcards.dataset, smk.params.spec, Path(smk.output.raw), simulation=smk.params.simulation,
                  retries=settings["retries"], timeout=settings["timeout"],
                  max_expansion=settings["max_expansion"])  # fmt: skip


rulecall.run(main, snakemake)  # noqa: F821
