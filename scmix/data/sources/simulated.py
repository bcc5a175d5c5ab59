"""The embedded demo source: the download step generates the data (no network), parse reads it."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import anndata as ad

from scmix.data.simulate import Universe, simulate_dataset
from scmix.io import read_h5ad, write_h5ad

FILE = "simulated.h5ad"


def generate(name: str, spec: Mapping, simulation: Mapping, raw_dir: Path) -> Path:
    universe = Universe(simulation.get("n_genes", 2000), simulation.get("seed", 0))
    path = Path(raw_dir) / FILE
    write_h5ad(simulate_dataset(name, spec, universe), path)
    return path


def parse(name: str, spec: dict, raw_dir: Path) -> ad.AnnData:
    return read_h5ad(Path(raw_dir) / FILE, dataset=name)
