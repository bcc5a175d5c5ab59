"""Training-set mixing: a recipe of datasets, a size, and a seed.

A recipe maps each dataset (its training part) to either a fraction of ``total_cells`` or an absolute
number of ``cells``, optionally drawn from part ``part`` of ``parts`` equal parts of that dataset
(the datamix design "base half 1 + X" is ``{base: {fraction: 0.5, part: 1, parts: 2}, X: 0.5}``).
For each dataset the training cells are permuted by a generator seeded with (seed, dataset name) and
the permutation is cut into the parts; cells are taken from the start of the chosen part. So one seed
gives nested subsets of a dataset across mixes, the result does not depend on the order of the recipe,
and another seed gives another draw.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence

import anndata as ad
import numpy as np
import pandas as pd

from scmix.errors import ScmixInputError
from scmix.genes import MIN_SHARED_GENES, highly_variable, resolve_match_on, select, shared_keys


def components(recipe: Mapping, mix: str) -> list[dict]:
    """The recipe as a list of {dataset, fraction | cells, part, parts}."""
    out = []
    for d, v in recipe["datasets"].items():
        c = {"dataset": d, "part": 1, "parts": 1}
        if isinstance(v, Mapping):
            c.update({k: v[k] for k in ("fraction", "cells", "part", "parts") if k in v})
        else:
            c["fraction"] = float(v)
        if ("fraction" in c) == ("cells" in c):
            raise ScmixInputError(f"mix '{mix}': dataset '{d}' needs exactly one of fraction or cells")
        if not 1 <= c["part"] <= c["parts"]:
            raise ScmixInputError(f"mix '{mix}': dataset '{d}' part {c['part']} is not in 1..{c['parts']}")
        out.append(c)
    return out


def part_of(items: np.ndarray, part: int, parts: int) -> np.ndarray:
    """Part ``part`` (1-based) of ``items`` cut into ``parts`` near-equal parts: the one definition of a
    dataset's parts, used both to check a recipe's size and to draw it."""
    return np.array_split(items, parts)[part - 1]


def recipe_counts(recipe: Mapping, available: Mapping[str, int], mix: str) -> dict[str, int]:
    """Cells to draw per dataset: absolute counts, and fractions of ``total_cells`` by largest remainder.

    Fails, with the numbers, when a dataset (or the chosen part of it) has fewer training cells than
    the recipe asks for, unless ``replace`` is set.
    """
    comps = components(recipe, mix)
    kinds = {"fraction" if "fraction" in c else "cells" for c in comps}
    if len(kinds) > 1:
        raise ScmixInputError(f"mix '{mix}': give every dataset a fraction or every dataset a number of cells")
    if kinds == {"cells"}:
        counts = {c["dataset"]: int(c["cells"]) for c in comps}
        if "total_cells" in recipe and sum(counts.values()) != int(recipe["total_cells"]):
            raise ScmixInputError(f"mix '{mix}': cells add up to {sum(counts.values())}, not total_cells "
                                  f"{recipe['total_cells']}")  # fmt: skip
    else:
        if "total_cells" not in recipe:
            raise ScmixInputError(f"mix '{mix}': fractions need total_cells")
        total = int(recipe["total_cells"])
        fractions = {c["dataset"]: float(c["fraction"]) for c in comps}
        s = sum(fractions.values())
        if not np.isclose(s, 1.0, atol=1e-6):
            raise ScmixInputError(f"mix '{mix}': dataset fractions sum to {s:g}, not 1")
        raw = {d: total * f for d, f in fractions.items()}
        counts = {d: int(np.floor(v)) for d, v in raw.items()}
        for d in sorted(raw, key=lambda d: raw[d] - counts[d], reverse=True)[: total - sum(counts.values())]:
            counts[d] += 1
    if not recipe.get("replace", False):
        for c in comps:
            d, n = c["dataset"], counts[c["dataset"]]
            pool = len(part_of(np.arange(available[d]), c["part"], c["parts"]))
            if n > pool:
                where = f"part {c['part']} of {c['parts']} of its training split" if c["parts"] > 1 else (
                    "its training split")  # fmt: skip
                asked = f"{c['fraction']:g} x {recipe['total_cells']}" if "fraction" in c else "absolute"
                raise ScmixInputError(
                    f"mix '{mix}' asks for {n} cells of dataset '{d}' ({asked}) but {where} holds only {pool}; "
                    "lower the size or set replace: true"
                )
    return {c["dataset"]: counts[c["dataset"]] for c in comps}


def draw(n_available: int, n: int, seed: int, dataset: str, part: int = 1, parts: int = 1,
         replace: bool = False) -> np.ndarray:  # fmt: skip
    """Row indices of one dataset's draw (see the module docstring)."""
    rng = np.random.default_rng([int(seed), zlib.crc32(dataset.encode())])
    pool = part_of(rng.permutation(n_available), part, parts)
    if replace:
        return pool[np.random.default_rng([int(seed), zlib.crc32(dataset.encode()), part]).integers(0, len(pool), n)]
    return pool[:n]


