"""The embedded demo: several simulated single-cell 'datasets' drawn from one shared gene universe.

Counts are negative binomial (gamma-Poisson) with gene-specific dispersion. The mean of cell c and gene g
is ``L_c * softmax_g(baseline + cell type programme + donor + batch + study shift + perturbation)``,
with log-normal library sizes L_c. Cell-type programmes depend only on the universe seed and the cell
type's name, so datasets that list the same cell type share it, while each can hold types of its own.
A share of low-quality cells (tiny libraries or high mitochondrial load) gives QC real work to do.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

MITO_GENES = [
    "MT-ND1", "MT-ND2", "MT-CO1", "MT-CO2", "MT-ATP8", "MT-ATP6", "MT-CO3",
    "MT-ND3", "MT-ND4L", "MT-ND4", "MT-ND5", "MT-ND6", "MT-CYB",
]  # fmt: skip

DEFAULTS = {
    "n_cells": 1000,
    "donors": 3,
    "batches": 1,
    "library_size": {"mean": 2000.0, "sd": 0.45},
    "donor_effect": 0.15,
    "batch_effect": 0.25,
    "programme_shift": None,
    "perturbations": None,
    "low_quality_fraction": 0.05,
}


def _rng(seed: int, *keys: str) -> np.random.Generator:
    """A generator that depends only on the seed and the names, stable across runs and machines."""
    return np.random.default_rng([int(seed)] + [zlib.crc32(k.encode()) for k in keys])


def gene_table(n_genes: int) -> pd.DataFrame:
    """Gene symbols (13 mitochondrial genes first) and Ensembl-style IDs of the universe."""
    if n_genes <= len(MITO_GENES) + 10:
        raise ValueError(f"simulation.n_genes must exceed {len(MITO_GENES) + 10}, got {n_genes}")
    symbols = MITO_GENES + [f"SIMG{i:05d}" for i in range(n_genes - len(MITO_GENES))]
    ids = [f"ENSSIMG{i:011d}" for i in range(n_genes)]
    return pd.DataFrame({"gene_ids": ids}, index=pd.Index(symbols, name="gene_symbols"))


class Universe:
    """Gene-level properties shared by every simulated dataset of one config."""

    def __init__(self, n_genes: int = 2000, seed: int = 0):
        self.n_genes = int(n_genes)
        self.seed = int(seed)
        self.genes = gene_table(self.n_genes)
        self.is_mito = np.zeros(self.n_genes, dtype=bool)
        self.is_mito[: len(MITO_GENES)] = True
        rng = _rng(seed, "baseline")
        # Heavy-tailed abundances: few highly expressed genes, many rarely detected ones.
        self.baseline = rng.normal(0.0, 2.2, self.n_genes)
        self.baseline[self.is_mito] = rng.normal(4.6, 0.4, self.is_mito.sum())
        self.theta = np.exp(_rng(seed, "theta").normal(np.log(3.0), 0.7, self.n_genes))
        self._programmes: dict[str, np.ndarray] = {}

    def programme(self, cell_type: str) -> np.ndarray:
        """Log-fold changes of a cell type: a few strong markers on a broad low-amplitude profile."""
        if cell_type not in self._programmes:
            rng = _rng(self.seed, "cell_type", cell_type)
            delta = rng.normal(0.0, 0.35, self.n_genes)
            candidates = np.flatnonzero(~self.is_mito)
            markers = rng.choice(candidates, size=max(5, int(0.04 * self.n_genes)), replace=False)
            delta[markers] += rng.normal(2.2, 0.6, markers.size)
            delta[self.is_mito] = 0.0
            self._programmes[cell_type] = delta
        return self._programmes[cell_type]


def _merged(spec: Mapping) -> dict:
    out = {**DEFAULTS, **{k: v for k, v in spec.items() if v is not None}}
    out["library_size"] = {**DEFAULTS["library_size"], **(spec.get("library_size") or {})}
    return out


def simulate_dataset(name: str, spec: Mapping, universe: Universe, chunk: int = 4096) -> ad.AnnData:
    """Simulate one dataset described by ``spec`` (see ``config.yaml``) as integer counts in CSR."""
    spec = _merged(spec)
    cell_types = spec["cell_types"]
    if not cell_types:
        raise ValueError(f"dataset '{name}': simulated source needs at least one cell type")
    n_cells = int(spec["n_cells"])
    G = universe.n_genes
    rng = _rng(universe.seed, "cells", name)

    types = list(cell_types)
    probs = np.asarray([float(cell_types[t]) for t in types])
    probs = probs / probs.sum()
    ct_idx = rng.choice(len(types), size=n_cells, p=probs)
    n_donors, n_batches = int(spec["donors"]), int(spec["batches"])
    donor_idx = rng.integers(0, n_donors, n_cells)
    batch_of_donor = np.arange(n_donors) % n_batches

    programmes = np.stack([universe.programme(t) for t in types])
    donors = np.stack(
        [_rng(universe.seed, name, "donor", str(d)).normal(0, spec["donor_effect"], G) for d in range(n_donors)]
    )
    batches = np.stack(
        [_rng(universe.seed, name, "batch", str(b)).normal(0, spec["batch_effect"], G) for b in range(n_batches)]
    )
    for effects in (donors, batches):
        effects[:, universe.is_mito] = 0.0
    study = np.zeros(G)
    if spec["programme_shift"]:
        shift = spec["programme_shift"]
        srng = _rng(universe.seed, name, "shift")
        genes = srng.choice(np.flatnonzero(~universe.is_mito), int(shift.get("gene_fraction", 0.2) * G), replace=False)
        study[genes] = srng.normal(0.0, float(shift.get("sd", 1.0)), genes.size)

    obs = pd.DataFrame(
        {
            "cell_type": pd.Categorical([types[i] for i in ct_idx], categories=types),
            "donor": pd.Categorical([f"{name}_donor{d}" for d in donor_idx]),
            "batch": pd.Categorical([f"{name}_batch{batch_of_donor[d]}" for d in donor_idx]),
        },
        index=pd.Index([f"{name}-{i:06d}" for i in range(n_cells)], name="cell_id"),
    )

    # Perturbations: each perturbed cell knocks one target gene down and moves a downstream programme.
    pert_logit = None
    if spec["perturbations"]:
        p = spec["perturbations"]
        prng = _rng(universe.seed, name, "perturb")
        expressed = np.flatnonzero(~universe.is_mito)
        expressed = expressed[np.argsort(universe.baseline[expressed])[::-1][: max(50, G // 5)]]
        targets = prng.choice(expressed, size=int(p.get("n_targets", 10)), replace=False)
        effects = np.zeros((targets.size, G))
        for k, t in enumerate(targets):
            down = prng.choice(np.flatnonzero(~universe.is_mito), int(p.get("downstream_genes", 30)), replace=False)
            effects[k, down] = prng.normal(0.0, float(p.get("downstream_sd", 0.8)), down.size)
            effects[k, t] = np.log(float(p.get("knockdown", 0.15)))
        is_ctrl = rng.random(n_cells) < float(p.get("control_fraction", 0.3))
        which = rng.integers(0, targets.size, n_cells)
        labels = np.where(is_ctrl, "non-targeting", universe.genes.index.to_numpy()[targets][which])
        obs["perturbation"] = pd.Categorical(labels)
        pert_logit = (which, is_ctrl, effects)

    lib = spec["library_size"]
    log_lib = rng.normal(np.log(float(lib["mean"])), float(lib["sd"]), n_cells)
    quality = np.full(n_cells, "ok", dtype=object)
    lowq = rng.random(n_cells) < float(spec["low_quality_fraction"])
    dying = lowq & (rng.random(n_cells) < 0.5)
    quality[lowq & ~dying] = "empty_like"
    quality[dying] = "high_mito"
    log_lib[lowq & ~dying] += np.log(0.06)
    obs["simulated_quality"] = pd.Categorical(quality)

    blocks = []
    for start in range(0, n_cells, chunk):
        sl = slice(start, min(start + chunk, n_cells))
        logits = universe.baseline + programmes[ct_idx[sl]] + donors[donor_idx[sl]]
        logits += batches[batch_of_donor[donor_idx[sl]]] + study
        if pert_logit is not None:
            which, is_ctrl, effects = pert_logit
            logits += np.where(is_ctrl[sl, None], 0.0, effects[which[sl]])
        logits[np.ix_(dying[sl], universe.is_mito)] += 2.5
        logits -= logits.max(axis=1, keepdims=True)
        prop = np.exp(logits)
        prop /= prop.sum(axis=1, keepdims=True)
        mean = np.exp(log_lib[sl])[:, None] * prop
        lam = rng.gamma(universe.theta, mean / universe.theta)
        blocks.append(sp.csr_matrix(rng.poisson(lam).astype(np.int32)))
    X = sp.vstack(blocks, format="csr")

    adata = ad.AnnData(X=X, obs=obs, var=universe.genes.copy())
    adata.uns["source"] = {"type": "simulated", "universe_seed": universe.seed, "n_genes": G}
    return adata
