"""Perturb-seq collation on the real Papalexi 2021 ECCITE-seq screen (3 GEM groups, 110 guides)."""

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from scmix.data.fetch import fetch_dataset
from scmix.data.sources import parse_dataset
from scmix.data.sources.perturbseq import call_guides
from scmix.errors import ScmixInputError


@pytest.fixture(scope="module")
def screen(shared_data, tmp_path_factory):
    spec = {"source": "perturbseq", "url": f"file://{shared_data}/perturbseq/papalexi2021_eccite",
            "guide_targets": "grna_targets.csv"}  # fmt: skip
    raw = fetch_dataset("screen", spec, tmp_path_factory.mktemp("p") / "screen")
    return parse_dataset("screen", spec, raw), spec, raw


def test_gem_groups_collated_with_unique_barcodes(screen):
    adata, _, _ = screen
    assert adata.shape == (20729, 299) and adata.X.dtype == np.int32
    assert adata.obs_names.is_unique
    assert adata.obs["gem_group"].value_counts().sort_index().tolist() == [9428, 6001, 5300]
    assert adata.obs_names[0] == "00001-1" and adata.obs_names[-1].endswith("-3")
    assert adata.obsm["guide_counts"].shape == (20729, 110) and len(adata.uns["guides"]) == 110
    assert (adata.var["feature_types"] == "Gene Expression").all()


def test_guide_calls_and_targets_follow_the_rule(screen):
    adata, _, _ = screen
    G = adata.obsm["guide_counts"].toarray()
    guides = np.array(adata.uns["guides"])
    calls = adata.obs["guide_call"].astype(str).to_numpy()
    top, total = G.max(1), G.sum(1)
    single = (top >= 5) & (top >= 0.5 * total)
    assert (calls[single] == guides[G.argmax(1)][single]).all()
    assert set(calls[~single]) <= {"none", "multiple"}
    assert adata.obs["target_gene"].value_counts()["non-targeting"] > 1000
    nt = adata.obs["guide_call"].astype(str).str.startswith("NTg")
    assert (adata.obs.loc[nt, "target_gene"] == "non-targeting").all()
    assert not adata.obs.loc[nt, "perturbed"].any()
    assert adata.obs.loc[adata.obs["guide_call"] == "IFNGR2g1", "target_gene"].eq("IFNGR2").all()


def test_drop_non_targeting(screen):
    _, spec, raw = screen
    dropped = parse_dataset("screen", {**spec, "drop_non_targeting": True}, raw)
    assert "non-targeting" not in set(dropped.obs["target_gene"])
    assert dropped.n_obs < 20729


def test_call_guides_by_hand():
    counts = sp.csr_matrix(np.array([[10, 0, 0], [6, 5, 0], [2, 1, 0], [0, 0, 0]]))
    calls = call_guides(counts, np.array(["a", "b", "c"]), min_umis=5, min_fraction=0.6)
    assert list(calls["guide_call"]) == ["a", "multiple", "none", "none"]
    assert list(calls["n_guides_passing"]) == [1, 2, 0, 0]


def test_missing_gem_group_and_unknown_guides_are_named(screen, tmp_path):
    _, spec, raw = screen
    with pytest.raises(ScmixInputError, match="GEM group folder 'gem9' not found"):
        parse_dataset("screen", {**spec, "gem_groups": ["gem9"]}, raw)
    table = pd.read_csv(next(raw.rglob("grna_targets.csv"))).iloc[5:]
    table.to_csv(raw / "partial.csv", index=False)
    with pytest.raises(ScmixInputError, match="5 guides are not in the target table"):
        parse_dataset("screen", {**spec, "guide_targets": "partial.csv"}, raw)


def test_geo_flat_layout_of_prefixed_mex_files_collates_the_same(screen, shared_data, tmp_path):
    """GEO serves GEM groups as GSMxxx_matrix.mtx.gz etc. side by side in one folder (the RAW tar)."""
    import shutil

    adata, spec, _ = screen
    flat = tmp_path / "GSE_RAW"
    flat.mkdir()
    src = shared_data / "perturbseq" / "papalexi2021_eccite"
    for i, gem in enumerate(["gem1_rep_1", "gem2_rep_2", "gem3_rep_3"]):
        for f in ("matrix.mtx.gz", "features.tsv.gz", "barcodes.tsv.gz"):
            shutil.copy(src / gem / f, flat / f"GSM00{i}_{gem}_{f}")
    shutil.copy(src / "grna_targets.csv", flat)
    again = parse_dataset("screen", spec, flat)
    assert list(again.obs["gem_folder"].cat.categories) == ["GSM000_gem1_rep_1", "GSM001_gem2_rep_2",
                                                            "GSM002_gem3_rep_3"]  # fmt: skip
    assert list(again.obs_names) == list(adata.obs_names) and (again.X != adata.X).nnz == 0
    assert list(again.obs["guide_call"]) == list(adata.obs["guide_call"])