def make_mix(mix: str, recipe: Mapping, parts: Mapping[str, ad.AnnData], seed: int, *, match_on: str = "auto",
             gene_list: Sequence[str] | None = None, n_top_genes: int | None = None, hvg_flavor: str = "seurat_v3",
             hvg_batch_key: str | None = "dataset", min_shared: int = MIN_SHARED_GENES) -> ad.AnnData:  # fmt: skip
    """Draw the recipe's cells from each dataset's training part and join them on harmonised genes (at least
    ``min_shared`` of them when the mix has several datasets)."""
    counts = recipe_counts(recipe, {d: p.n_obs for d, p in parts.items()}, mix)
    match_on = resolve_match_on(parts, match_on)
    keys = shared_keys(parts, match_on, gene_list, min_shared=min_shared, what=f"mix '{mix}'")
    replace = bool(recipe.get("replace", False))
    var = select(parts[next(iter(parts))][:0], keys, match_on).var.copy()  # names from the first dataset
    var["match_key"] = keys.to_numpy()
    pieces = []
    for c in components(recipe, mix):
        d = c["dataset"]
        part = parts[d]
        take = draw(part.n_obs, counts[d], seed, d, c["part"], c["parts"], replace)
        piece = select(part[take], keys, match_on).copy()
        piece.var_names = var.index
        piece.obs["dataset"] = d
        piece.obs["source_cell_id"] = piece.obs_names.to_numpy()
        # barcodes repeat across datasets (10x reuses its whitelist): a cell is (dataset, barcode)
        piece.obs_names = qualified_ids(d, piece.obs_names)
        if replace:
            piece.obs_names = [f"{cell}#{i}" for i, cell in enumerate(piece.obs_names)]
        pieces.append(piece)
    out = ad.concat(pieces, join="inner", merge="first")
    out.var = var
    out.obs["dataset"] = pd.Categorical(out.obs["dataset"], categories=list(counts))
    if n_top_genes:
        hvg = highly_variable(out, int(n_top_genes), hvg_flavor, hvg_batch_key)
        out = out[:, hvg].copy()
    out.uns["mix"] = {"name": mix, "seed": int(seed), "cells_per_dataset": counts, "n_genes": out.n_vars,
                      "n_shared_genes": len(keys), "match_on": match_on,
                      "n_top_genes": int(n_top_genes or 0)}  # fmt: skip
    return out


def qualified_ids(dataset: str, cell_ids) -> pd.Index:
    """Cell IDs unique across datasets: ``dataset:cell``."""
    return pd.Index([f"{dataset}:{c}" for c in cell_ids])


def mix_cell_ids(adata: ad.AnnData) -> pd.Index:
    """The qualified source IDs of a mix's cells (repeats when drawn with replacement)."""
    return pd.Index(adata.obs["dataset"].astype(str) + ":" + adata.obs["source_cell_id"].astype(str))


def check_no_leak(mix_ids, eval_ids: Mapping[str, pd.Index], mix: str) -> None:
    """Fail if any held-out cell of any eval set is in the training mix.

    Compare like with like: qualified IDs on both sides (``mix_cell_ids`` and ``qualified_ids``), or
    plain IDs within one dataset.
    """
    mix_ids = pd.Index(mix_ids)
    for name, ids in eval_ids.items():
        leaked = mix_ids.intersection(ids)
        if len(leaked):
            raise ScmixInputError(
                f"mix '{mix}' contains {len(leaked)} cells of eval set '{name}' (e.g. {leaked[0]}): "
                "held-out cells leaked into training"
            )


def manifest(adata: ad.AnnData) -> pd.DataFrame:
    """Cells per dataset x cell type x donor of a mix (tidy; the label columns present)."""
    keys = ["dataset"] + [k for k in ("cell_type", "donor") if k in adata.obs]
    tab = adata.obs.groupby(keys, observed=True).size().rename("n_cells").reset_index()
    tab["n_genes"] = adata.n_vars
    return tab


def manifest_summary(adata: ad.AnnData, recipe: Mapping) -> dict:
    """The JSON manifest: cells per dataset, cell type and donor, genes kept, seed, recipe."""

    def tally(key):
        if key not in adata.obs:
            return {}
        return {str(k): int(v) for k, v in adata.obs[key].astype(str).value_counts().sort_index().items()}

    info = dict(adata.uns["mix"])
    info["cells_per_dataset"] = {k: int(v) for k, v in info["cells_per_dataset"].items()}
    return {
        **info,
        "n_cells": int(adata.n_obs),
        "cells_per_cell_type": tally("cell_type"),
        "cells_per_donor": tally("donor"),
        "recipe": {k: v for k, v in recipe.items()},
    }
