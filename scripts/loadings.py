"""Rule loadings: the gene x latent weights of a linear-decoder model (LDVAE) as a TSV."""

import pandas as pd

from scmix import rulecall
from scmix.checkpoint import load_checkpoint
from scmix.io import write_table


def main(smk):
    model, ckpt = load_checkpoint(smk.input.model)
    weights = model.loadings().cpu().numpy()
    table = pd.DataFrame(weights, index=ckpt["genes"], columns=[f"z{i}" for i in range(weights.shape[1])])
    write_table(table, smk.output.tsv, index=True, index_label="gene")


rulecall.run(main, snakemake)  # noqa: F821
