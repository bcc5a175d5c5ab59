import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest

from scmix.data.fetch import fetch_dataset
from scmix.data.sources import parse_dataset
from scmix.errors import ScmixInputError
from scmix.plots.evaluation import accuracy_heatmap


def test_simulated_source_is_generated_by_download_and_parsed(tmp_path):
    spec = {"source": "simulated", "n_cells": 50, "cell_types": {"T": 1.0}}
    raw = fetch_dataset("b", spec, tmp_path / "b", simulation={"n_genes": 100})
    adata = parse_dataset("b", spec, raw)
    assert adata.shape == (50, 100) and adata.X.dtype == np.int32
    assert set(adata.obs["dataset"]) == {"b"} and "gene_ids" in adata.var and adata.uns["count_data"]


def test_unknown_source_is_named_with_its_dataset(tmp_path):
    with pytest.raises(ScmixInputError, match="dataset 'x': unknown source type 'ftp'"):
        parse_dataset("x", {"source": "ftp"}, tmp_path)


def summary_table(models):
    rows = []
    for model in models:
        for mix in ("a", "b"):
            for seed, jitter in ((0, 0.0), (1, 0.02)):
                for j, ev in enumerate(("e1", "e2", "e3")):
                    rows.append({"model": model, "mix": mix, "seed": seed, "eval_set": ev, "cell_type": "all",
                                 "pearson_mean": 0.5 + 0.1 * j + jitter})  # fmt: skip
    return pd.DataFrame(rows)


def test_heatmap_draws_one_panel_per_model(tmp_path):
    accuracy_heatmap(summary_table(["m1"]), tmp_path / "one.png")
    accuracy_heatmap(summary_table(["m1", "m2"]), tmp_path / "two.png")
    one, two = mpimg.imread(tmp_path / "one.png"), mpimg.imread(tmp_path / "two.png")
    assert two.shape[1] > 1.5 * one.shape[1] and one.std() > 0.05
