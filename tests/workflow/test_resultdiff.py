"""scmix.resultdiff: what differs between two builds, said at the first differing row, element or h5ad field."""

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from scmix.io import write_h5ad, write_table
from scmix.models.checkpoint import save_payload
from scmix.resultdiff import diff_arrays, diff_file, diff_trees, result_files


def _adata(seed=0):
    rng = np.random.default_rng(seed)
    a = ad.AnnData(sp.csr_matrix(rng.poisson(1.0, (20, 8)).astype(np.int32)))
    a.obs_names = [f"c{i}" for i in range(20)]
    a.var_names = [f"g{i}" for i in range(8)]
    a.obs["cell_type"] = pd.Categorical(["T", "B"] * 10)
    a.obsm["X_latent"] = rng.normal(size=(20, 2)).astype(np.float32)
    a.uns["mix"] = {"seed": 0, "datasets": ["blood"]}
    return a


def _tree(root, adata, table, weights):
    write_h5ad(adata, root / "results/mixes/m/seed0.h5ad")
    write_table(table, root / "results/summary/t.tsv")
    save_payload(root / "results/models/x/m/seed0/model.pt", {"state_dict": weights, "meta": {"seed": 0}})
    write_table(pd.DataFrame({"s": [1.0]}), root / "results/benchmarks/train/x.tsv")  # timings: not compared
    (root / "results/mixes/m/.seed0.h5ad.abc.tmp").write_text("left by a killed job")  # temporary: not compared
    return root


def test_identical_builds_agree_and_timings_and_temp_files_are_left_out(tmp_path):
    table = pd.DataFrame({"model": ["a", "b"], "score": [0.5, 0.25], "seconds": [1.0, 2.0]})
    weights = {"w": torch.arange(6.0).reshape(2, 3)}
    a = _tree(tmp_path / "a", _adata(), table, weights)
    b = _tree(tmp_path / "b", _adata(), table.assign(seconds=[9.0, 9.0]), weights)
    (b / "results/benchmarks/train/x.tsv").write_text("s\n99\n")
    assert result_files(a) == ["results/mixes/m/seed0.h5ad", "results/models/x/m/seed0/model.pt",
                               "results/summary/t.tsv"]  # fmt: skip
    assert diff_trees(a, b) == []


def test_each_difference_is_named_where_it_first_occurs(tmp_path):
    table = pd.DataFrame({"model": ["a", "b"], "score": [0.5, 0.25]})
    a = _tree(tmp_path / "a", _adata(), table, {"w": torch.zeros(2, 3)})
    other = _adata()
    other.obsm["X_latent"][3, 1] += 1
    changed = torch.zeros(2, 3)
    changed[1, 2] = 1e-7
    b = _tree(tmp_path / "b", other, table.assign(score=[0.5, 0.26]), {"w": changed})
    (b / "results/extra.tsv").write_text("x\n1\n")
    lines = diff_trees(a, b)
    assert lines[0].startswith("results/extra.tsv: only in the second tree")
    assert "results/mixes/m/seed0.h5ad: obsm['X_latent']: 1 of 40 elements differ, first at [3, 1]" in lines[1]
    assert "results/models/x/m/seed0/model.pt: weight 'w': 1 of 6 elements differ, first at [1, 2]" in lines[2]
    assert lines[3].startswith("results/summary/t.tsv: row 2 (b), column 'score': 0.25 vs 0.26")
    assert len(lines) == 4


def test_h5ad_fields(tmp_path):
    x = _adata()
    for name, change, expected in [
        ("obs", lambda a: a.obs.__setitem__("cell_type", pd.Categorical(["B", "T"] * 10)), "obs['cell_type']"),
        ("X", lambda a: a.X.data.__setitem__(0, a.X.data[0] + 1), "X: sparse data: 1 of"),
        ("uns", lambda a: a.uns["mix"].__setitem__("seed", 1), "uns['mix']['seed']: 0 vs 1"),
        ("names", lambda a: setattr(a, "obs_names", [f"d{i}" for i in range(20)]), "obs_names differ, first at 0"),
    ]:
        y = _adata()
        change(y)
        write_h5ad(x, tmp_path / "x.h5ad")
        write_h5ad(y, tmp_path / f"{name}.h5ad")
        assert diff_file(tmp_path / "x.h5ad", tmp_path / f"{name}.h5ad").startswith(expected), name


def test_arrays():
    assert diff_arrays(np.array([1.0, np.nan]), np.array([1.0, np.nan])) is None
    assert diff_arrays(np.zeros(3), np.zeros(4)) == "shape (3,) vs (4,)"
    assert diff_arrays(np.zeros(3, np.float32), np.zeros(3)) == "dtype float32 vs float64"
    assert diff_arrays(np.array([1, 2, 3]), np.array([1, 5, 3])).startswith("1 of 3 elements differ, first at [1]")


def test_tables_of_other_lengths_and_headers(tmp_path):
    (tmp_path / "a.tsv").write_text("k\tv\n1\t2\n")
    (tmp_path / "b.tsv").write_text("k\tv\n1\t2\n3\t4\n")
    (tmp_path / "c.tsv").write_text("k\tw\n1\t2\n")
    assert diff_file(tmp_path / "a.tsv", tmp_path / "b.tsv") == "1 vs 2 rows"
    assert diff_file(tmp_path / "a.tsv", tmp_path / "c.tsv").startswith("headers differ")


def test_command_line(tmp_path, capsys):
    """python -m scmix.resultdiff A B: 'no difference' and status 0 for agreeing trees; the differing files and
    status 1 otherwise; patterns narrow what is compared."""
    from scmix.resultdiff import main

    table = pd.DataFrame({"model": ["a", "b"], "score": [0.5, 0.25]})
    a = _tree(tmp_path / "a", _adata(), table, {"w": torch.zeros(2, 3)})
    b = _tree(tmp_path / "b", _adata(), table, {"w": torch.zeros(2, 3)})
    assert main([str(a), str(b)]) == 0
    assert capsys.readouterr().out.strip() == "no difference in 3 files"
    write_table(table.assign(score=[0.5, 0.3]), b / "results/summary/t.tsv")
    assert main([str(a), str(b)]) == 1
    assert capsys.readouterr().out.startswith("results/summary/t.tsv: row 2 (b), column 'score': 0.25 vs 0.3")
    assert main([str(a), str(b), "results/mixes/**/*"]) == 0
    assert capsys.readouterr().out.strip() == "no difference in 1 files"
