"""The Curated Cancer Cell Atlas (3CA) parser on studies written in the atlas's per-study layout.

No real 3CA files are available offline, so the fixtures write small studies exactly as the atlas serves
them (Exp_data_UMIcounts.mtx genes x cells, Genes.txt / genes.txt, Cells.csv, Samples.csv), loose, zipped
per study and zipped per tissue; one study is built from the real Kang 2018 counts.
"""

import gzip
import logging
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.io
import scipy.sparse as sp

from scmix.data.sources import parse_dataset
from scmix.errors import ScmixInputError
from scmix.io import write_h5ad

SYMBOLS = [
    "ACTB", "B2M", "CD3D", "CD3E", "CD8A", "MS4A1", "CD79A", "LYZ", "CD68", "PTPRC", "EPCAM", "KRT8", "KRT18",
    "KRT19", "MKI67", "TOP2A", "COL1A1", "COL1A2", "DCN", "PECAM1", "VWF", "MALAT1", "GAPDH", "SOX2", "EGFR",
    "MYC", "ERBB2", "ESR1", "CDKN2A", "VIM",
]  # fmt: skip
CELL_TYPES = ["Malignant", "T_cell", "Macrophage", "Fibroblast"]


def make_study(rng, name, genes, n_cells, samples, subtype=False, values="int"):
    """(genes x cells matrix, Cells.csv frame) of a small study with real-looking labels."""
    X = sp.random(len(genes), n_cells, density=0.4, random_state=rng, format="coo",
                  data_rvs=lambda n: rng.integers(1, 30, n).astype(float))  # fmt: skip
    if values == "float":
        X.data = X.data / 3.7  # normalised values, not counts
    elif values == "int":
        X = X.astype(np.int64)
    sample = rng.choice(samples, n_cells)
    cells = pd.DataFrame({
        "cell_name": [f"{s}_{i:04d}" for i, s in enumerate(sample)],
        "sample": sample,
        "cell_type": rng.choice(CELL_TYPES, n_cells),
        "complexity": rng.integers(500, 4000, n_cells),
    })  # fmt: skip
    if subtype:
        cells["cell_subtype"] = np.where(cells["cell_type"] == "T_cell", "CD8", "")
    return X, cells


def write_study(folder: Path, X, genes, cells, genes_name="Genes.txt", samples=None):
    folder.mkdir(parents=True, exist_ok=True)
    scipy.io.mmwrite(folder / "Exp_data_UMIcounts.mtx", X)
    (folder / genes_name).write_text("\n".join(genes) + "\n")
    cells.to_csv(folder / "Cells.csv", index=False)
    if samples is not None:
        samples.to_csv(folder / "Samples.csv", index=False)


def zip_folders(zip_path: Path, folders: list[Path], root: Path):
    """Zip study folders (paths kept relative to root), remove them, extract as the download step does."""
    with zipfile.ZipFile(zip_path, "w") as zf:
        for folder in folders:
            for f in sorted(folder.iterdir()):
                zf.write(f, f.relative_to(root))
    for folder in folders:
        shutil.rmtree(folder)
    with zipfile.ZipFile(zip_path) as zf:
        zf.extractall(zip_path.with_suffix(""))


@pytest.fixture
def atlas(tmp_path):
    """raw_dir with four studies: a loose folder with Samples.csv, a study zip holding its folder (genes.txt
    lower-case), a tissue zip holding two study folders. Returns (raw_dir, {study: (X cells x genes, genes, cells)})."""
    rng = np.random.default_rng(7)
    raw = tmp_path / "raw"
    raw.mkdir()
    truth = {}
    layout = {
        "Gavish2023_Brain": (SYMBOLS[:28], 40, ["P1", "P2", "P3"]),
        "Bassez2021_Breast": (SYMBOLS[2:30], 35, ["BIOKEY_1", "BIOKEY_2"]),
        "Wu2021_Breast": (SYMBOLS[::-1][:27], 30, ["CID3586", "CID3921"]),  # other order, lacks ACTB, B2M, CD3D
        "Pal2021_Breast": (SYMBOLS[1:29], 25, ["N-0092", "N-0280"]),
    }
    for study, (genes, n_cells, samples) in layout.items():
        X, cells = make_study(rng, study, genes, n_cells, samples, subtype=study == "Wu2021_Breast")
        truth[study] = (sp.csr_matrix(X.T), list(genes), cells)
    X, genes, cells = truth["Gavish2023_Brain"]
    samples_table = pd.DataFrame({"sample": ["P1", "P2", "P3"], "patient": ["MGH1", "MGH1", "MGH2"],
                                  "treatment": ["naive", "TMZ", "naive"]})  # fmt: skip
    write_study(raw / "Gavish2023_Brain", X.T, genes, cells, samples=samples_table)
    X, genes, cells = truth["Bassez2021_Breast"]
    write_study(raw / "stage" / "Bassez2021_Breast", X.T, genes, cells, genes_name="genes.txt")
    zip_folders(raw / "Bassez2021_Breast.zip", [raw / "stage" / "Bassez2021_Breast"], raw / "stage")
    (raw / "stage").rmdir()
    for study in ("Wu2021_Breast", "Pal2021_Breast"):
        X, genes, cells = truth[study]
        write_study(raw / "stage" / study, X.T, genes, cells)
    zip_folders(raw / "Breast.zip", [raw / "stage" / s for s in ("Wu2021_Breast", "Pal2021_Breast")], raw / "stage")
    (raw / "stage").rmdir()
    return raw, truth


