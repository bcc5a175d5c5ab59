"""The datamix design on real PBMC 3k + Kang 2018: manifests hold exactly what the recipes ask for."""

import json
import subprocess
import sys
from pathlib import Path

import anndata as ad
import pandas as pd

REPO = Path(__file__).resolve().parents[2]


def test_datamix_design_on_real_data(shared_data, tmp_path):
    config = tmp_path / "datamix.yaml"
    config.write_text((REPO / "tests/configs/datamix_real.yaml").read_text().replace("@SHARED@", str(shared_data)))
    mixes, seeds = ["base", "base+kang", "kang_alone"], [0, 1, 2]
    targets = [f"results/mixes/{m}/seed{s}.manifest.json" for m in mixes for s in seeds]
    res = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory",
                          str(tmp_path), "--configfile", str(config), "--cores", "2", *targets],
                         capture_output=True, text=True)  # fmt: skip
    assert res.returncode == 0, res.stderr[-4000:]

    expected = {"base": {"pbmc3k": 1000}, "base+kang": {"pbmc3k": 500, "kang": 500}, "kang_alone": {"kang": 1000}}
    cells = {}
    for m in mixes:
        for s in seeds:
            info = json.loads((tmp_path / f"results/mixes/{m}/seed{s}.manifest.json").read_text())
            assert info["cells_per_dataset"] == expected[m] and info["n_cells"] == 1000 and info["seed"] == s
            assert info["match_on"] == "gene_ids"
            tab = pd.read_csv(tmp_path / f"results/mixes/{m}/seed{s}.manifest.tsv", sep="\t")
            assert tab.groupby("dataset")["n_cells"].sum().to_dict() == expected[m]
            cells[m, s] = ad.read_h5ad(tmp_path / f"results/mixes/{m}/seed{s}.h5ad", backed="r").obs
    # seeds draw different cells; within a seed the base half is nested in the base mix
    assert set(cells["base", 0].index) != set(cells["base", 1].index)
    for s in seeds:
        base_half = set(cells["base+kang", s].query("dataset == 'pbmc3k'").index)
        assert base_half < set(cells["base", s].index)
    # Kang's donors survive mixing with PBMC 3k, which has none: NA for the PBMC 3k cells, counted as NA
    for s in seeds:
        obs = cells["base+kang", s]
        kang_donors = obs.loc[obs["dataset"] == "kang", "donor"]
        assert kang_donors.notna().all() and kang_donors.nunique() == 8
        assert obs.loc[obs["dataset"] == "pbmc3k", "donor"].isna().all()
        info = json.loads((tmp_path / f"results/mixes/base+kang/seed{s}.manifest.json").read_text())
        assert info["cells_per_donor"]["NA"] == 500 and sum(info["cells_per_donor"].values()) == 1000
    # genes matched on Ensembl IDs, and every mix records them
    genes = pd.read_csv(tmp_path / "results/mixes/base+kang/seed0.genes.tsv", sep="\t")
    assert len(genes) > 1000 and genes["match_key"].str.startswith("ENSG").all()
    # held-out cells never enter a mix
    for d in ("pbmc3k", "kang"):
        held = {(d, c) for c in ad.read_h5ad(tmp_path / f"results/split/{d}/eval.h5ad", backed="r").obs_names}
        for obs in cells.values():
            assert held.isdisjoint(zip(obs["dataset"].astype(str), obs["source_cell_id"], strict=True))
    qc = pd.read_csv(tmp_path / "results/qc/kang.qc.tsv", sep="\t").set_index("step")
    assert int(qc.loc["min_counts", "threshold"]) == 300  # the dataset's override, not the global 1001
