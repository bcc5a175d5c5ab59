"""The defaults of the config sections whose keys a dataset can override (``qc``, ``split``), and the one place
they are resolved: the package's defaults, then the section of the config, then the dataset's own block.

They live here, not in the JSON schema, because the schema types the global section and each dataset's override
block with one definition: a default there would fill every dataset's block with every key and override the
global section. Defaults of sections without per-dataset overrides are in the schema (``snakemake.utils.validate``
fills them in); model defaults are in :mod:`scmix.models.modelspec`. ``tests/workflow/test_config.py`` checks that no
default is written in two of these places.

The workflow resolves each section once, while it builds the DAG (``rules/common.smk``), and passes the result
to the jobs as params; the package functions take the resolved values and merge nothing. This module imports
nothing heavy, so the workflow can load it at DAG time.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

QC_MODES = ("single_cell", "bulk")
QC_DEFAULTS = {
    "mode": "single_cell",
    # both modes: features removed before anything is counted (regular expressions on symbol or ID)
    "drop_features": ["^ERCC-"],
    # single_cell
    "min_genes": 200,
    "min_counts": 0,
    "max_counts": None,
    "max_pct_mito": 20.0,
    # share of a cell's counts in the drop_features features (ERCC spike-ins): a cell mostly of spike-ins holds
    # little of its own mRNA (a dying cell, an empty droplet)
    "max_pct_spikein": 50.0,
    "min_cells": 3,
    "mito_prefix": "MT-",
    # bulk
    "min_count": 10,
    "min_samples": 1,
    "min_library_size": None,
}

SPLIT_METHODS = ("random", "group")
SPLIT_DEFAULTS = {
    "method": "random",
    "eval_fraction": 0.2,
    "seed": 0,
    "stratify": "cell_type",
    "group_key": None,
    "holdout_cell_types": [],
    "cell_type_key": "cell_type",
    # the mix rule drops a dataset's training cells that are held-out cells of another source (else it fails)
    "drop_cross_source_duplicates": False,
}
# obs column of a split's eval part (and of the evaluate rule's per-cell tables): True for a cell that
# holdout_cell_types sent to eval, a cell type kept out of its dataset's training cells
HOLDOUT_COLUMN = "holdout_cell_type"


def _resolve(defaults: Mapping, section: Mapping | None, override: Mapping | None) -> dict:
    return copy.deepcopy({**defaults, **(section or {}), **(override or {})})


def resolve_qc(section: Mapping | None, override: Mapping | None = None) -> dict:
    """Every QC setting: the defaults, the config's ``qc`` section, then a dataset's ``qc`` block."""
    return _resolve(QC_DEFAULTS, section, override)


def resolve_split(section: Mapping | None, override: Mapping | None = None) -> dict:
    """Every split setting: the defaults, the config's ``split`` section, then a dataset's ``split`` block."""
    return _resolve(SPLIT_DEFAULTS, section, override)


def require(params: Mapping, defaults: Mapping, section: str) -> None:
    """A package function was given resolved settings: every key of the section is there. Raises ValueError
    naming the missing keys (a programming error: callers resolve with ``resolve_qc``/``resolve_split``)."""
    missing = [k for k in defaults if k not in params]
    if missing:
        raise ValueError(f"{section} settings are not resolved (missing {', '.join(missing)}); pass "
                         f"scmix.settings.resolve_{section}(...)")  # fmt: skip
