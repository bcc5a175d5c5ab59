import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from anndata import AnnData

from scmix.data.genes import gene_keys, highly_variable, read_gene_list, resolve_match_on, select, shared_keys
from scmix.data.mix import make_mix
from scmix.errors import ScmixInputError


def dataset(symbols, ids, n=6, seed=0):
    X = sp.csr_matrix(np.random.default_rng(seed).poisson(3, (n, len(symbols))))
    return AnnData(X, var=pd.DataFrame({"gene_ids": ids}, index=symbols),
                   obs=pd.DataFrame(index=[f"c{seed}_{i}" for i in range(n)]))  # fmt: skip


def test_ids_match_across_versions_and_renamed_symbols():
    a = dataset(["TP53", "GAPDH", "ACTB"], ["ENSG01.3", "ENSG02.1", "ENSG03.7"])
    b = dataset(["ACTB", "P53_old", "XIST"], ["ENSG03.9", "ENSG01.1", "ENSG09.1"], seed=1)
    parts = {"a": a, "b": b}
    assert resolve_match_on(parts) == "gene_ids"
    keys = shared_keys(parts, "gene_ids", min_shared=1)
    assert list(keys) == ["ENSG01", "ENSG03"]  # first dataset's order, version ignored
    np.testing.assert_array_equal(select(b, keys, "gene_ids").X.toarray(), b.X.toarray()[:, [1, 0]])
    assert list(shared_keys(parts, "symbols", min_shared=1)) == ["ACTB"]


def test_auto_falls_back_to_symbols_without_ensembl_ids():
    a = dataset(["A", "B"], ["ENSG1", "ENSG2"])
    b = dataset(["B", "A"], ["x", "y"], seed=1)
    assert resolve_match_on({"a": a, "b": b}) == "symbols"
    with pytest.raises(ScmixInputError, match="share only 0 genes"):
        shared_keys({"a": a, "b": dataset(["C"], ["z"], seed=2)}, "symbols", min_shared=1)


def test_a_mix_of_datasets_sharing_too_few_genes_stops_with_the_numbers_and_the_setting():
    """29 of 558 genes shared (the mitochondrial genes of two panels, say): not a gene space to train on."""
    a = dataset([f"G{i}" for i in range(558)], [f"x{i}" for i in range(558)], n=40)
    b = dataset([f"G{i}" for i in range(529, 1087)], [f"y{i}" for i in range(558)], n=40, seed=1)
    recipe = {"total_cells": 40, "datasets": {"a": 0.5, "b": 0.5}}
    with pytest.raises(ScmixInputError) as err:
        make_mix("ab", recipe, {"a": a, "b": b}, seed=0)
    assert str(err.value) == (
        "the datasets of mix 'ab' share only 29 genes (matched on symbols; genes per dataset: a 558, b 558), fewer "
        "than genes.min_shared = 500; check that the datasets name genes the same way (genes.match_on), or lower "
        "genes.min_shared"
    )
    mix = make_mix("ab", recipe, {"a": a, "b": b}, seed=0, min_shared=29)  # lowered on purpose: it trains on 29
    assert mix.n_vars == 29 and mix.uns["mix"]["n_shared_genes"] == 29
    # one dataset alone keeps its genes: nothing is lost to an intersection
    alone = make_mix("a", {"total_cells": 20, "datasets": {"a": 1.0}}, {"a": a}, seed=0)
    assert alone.n_vars == alone.uns["mix"]["n_shared_genes"] == 558


def test_gene_list_fixes_the_gene_space(tmp_path):
    a = dataset(["A", "B", "C"], ["1", "2", "3"])
    (tmp_path / "genes.txt").write_text("# model genes\nC\nA\n")
    genes = read_gene_list(tmp_path / "genes.txt")
    assert list(shared_keys({"a": a}, "symbols", genes)) == ["C", "A"]
    with pytest.raises(ScmixInputError, match="1 genes of the gene list are not in the dataset"):
        shared_keys({"a": a}, "symbols", ["A", "Z"])


def test_real_pbmc3k_and_kang2018_harmonise_on_ensembl_ids(pbmc3k, shared_data):
    import scanpy as sc

    kang = sc.read_10x_mtx(shared_data / "kang2018", var_names="gene_symbols")
    parts = {"pbmc3k": pbmc3k, "kang": kang}
    assert resolve_match_on(parts) == "gene_ids"
    by_id = shared_keys(parts, "gene_ids")
    by_symbol = shared_keys(parts, "symbols")
    assert len(by_id) > 1000 and len(by_id) >= len(by_symbol)
    mix = make_mix("base+kang", {"total_cells": 400, "datasets": {"pbmc3k": 0.5, "kang": 0.5}}, parts, seed=0)
    assert mix.n_vars == len(by_id) and list(mix.var["match_key"]) == list(by_id)
    # the same gene in both datasets lands in the same column
    kang_ids = gene_keys(kang, "gene_ids")
    from_kang = mix[mix.obs["dataset"] == "kang"]
    col = 0
    src = kang[from_kang.obs["source_cell_id"]].X[:, kang_ids.get_loc(by_id[col])].toarray().ravel()
    np.testing.assert_array_equal(from_kang.X[:, col].toarray().ravel(), src)


def test_hvg_on_raw_counts_selects_the_variable_genes(blood):
    hvg = highly_variable(blood, 100, "seurat_v3")
    assert len(hvg) == 100 and set(hvg) <= set(blood.var_names)
    mix = make_mix("m", {"total_cells": 300, "datasets": {"blood": 1.0}}, {"blood": blood}, seed=0, n_top_genes=50)
    assert mix.n_vars == 50 and mix.uns["mix"]["n_top_genes"] == 50


def test_positions_take_the_first_of_a_repeated_key_and_mark_absent_ones():
    from scmix.data.genes import positions

    np.testing.assert_array_equal(positions(["a", "b", "a", "c"], ["c", "a", "z", "b"]), [3, 0, -1, 1])


def test_match_on_auto_logs_its_decision_and_reason(pbmc3k, kang2018, caplog):
    from scmix.data.genes import resolve_match_on

    with caplog.at_level("INFO", logger="scmix.data.genes"):
        assert resolve_match_on({"pbmc3k": pbmc3k, "kang": kang2018}, what="mix 'm'") == "gene_ids"
    assert "mix 'm': genes matched on Ensembl IDs (genes.match_on auto): every dataset has them" in caplog.text
    symbols_only = kang2018.copy()
    del symbols_only.var["gene_ids"]
    caplog.clear()
    with caplog.at_level("INFO", logger="scmix.data.genes"):
        assert resolve_match_on({"pbmc3k": pbmc3k, "kang": symbols_only}, what="mix 'm'") == "symbols"
    assert "genes matched on symbols (genes.match_on auto), since dataset 'kang' has no var['gene_ids']" in caplog.text
