"""Rule loadings: the gene x latent weights of a linear-decoder model (LDVAE, LinearSCVI) as a TSV and as varm of
an AnnData with no cells."""

from scmix import rulecall
from scmix.io import write_h5ad, write_table
from scmix.models.loading import load_for_config
from scmix.models.trained import loadings_adata


def main(smk):
    model = load_for_config(smk.input.model, model=smk.wildcards.model, architecture=smk.params.architecture)
    write_table(model.loadings(), smk.output.tsv, index=True, index_label="gene")
    write_h5ad(loadings_adata(model), smk.output.h5ad)


rulecall.run(main, snakemake)  # noqa: F821
