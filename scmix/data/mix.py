"""Training-set mixing: a recipe of datasets, a size, and a seed.

A recipe maps each dataset (its training part) to either a fraction of ``total_cells`` or an absolute
number of ``cells``, optionally drawn from part ``part`` of ``parts`` equal parts of that dataset
(the datamix design "base half 1 + X" is ``{base: {fraction: 0.5, part: 1, parts: 2}, X: 0.5}``).
For each dataset the training cells are permuted by a generator seeded with (seed, dataset name) and
the permutation is cut into the parts; cells are taken from the start of the chosen part. So one seed
gives nested subsets of a dataset across mixes, the result does not depend on the order of the recipe,
and another seed gives another draw.

A mix keeps every obs column of its datasets (the union): a column some datasets lack is NA for their cells
(categoricals stay categorical), and the mix says which columns which datasets lack. Cells that are the same
cell in two sources (``same_cells``: identical counts on every gene the two share) are caught by the leakage
check as well as cells that are the same by ID.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import zlib
from collections.abc import Mapping, Sequence

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from scmix.data.genes import (
    MIN_SHARED_GENES,
    gene_keys,
    highly_variable,
    key_positions,
    positions,
    resolve_match_on,
    shared_keys,
)
from scmix.errors import ScmixInputError
from scmix.io import counts_matrix, read_cells, take_rows

log = logging.getLogger("scmix.data.mix")


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
             hvg_batch_key: str | None = "dataset", min_shared: int = MIN_SHARED_GENES,
             rows: Mapping[str, np.ndarray] | None = None) -> ad.AnnData:  # fmt: skip
    """Draw the recipe's cells from each dataset's training part and join them on harmonised genes (at least
    ``min_shared`` of them when the mix has several datasets).

    ``parts`` may be backed (``read_h5ad(..., backed=True)``): only the drawn rows are read. ``rows``: per dataset,
    the rows a draw may take (``drop_cross_source_duplicates``), all when a dataset is not named; the draw permutes
    those as it would a part holding just them."""
    pools = {d: np.asarray(rows[d]) if rows and d in rows else np.arange(p.n_obs) for d, p in parts.items()}
    counts = recipe_counts(recipe, {d: len(pool) for d, pool in pools.items()}, mix)
    match_on = resolve_match_on(parts, match_on, what=f"mix '{mix}'")
    keys = shared_keys(parts, match_on, gene_list, min_shared=min_shared, what=f"mix '{mix}'")
    replace = bool(recipe.get("replace", False))
    first = parts[next(iter(parts))]
    var = first.var.iloc[key_positions(first, keys, match_on)].copy()  # names from the first dataset
    var["match_key"] = keys.to_numpy()
    pieces = []
    for c in components(recipe, mix):
        d = c["dataset"]
        part = parts[d]
        take = pools[d][draw(len(pools[d]), counts[d], seed, d, c["part"], c["parts"], replace)]
        piece = read_cells(part, take, key_positions(part, keys, match_on))
        piece.var_names = var.index
        piece.obs["dataset"] = d
        piece.obs["source_cell_id"] = piece.obs_names.to_numpy()
        # barcodes repeat across datasets (10x reuses its whitelist): a cell is (dataset, barcode)
        piece.obs_names = qualified_ids(d, piece.obs_names)
        if replace:
            piece.obs_names = [f"{cell}#{i}" for i, cell in enumerate(piece.obs_names)]
        pieces.append(piece)
    # every piece has the mix's genes in one order, so "outer" joins only the obs columns (their union)
    out = ad.concat(pieces, join="outer", merge="first")
    out.var = var
    out.obs["dataset"] = pd.Categorical(out.obs["dataset"], categories=list(counts))
    _union_obs(out, {c["dataset"]: parts[c["dataset"]].obs.dtypes for c in components(recipe, mix)}, mix)
    if n_top_genes:
        try:
            hvg = highly_variable(out, int(n_top_genes), hvg_flavor, hvg_batch_key)
        except ValueError as err:  # seurat_v3's loess (scikit-misc) on too few cells: near singularities
            detail = err.args[0].decode() if err.args and isinstance(err.args[0], bytes) else str(err)
            raise ScmixInputError(f"genes.n_top_genes {n_top_genes} with hvg_flavor {hvg_flavor}: scanpy's fit on the "
                                  f"mix's {out.n_obs} cells failed ({detail}); set genes.hvg_flavor: seurat (or "
                                  "cell_ranger), or give the mix more cells", mix=mix) from err  # fmt: skip
        out = out[:, hvg].copy()
    out.uns["mix"] = {"name": mix, "seed": int(seed), "cells_per_dataset": counts, "n_genes": out.n_vars,
                      "n_shared_genes": len(keys), "match_on": match_on,
                      "n_top_genes": int(n_top_genes or 0)}  # fmt: skip
    return out


def _union_obs(out: ad.AnnData, dtypes: Mapping[str, pd.Series], mix: str) -> None:
    """Warn, once per group of datasets, about the obs columns those datasets lack (NA for their cells). Integer
    columns with NA stay integers (pandas' nullable Int64, not floats: donor 1015 stays 1015); text columns with NA
    become categoricals (h5ad writes both with missing values)."""
    columns = {d: set(t.index) for d, t in dtypes.items()}
    every = set().union(*columns.values())
    groups: dict[tuple, list[str]] = {}
    for column in [c for c in out.obs.columns if c in every]:
        lacking = tuple(d for d, cols in columns.items() if column not in cols)
        if not lacking:  # a column every dataset has keeps the dtype the concatenation gave it, unless it mixes
            _labels_as_text(out, column, {d: t[column] for d, t in dtypes.items()}, mix)  # numbers and text
            continue
        groups.setdefault(lacking, []).append(column)
        present = [t[column] for t in dtypes.values() if column in t.index]
        if all(pd.api.types.is_integer_dtype(t) for t in present):
            out.obs[column] = out.obs[column].astype("Int64")
        elif out.obs[column].dtype == object:
            out.obs[column] = pd.Categorical(out.obs[column].astype("string").astype(object).where(
                out.obs[column].notna(), None))  # fmt: skip
    for lacking, missing in groups.items():
        n = int(out.obs["dataset"].isin(lacking).sum())
        log.warning("mix '%s': obs column%s %s %s missing in %s; NA for the %d cells drawn from %s", mix,
                    "s" if len(missing) > 1 else "", ", ".join(f"'{c}'" for c in missing),
                    "are" if len(missing) > 1 else "is", ", ".join(f"dataset '{d}'" for d in lacking), n,
                    "them" if len(lacking) > 1 else "it")  # fmt: skip


def _labels_as_text(out: ad.AnnData, column: str, dtypes: Mapping[str, object], mix: str) -> None:
    """A label column that is numeric in some datasets and text in others (donor 1016 in one, 'd1' in another)
    becomes text, with a warning: h5ad cannot store a column of mixed types, and the labels stay what they say."""
    values = out.obs[column]
    if isinstance(values.dtype, pd.CategoricalDtype):
        values = values.cat.categories.to_series()
    if values.dtype != object or len({type(v) for v in values.dropna()}) < 2:
        return
    kinds = {d: ("numbers" if pd.api.types.is_numeric_dtype(t) else "text") for d, t in dtypes.items()}
    log.warning("mix '%s': obs column '%s' holds numbers in %s and text in %s; written as text", mix, column,
                ", ".join(f"dataset '{d}'" for d, k in kinds.items() if k == "numbers"),
                ", ".join(f"dataset '{d}'" for d, k in kinds.items() if k == "text"))  # fmt: skip
    text = out.obs[column].astype(object).where(out.obs[column].notna(), None)
    out.obs[column] = pd.Categorical([None if v is None else str(v) for v in text])


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


# how a label a dataset lacks shows in a mix's manifests
MISSING_LABEL = "NA"


def manifest(adata: ad.AnnData) -> pd.DataFrame:
    """Cells per dataset x cell type x donor of a mix (tidy; the label columns present; NA where a dataset lacks
    one)."""
    keys = ["dataset"] + [k for k in ("cell_type", "donor") if k in adata.obs]
    tab = adata.obs.groupby(keys, observed=True, dropna=False).size().rename("n_cells").reset_index()
    for k in keys[1:]:
        tab[k] = tab[k].astype(object).where(tab[k].notna(), MISSING_LABEL)
    tab["n_genes"] = adata.n_vars
    return tab


def manifest_summary(adata: ad.AnnData, recipe: Mapping) -> dict:
    """The JSON manifest: cells per dataset, cell type and donor, genes kept, seed, recipe."""

    def tally(key):
        if key not in adata.obs:
            return {}
        labels = adata.obs[key].astype(object).where(adata.obs[key].notna(), MISSING_LABEL).astype(str)
        return {str(k): int(v) for k, v in labels.value_counts().sort_index().items()}

    info = dict(adata.uns["mix"])
    info["cells_per_dataset"] = {k: int(v) for k, v in info["cells_per_dataset"].items()}
    return {
        **info,
        "n_cells": int(adata.n_obs),
        "cells_per_cell_type": tally("cell_type"),
        "cells_per_donor": tally("donor"),
        "recipe": {k: v for k, v in recipe.items()},
    }


# Cells that are the same cell in two sources. Two files of one experiment (a study's own matrix and an atlas's copy
# of it) hold the same cells under the same or other barcodes; the leakage check by ID cannot see them.

# the fewest shared genes a cell must have detected for identical counts on them to mean "the same cell" (cells
# with a handful of counts on a small panel can agree by chance)
MIN_DETECTED_SAME_CELL = 10
_ROWS = 20_000  # rows of a matrix not stored as CSR converted at a time
_BARCODE_SUFFIX = r"-\d+$"  # 10x's GEM-well suffix, ignored when comparing barcodes


def _key_weights(keys: pd.Index) -> np.ndarray:
    """A pseudo-random odd 64-bit weight per gene key, from the key itself (the same in every dataset)."""
    digests = b"".join(hashlib.blake2b(str(k).encode(), digest_size=8).digest() for k in keys)
    return np.frombuffer(digests, dtype="<u8").astype(np.uint64) | np.uint64(1)


@functools.cache
def _fingerprint_kernel():
    import numba

    @numba.njit(cache=True, nogil=True)
    def rows(data, indices, indptr, weights, out, detected):  # pragma: no cover - compiled
        for i in range(len(indptr) - 1):
            h = np.uint64(0)
            n = 0
            for j in range(indptr[i], indptr[i + 1]):
                w = weights[indices[j]]
                v = np.uint64(data[j])
                if w != 0 and v != 0:
                    h += v * w  # modulo 2**64
                    n += 1
            out[i] = h
            detected[i] = n

    return rows


def count_fingerprints(adata: ad.AnnData, keys: pd.Index, match_on: str) -> tuple[np.ndarray, np.ndarray]:
    """Per cell: a 64-bit fingerprint of its counts on the genes ``keys``, and how many of those genes it has
    detected.

    The fingerprint is the sum of count x weight(gene) modulo 2**64 (exact integer arithmetic), so two cells get the
    same one when their counts agree on ``keys``, whatever the order of the genes or the other genes of each
    source. One compiled pass over the stored counts (numba), a chunk of rows at a time: nothing is densified."""
    weights = np.zeros(adata.n_vars, dtype=np.uint64)
    pos = positions(gene_keys(adata, match_on), keys)
    weights[pos[pos >= 0]] = _key_weights(keys[pos >= 0])
    X = counts_matrix(adata)
    out = np.zeros(adata.n_obs, dtype=np.uint64)
    detected = np.zeros(adata.n_obs, dtype=np.int64)
    kernel = _fingerprint_kernel()
    if sp.issparse(X) and X.format == "csr":  # read in place
        kernel(X.data, X.indices, X.indptr, weights, out, detected)
        return out, detected
    for start in range(0, adata.n_obs, _ROWS):
        block = X[start : start + _ROWS]
        block = block.tocsr() if sp.issparse(block) else sp.csr_matrix(np.asarray(block))
        stop = start + block.shape[0]
        kernel(block.data, block.indices, block.indptr, weights, out[start:stop], detected[start:stop])
    return out, detected


def _identical_rows(a: ad.AnnData, rows_a, b: ad.AnnData, rows_b, keys: pd.Index, match_on: str) -> np.ndarray:
    """Whether row ``rows_a[i]`` of ``a`` and row ``rows_b[i]`` of ``b`` hold the same counts on ``keys``: the
    exact check of pairs whose fingerprints agree."""
    if not len(rows_a):
        return np.zeros(0, dtype=bool)
    rows_a, rows_b = np.asarray(rows_a), np.asarray(rows_b)
    pos_a, pos_b = positions(gene_keys(a, match_on), keys), positions(gene_keys(b, match_on), keys)
    out = np.zeros(len(rows_a), dtype=bool)
    for start in range(0, len(rows_a), _ROWS):  # a block of pairs at a time: the pairs can be every cell
        block = slice(start, start + _ROWS)
        ma = sp.csr_matrix(take_rows(counts_matrix(a), rows_a[block])[:, pos_a])
        mb = sp.csr_matrix(take_rows(counts_matrix(b), rows_b[block])[:, pos_b])
        diff = (ma.astype(np.int64) - mb.astype(np.int64)).tocsr()
        diff.eliminate_zeros()
        out[block] = np.diff(diff.indptr) == 0
    return out


def same_cells(a: ad.AnnData, b: ad.AnnData, match_on: str, min_detected: int = MIN_DETECTED_SAME_CELL
               ) -> tuple[pd.DataFrame, int]:  # fmt: skip
    """The cells of ``a`` and ``b`` that are the same cell: identical counts on every gene the two share, with at
    least ``min_detected`` of those genes detected (fingerprints first, then the candidate pairs compared count by
    count). Returns (pairs with columns ``a``, ``b`` (cell IDs) and ``same_barcode``, the number of genes
    compared)."""
    keys = gene_keys(a, match_on).drop_duplicates()
    keys = keys[keys.isin(gene_keys(b, match_on))]
    frames = []
    for side, adata in (("a", a), ("b", b)):
        prints, detected = count_fingerprints(adata, keys, match_on)
        rows = np.flatnonzero(detected >= min_detected)
        frames.append(pd.DataFrame({"h": prints[rows], f"row_{side}": rows}))
    pairs = frames[0].merge(frames[1], on="h")
    exact = _identical_rows(a, pairs["row_a"], b, pairs["row_b"], keys, match_on)
    pairs = pairs[exact]
    out = pd.DataFrame({"a": a.obs_names[pairs["row_a"]], "b": b.obs_names[pairs["row_b"]]})
    core = [out[s].str.replace(_BARCODE_SUFFIX, "", regex=True) for s in ("a", "b")]
    out["same_barcode"] = (core[0] == core[1]).to_numpy()
    return out, len(keys)


def cross_source_duplicates(train: Mapping[str, ad.AnnData], eval_sets: Mapping[str, ad.AnnData],
                            match_on: str = "auto") -> dict[tuple[str, str], tuple[pd.DataFrame, int]]:  # fmt: skip
    """For each training dataset and each eval set of another dataset: the cells they share (``same_cells``, on
    the genes the two share, matched as ``match_on`` resolves for the pair). Pairs without shared cells are left
    out."""
    found = {}
    for d, part in train.items():
        for e, held in eval_sets.items():
            if e == d:  # one dataset's split is disjoint by cell already
                continue
            match = resolve_match_on({d: part, e: held}, match_on)
            pairs, n_genes = same_cells(part, held, match)
            if len(pairs):
                found[d, e] = (pairs, n_genes)
    return found


def drop_cross_source_duplicates(train: Mapping[str, ad.AnnData], found, drop: Mapping[str, bool]):
    """(rows, what is left of ``found``): per dataset, the rows of its training part a mix may draw (``make_mix``'s
    ``rows``); the datasets for which ``drop`` says so (``split.drop_cross_source_duplicates``) lose the training
    cells that are held-out cells of another source."""
    rows, left = {d: np.arange(p.n_obs) for d, p in train.items()}, dict(found)
    for d in train:
        pairs = {e: p for (dd, e), (p, _) in found.items() if dd == d}
        if not drop.get(d) or not pairs:
            continue
        dup = pd.Index(pd.concat([p["a"] for p in pairs.values()]).unique())
        rows[d] = np.flatnonzero(~train[d].obs_names.isin(dup))
        for e in pairs:
            del left[d, e]
        log.info("dataset '%s': %d training cells dropped, the same cells as held-out cells of %s "
                 "(split.drop_cross_source_duplicates); %d training cells left", d, len(dup),
                 ", ".join(f"eval set '{e}'" for e in pairs), len(rows[d]))  # fmt: skip
    return rows, left


def check_no_duplicate_leak(adata: ad.AnnData, found, mix: str) -> None:
    """Fail if a cell of the mix is, through another source, a held-out cell of an eval set; warn when a dataset
    holds such cells but this draw took none."""
    drawn = adata.obs.groupby("dataset", observed=True)["source_cell_id"].agg(lambda s: set(s.astype(str)))
    for (d, e), (pairs, n_genes) in found.items():
        hit = pairs[pairs["a"].isin(drawn.get(d, set()))]
        if len(hit):
            first = hit.iloc[0]
            raise ScmixInputError(
                f"{len(hit)} cells drawn from dataset '{d}' are the same cells as held-out cells of eval set '{e}' "
                f"(identical counts on all {n_genes:,} genes the two share, {int(hit['same_barcode'].sum())} also "
                f"with the same barcode; e.g. {d}:{first['a']} = {e}:{first['b']}; '{d}' holds {len(pairs)} such "
                "cells): held-out cells leaked into training through another source; set "
                "split.drop_cross_source_duplicates: true to drop them from the training side, or remove them from "
                "one of the sources",
                mix=mix,
            )
        log.warning("mix '%s': dataset '%s' holds %d training cells that are held-out cells of eval set '%s' "
                    "(identical counts on %d shared genes); this draw took none of them", mix, d, len(pairs), e,
                    n_genes)  # fmt: skip


def warn_same_cells_within(adata: ad.AnnData, mix: str) -> int:
    """Warn when cells drawn from two datasets of the mix are the same cell (identical counts on the mix's genes):
    they train the model twice. Returns how many such cells there are."""
    if adata.obs["dataset"].nunique() < 2:
        return 0
    prints, detected = count_fingerprints(adata, pd.Index(adata.var_names), "symbols")
    dataset = adata.obs["dataset"].astype(str).to_numpy()
    cells = pd.DataFrame({"h": prints, "dataset": dataset})
    cells = cells[detected >= MIN_DETECTED_SAME_CELL]
    spread = cells.groupby("h")["dataset"].transform("nunique")
    twice = cells[spread.to_numpy() > 1]
    if len(twice):
        per = twice["dataset"].value_counts().sort_index()
        log.warning("mix '%s': %d cells are the same cell drawn from more than one dataset (identical counts on all %d "
                    "genes of the mix: %s); they are in training more than once", mix, len(twice), adata.n_vars,
                    ", ".join(f"{n} from '{d}'" for d, n in per.items()))  # fmt: skip
    return len(twice)
