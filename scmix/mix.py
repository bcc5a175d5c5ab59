"""Training-set mixing: a recipe of datasets and fractions, a total size, and a seed."""

from __future__ import annotations

import zlib
from collections.abc import Mapping

import anndata as ad
import numpy as np
import pandas as pd

from scmix.errors import ScmixInputError


def recipe_counts(recipe: Mapping, available: Mapping[str, int], mix: str) -> dict[str, int]:
    """Cells to draw per dataset: fractions of ``total_cells`` rounded by largest remainder.

    Fails, with the numbers, when a dataset has fewer training cells than the recipe asks for.
    """
    fractions = {d: float(f) for d, f in recipe["datasets"].items()}
    total = int(recipe["total_cells"])
    s = sum(fractions.values())
    if not np.isclose(s, 1.0, atol=1e-6):
        raise ScmixInputError(f"mix '{mix}': dataset fractions sum to {s:g}, not 1")
    raw = {d: total * f for d, f in fractions.items()}
    counts = {d: int(np.floor(v)) for d, v in raw.items()}
    short = total - sum(counts.values())
    for d in sorted(raw, key=lambda d: raw[d] - counts[d], reverse=True)[:short]:
        counts[d] += 1
    if not recipe.get("replace", False):
        for d, n in counts.items():
            if n > available[d]:
                raise ScmixInputError(
                    f"mix '{mix}' asks for {n} cells of dataset '{d}' "
                    f"({fractions[d]:g} x {total}) but its training split holds only {available[d]}; "
                    "lower total_cells or set replace: true"
                )
    return counts


def shared_genes(parts: Mapping[str, ad.AnnData]) -> pd.Index:
    """Genes present in every part, in the order of the first part."""
    names = list(parts)
    genes = parts[names[0]].var_names
    for d in names[1:]:
        genes = genes[genes.isin(parts[d].var_names)]
    if len(genes) == 0:
        raise ScmixInputError(f"datasets {names} share no genes")
    return genes


def make_mix(mix: str, recipe: Mapping, parts: Mapping[str, ad.AnnData], seed: int) -> ad.AnnData:
    """Draw the recipe's cells from each dataset's training part and join them on shared genes.

    Each dataset's draw uses a generator seeded by (seed, dataset name): for one seed, mixes that share
    a dataset draw nested subsets of it, and the result does not depend on the order of the recipe.
    """
    counts = recipe_counts(recipe, {d: p.n_obs for d, p in parts.items()}, mix)
    genes = shared_genes(parts)
    pieces = []
    for d, n in counts.items():
        rng = np.random.default_rng([int(seed), zlib.crc32(d.encode())])
        part = parts[d]
        if recipe.get("replace", False):
            take = rng.integers(0, part.n_obs, n)
        else:
            take = rng.permutation(part.n_obs)[:n]
        piece = part[take, genes].copy()
        piece.obs["dataset"] = d
        piece.obs["source_cell_id"] = piece.obs_names.to_numpy()
        if recipe.get("replace", False):
            piece.obs_names = [f"{c}#{i}" for i, c in enumerate(piece.obs_names)]
        pieces.append(piece)
    out = ad.concat(pieces, join="inner", merge="first")
    out.obs["dataset"] = pd.Categorical(out.obs["dataset"], categories=list(counts))
    out.uns["mix"] = {"name": mix, "seed": int(seed), "cells_per_dataset": counts, "n_genes": len(genes)}
    return out


def check_no_leak(mix_ids, eval_ids: Mapping[str, pd.Index], mix: str) -> None:
    """Fail if any held-out cell of any eval set is in the training mix."""
    mix_ids = pd.Index(mix_ids)
    for name, ids in eval_ids.items():
        leaked = mix_ids.intersection(ids)
        if len(leaked):
            raise ScmixInputError(
                f"mix '{mix}' contains {len(leaked)} cells of eval set '{name}' (e.g. {leaked[0]}): "
                "held-out cells leaked into training"
            )


def manifest(adata: ad.AnnData) -> pd.DataFrame:
    """Cells per dataset and cell type of a mix (tidy)."""
    keys = ["dataset"] + (["cell_type"] if "cell_type" in adata.obs else [])
    tab = adata.obs.groupby(keys, observed=True).size().rename("n_cells").reset_index()
    tab["n_genes"] = adata.n_vars
    return tab
