"""Rule summarize: gather every job's table of one kind into one tidy summary table."""

import pandas as pd

from scmix import rulecall
from scmix.io import write_table

KEYS = ["model", "mix", "seed", "eval_set"]


def main(smk):
    table = pd.concat([pd.read_csv(p, sep="\t") for p in smk.input.tables], ignore_index=True)
    by = [k for k in KEYS if k in table]
    write_table(table.sort_values(by, kind="stable"), smk.output.tsv)


rulecall.run(main, snakemake)  # noqa: F821
