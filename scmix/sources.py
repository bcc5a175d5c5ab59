"""Dataset sources: each turns a config entry into an AnnData of raw integer counts."""

from __future__ import annotations

from collections.abc import Mapping

import anndata as ad

from scmix.errors import ScmixInputError
from scmix.io import as_csr_counts, check_integer_counts
from scmix.simulate import Universe, simulate_dataset


def acquire(name: str, spec: Mapping, simulation: Mapping) -> ad.AnnData:
    source = spec.get("source")
    if source == "simulated":
        universe = Universe(simulation.get("n_genes", 2000), simulation.get("seed", 0))
        adata = simulate_dataset(name, spec, universe)
    else:
        raise ScmixInputError(f"unknown source type '{source}'", dataset=name)
    check_integer_counts(adata.X, dataset=name)
    adata.X = as_csr_counts(adata.X)
    adata.obs["dataset"] = name
    adata.uns["dataset"] = name
    return adata