def expected_block(truth_entry, var_names):
    """The study's cells x var_names counts, zeros for genes it lacks."""
    X, genes, _ = truth_entry
    out = np.zeros((X.shape[0], len(var_names)), dtype=np.int64)
    index = {g: i for i, g in enumerate(genes)}
    dense = X.toarray()
    for j, g in enumerate(var_names):
        if g in index:
            out[:, j] = dense[:, index[g]]
    return out


def test_layout_is_the_atlas_one(atlas):
    raw, _ = atlas
    assert (raw / "Bassez2021_Breast" / "Bassez2021_Breast" / "genes.txt").is_file()
    assert (raw / "Breast" / "Wu2021_Breast" / "Exp_data_UMIcounts.mtx").is_file()
    assert (raw / "Gavish2023_Brain" / "Samples.csv").is_file()
    assert (raw / "Breast.zip").is_file() and (raw / "Bassez2021_Breast.zip").is_file()


def test_collates_every_study_on_the_gene_intersection(atlas, caplog, tmp_path):
    raw, truth = atlas
    with caplog.at_level(logging.INFO, logger="scmix.data.sources.cca"):
        adata = parse_dataset("cca", {"source": "cca"}, raw)
    common = set.intersection(*(set(g) for _, g, _ in truth.values()))
    assert adata.shape == (40 + 35 + 30 + 25, len(common))
    assert list(adata.var_names) == [g for g in truth["Bassez2021_Breast"][1] if g in common]  # first study's order
    assert (adata.var["gene_ids"] == adata.var_names).all() and (adata.var["n_studies"] == 4).all()
    assert adata.X.format == "csr" and adata.X.dtype == np.int32
    for study, entry in truth.items():
        part = adata[adata.obs["study"] == study]
        assert list(part.obs_names) == [f"{study}:{c}" for c in entry[2]["cell_name"]]
        assert list(part.obs["cell_type"]) == list(entry[2]["cell_type"])
        assert list(part.obs["sample"]) == list(entry[2]["sample"])
        np.testing.assert_array_equal(part.X.toarray(), expected_block(entry, adata.var_names))
    assert {"study", "cell_name", "sample", "cell_type", "complexity", "cell_subtype"} <= set(adata.obs.columns)
    assert adata.obs["complexity"].dtype.kind == "i" and adata.obs_names.is_unique
    lost = [r.getMessage() for r in caplog.records if "loses" in r.getMessage()]
    assert len(lost) == 4 and any("'Wu2021_Breast' loses 2 of its 27 genes" in m for m in lost)
    assert adata.uns["cca"]["studies"]["Pal2021_Breast"] == 25
    write_h5ad(adata, tmp_path / "out.h5ad")  # every label is writable


def test_samples_csv_is_joined_on_sample(atlas):
    raw, truth = atlas
    adata = parse_dataset("cca", {"source": "cca", "studies": ["Gavish2023_Brain", "Pal2021_Breast"]}, raw)
    brain = adata.obs[adata.obs["study"] == "Gavish2023_Brain"]
    expected = brain["sample"].map({"P1": "naive", "P2": "TMZ", "P3": "naive"})
    assert list(brain["treatment"]) == list(expected)
    assert list(brain["patient"]) == list(brain["sample"].map({"P1": "MGH1", "P2": "MGH1", "P3": "MGH2"}))
    assert adata.obs.loc[adata.obs["study"] == "Pal2021_Breast", "treatment"].isna().all()


