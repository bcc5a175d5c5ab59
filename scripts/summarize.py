"""Rule summarize: gather every evaluation job's table into one tidy summary."""

import pandas as pd

from scmix import rulecall
from scmix.io import write_table

COLUMNS = [
    "model",
    "mix",
    "seed",
    "eval_set",
    "cell_type",
    "n_cells",
    "pearson_mean",
    "pearson_median",
    "r2_mean",
    "gene_overlap",
]


def main(smk):
    table = pd.concat([pd.read_csv(p, sep="\t") for p in smk.input.tables], ignore_index=True)
    table = table[COLUMNS].sort_values(["model", "mix", "seed", "eval_set", "cell_type"], kind="stable")
    write_table(table, smk.output.tsv)


rulecall.run(main, snakemake)  # noqa: F821
