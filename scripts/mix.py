"""Rule mix: draw one training mix for one seed; check that no held-out cell leaks into it."""

import logging

import anndata as ad

from scmix import rulecall
from scmix.io import read_h5ad, write_h5ad, write_table
from scmix.mix import check_no_leak, make_mix, manifest


def main(smk):
    mix, seed = smk.wildcards.mix, int(smk.wildcards.seed)
    parts = {d: read_h5ad(p, dataset=d) for d, p in zip(smk.params.datasets, smk.input.train, strict=True)}
    adata = make_mix(mix, smk.params.recipe, parts, seed)
    eval_ids = {
        d: ad.read_h5ad(p, backed="r").obs_names for d, p in zip(smk.params.eval_sets, smk.input.eval, strict=True)
    }
    check_no_leak(adata.obs["source_cell_id"], eval_ids, mix)
    logging.info(
        "mix %s seed %d: %d cells x %d genes %s",
        mix,
        seed,
        adata.n_obs,
        adata.n_vars,
        adata.uns["mix"]["cells_per_dataset"],
    )
    tab = manifest(adata)
    tab.insert(0, "seed", seed)
    tab.insert(0, "mix", mix)
    write_table(tab, smk.output.manifest)
    write_h5ad(adata, smk.output.h5ad)


rulecall.run(main, snakemake)  # noqa: F821