def test_listed_studies_on_the_gene_union(atlas, caplog):
    raw, truth = atlas
    spec = {"source": "cca", "studies": ["Gavish2023_Brain", "wu2021"], "genes": "union"}  # case, unique part
    with caplog.at_level(logging.INFO, logger="scmix.data.sources.cca"):
        adata = parse_dataset("cca", spec, raw)
    assert set(adata.obs["study"]) == {"Gavish2023_Brain", "wu2021"}
    assert set(adata.var_names) == set(truth["Gavish2023_Brain"][1]) | set(truth["Wu2021_Breast"][1])
    assert adata.var.loc["ACTB", "n_studies"] == 1 and adata.var.loc["CD8A", "n_studies"] == 2
    wu = adata[adata.obs["study"] == "wu2021"]
    np.testing.assert_array_equal(wu.X.toarray(), expected_block(truth["Wu2021_Breast"], adata.var_names))
    assert wu[:, "ACTB"].X.nnz == 0
    assert any("'wu2021' lacks 3 of the 30 union genes" in r.getMessage() for r in caplog.records)


def test_filter_keeps_only_the_listed_cell_types(atlas):
    raw, truth = atlas
    adata = parse_dataset("cca", {"source": "cca", "filter": {"cell_type": ["Malignant"]}}, raw)
    n_malignant = sum(int((c["cell_type"] == "Malignant").sum()) for _, _, c in truth.values())
    assert adata.n_obs == n_malignant > 0 and set(adata.obs["cell_type"]) == {"Malignant"}
    bassez = truth["Bassez2021_Breast"]
    keep = (bassez[2]["cell_type"] == "Malignant").to_numpy()
    part = adata[adata.obs["study"] == "Bassez2021_Breast"]
    np.testing.assert_array_equal(part.X.toarray(), expected_block(bassez, adata.var_names)[keep])
    both = parse_dataset("cca", {"source": "cca", "filter": {"cell_type": ["Malignant"], "sample": ["P1", "P2"]}}, raw)
    assert set(both.obs["study"]) == {"Gavish2023_Brain"} and set(both.obs["sample"]) <= {"P1", "P2"}


def test_non_integer_study_is_rejected_by_name_or_excluded(atlas, caplog):
    raw, _ = atlas
    X, cells = make_study(np.random.default_rng(1), "Tirosh2016_Melanoma", SYMBOLS, 20, ["Mel79"], values="float")
    write_study(raw / "Tirosh2016_Melanoma", X, SYMBOLS, cells)
    with pytest.raises(ScmixInputError) as err:
        parse_dataset("cca", {"source": "cca"}, raw)
    message = str(err.value)
    assert "dataset 'cca'" in message and "study 'Tirosh2016_Melanoma'" in message
    assert "Tirosh2016_Melanoma/Exp_data_UMIcounts.mtx" in message and "not integers" in message
    with caplog.at_level(logging.WARNING, logger="scmix.data.sources.cca"):
        adata = parse_dataset("cca", {"source": "cca", "non_integer": "exclude"}, raw)
    assert "Tirosh2016_Melanoma" not in set(adata.obs["study"]) and adata.n_obs == 130
    assert any("'Tirosh2016_Melanoma' excluded" in r.getMessage() for r in caplog.records)
    assert "Tirosh2016_Melanoma" in adata.uns["cca"]["excluded_non_integer"]
    with pytest.raises(ScmixInputError, match="every study was excluded"):
        parse_dataset("cca", {"source": "cca", "non_integer": "exclude", "studies": ["Tirosh2016_Melanoma"]}, raw)


def test_real_field_holding_whole_numbers_is_accepted(tmp_path):
    X, cells = make_study(np.random.default_rng(2), "S", SYMBOLS[:10], 12, ["s1"], values="whole_floats")
    write_study(tmp_path / "raw" / "S", X, SYMBOLS[:10], cells)
    assert "real" in (tmp_path / "raw" / "S" / "Exp_data_UMIcounts.mtx").read_text().splitlines()[0]
    adata = parse_dataset("s", {"source": "cca"}, tmp_path / "raw")
    np.testing.assert_array_equal(adata.X.toarray(), X.T.toarray())


def test_shape_disagreements_are_errors(atlas):
    raw, truth = atlas
    folder = raw / "Gavish2023_Brain"
    (folder / "Genes.txt").write_text("\n".join(truth["Gavish2023_Brain"][1] + ["EXTRA1"]) + "\n")
    with pytest.raises(ScmixInputError, match=r"study 'Gavish2023_Brain': matrix is 28 x 40 but Genes.txt lists 29"):
        parse_dataset("cca", {"source": "cca"}, raw)
    (folder / "Genes.txt").write_text("\n".join(truth["Gavish2023_Brain"][1]) + "\n")
    truth["Gavish2023_Brain"][2].iloc[:-1].to_csv(folder / "Cells.csv", index=False)
    with pytest.raises(ScmixInputError, match=r"Cells.csv 39 cells") as err:
        parse_dataset("cca", {"source": "cca", "studies": ["Gavish2023_Brain"]}, raw)
    assert "Gavish2023_Brain/Exp_data_UMIcounts.mtx" in str(err.value)


