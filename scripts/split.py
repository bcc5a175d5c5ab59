"""Rule split: cut one QC'd dataset into a training part and a held-out eval part."""

import logging

from scmix import rulecall
from scmix.data.split import describe, split_heldout
from scmix.io import read_h5ad, write_h5ad


def main(smk):
    name = smk.wildcards.dataset
    adata = read_h5ad(smk.input.h5ad, dataset=name)
    p = smk.params.split
    train, held = split_heldout(
        adata, p["eval_fraction"], p["seed"], p["stratify"], method=p["method"], group_key=p["group_key"],
        holdout_cell_types=p["holdout_cell_types"], cell_type_key=p["cell_type_key"], dataset=name,
        # a stratify label the config itself names must exist; the package default only where it does
        stratify_required=smk.params.stratify_required,
    )  # fmt: skip
    logging.info("%s", describe(held.uns["split"], name))
    write_h5ad(train, smk.output.train)
    write_h5ad(held, smk.output.eval)


rulecall.run(main, snakemake)  # noqa: F821