def test_transposed_matrix_is_named(tmp_path):
    X, cells = make_study(np.random.default_rng(3), "T", SYMBOLS[:8], 5, ["s"])
    write_study(tmp_path / "T", X, SYMBOLS[:8], cells)
    scipy.io.mmwrite(tmp_path / "T" / "Exp_data_UMIcounts.mtx", X.T)
    with pytest.raises(ScmixInputError, match="looks transposed"):
        parse_dataset("t", {"source": "cca"}, tmp_path)


def test_missing_file_unknown_study_and_empty_filter_are_errors(atlas):
    raw, _ = atlas
    with pytest.raises(ScmixInputError, match=r"listed study 'Smith2099' not found; study folders present: \["):
        parse_dataset("cca", {"source": "cca", "studies": ["Smith2099"]}, raw)
    with pytest.raises(ScmixInputError, match=r"no cells left after the filter .*'Malignant_X'.*values present"):
        parse_dataset("cca", {"source": "cca", "filter": {"cell_type": ["Malignant_X"]}}, raw)
    with pytest.raises(ScmixInputError, match=r"filter column\(s\) \['tissue'\] are in no study"):
        parse_dataset("cca", {"source": "cca", "filter": {"tissue": ["Breast"]}}, raw)
    with pytest.raises(ScmixInputError, match="matches several study folders"):
        parse_dataset("cca", {"source": "cca", "studies": ["Breast"]}, raw)
    (raw / "Breast" / "Pal2021_Breast" / "Cells.csv").unlink()
    with pytest.raises(ScmixInputError, match=r"study 'Pal2021_Breast' lacks its Cells.csv") as err:
        parse_dataset("cca", {"source": "cca"}, raw)
    assert "dataset 'cca'" in str(err.value) and "Pal2021_Breast/Cells.csv" in str(err.value)
    (raw.parent / "empty").mkdir()
    with pytest.raises(ScmixInputError, match="no 3CA study folder"):
        parse_dataset("cca", {"source": "cca"}, raw.parent / "empty")


def test_real_kang_counts_survive_the_3ca_layout(shared_data, tmp_path):
    """A few hundred real Kang 2018 cells written as two 3CA studies (by donor) parse back to the same counts."""
    kang = shared_data / "kang2018"
    counts = sp.csc_matrix(scipy.io.mmread(kang / "matrix.mtx.gz"))  # genes x cells
    with gzip.open(kang / "features.tsv.gz", "rt") as fh:
        symbols = [line.split("\t")[1] for line in fh]
    with gzip.open(kang / "barcodes.tsv.gz", "rt") as fh:
        barcodes = [line.strip() for line in fh]
    meta = pd.read_csv(kang / "cell_metadata.csv").set_index("barcode").loc[barcodes]
    rng = np.random.default_rng(0)
    raw, picked = tmp_path / "raw", {}
    for donor, n in ((1015, 180), (1256, 150)):
        cells = np.sort(rng.choice(np.flatnonzero(meta["donor"].to_numpy() == donor), n, replace=False))
        every = np.arange(len(symbols))
        genes = every if donor == 1015 else rng.permutation(np.setdiff1d(every, every[::10]))  # other order, fewer
        table = pd.DataFrame({"cell_name": [barcodes[i] for i in cells], "sample": f"donor{donor}",
                              "cell_type": meta["cell_type"].to_numpy()[cells], "patient": str(donor)})  # fmt: skip
        write_study(raw / f"Kang2018_{donor}", counts[genes][:, cells], [symbols[g] for g in genes], table)
        picked[f"Kang2018_{donor}"] = cells
    adata = parse_dataset("kang", {"source": "cca"}, raw)
    assert adata.shape == (330, 1287 - 129)
    gene_rows = [symbols.index(g) for g in adata.var_names]
    for study, cells in picked.items():
        part = adata[adata.obs["study"] == study]
        original = counts[gene_rows][:, cells].T.tocsr()
        assert (part.X != original).nnz == 0 and part.X.sum() == original.sum() > 0
        assert list(part.obs["cell_type"]) == list(meta["cell_type"].to_numpy()[cells])
    first = adata.obs.iloc[0]
    assert first["study"] == "Kang2018_1015" and first["sample"] == "donor1015"
    assert first["cell_type"] == meta.loc[first["cell_name"], "cell_type"]
