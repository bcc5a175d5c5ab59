"""The workflow acquires real public data (../shared/data) through file:// and a local HTTP server."""

import functools
import hashlib
import http.server
import json
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import anndata as ad
import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def http_root(shared_data):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(shared_data))
    handler.log_message = lambda *a: None
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def base_config(datasets):
    return {
        "seeds": [0],
        "datasets": datasets,
        "mixes": {"m": {"total_cells": 10, "datasets": {next(iter(datasets)): 1.0}}},
        "models": {"ldvae": {"architecture": "ldvae"}},
    }


def run(workdir, config, *targets):
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(workdir),
           "--configfile", str(path), "--cores", "2", *targets]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True)


def test_real_sources_through_http_and_file_urls(shared_data, http_root, tmp_path):
    tarball = shared_data / "pbmc3k" / "pbmc3k_filtered_gene_bc_matrices.tar.gz"
    datasets = {
        "pbmc3k": {"source": "tenx", "url": f"{http_root}/pbmc3k/{tarball.name}",
                   "sha256": hashlib.sha256(tarball.read_bytes()).hexdigest(),
                   "labels": {"url": f"{http_root}/pbmc3k/cell_types.csv", "barcode_column": "barcode"}},
        "kang": {"source": "tenx", "url": f"file://{shared_data}/kang2018",
                 "labels": {"url": f"file://{shared_data}/kang2018/cell_metadata.csv"}},
        "screen": {"source": "perturbseq", "url": f"file://{shared_data}/perturbseq/papalexi2021_eccite",
                   "guide_targets": "grna_targets.csv"},
    }  # fmt: skip
    has_r = shutil.which("Rscript") is not None
    if has_r:  # a recount3 project read by the R rule from the mirror, over HTTP
        datasets["bulk"] = {"source": "recount3", "mirror": f"{http_root}/recount3/mirror", "project": "DRP004088",
                            "gene_filter": {"method": "min_samples", "min_count": 5, "min_samples": 2}}  # fmt: skip
    res = run(tmp_path, base_config(datasets), *(f"results/raw/{d}.h5ad" for d in datasets))
    assert res.returncode == 0, res.stderr[-4000:]

    pbmc = ad.read_h5ad(tmp_path / "results/raw/pbmc3k.h5ad")
    assert pbmc.shape == (2638, 13714) and pbmc.obs["cell_type"].nunique() == 9
    assert pbmc.X.dtype.kind == "i" and pbmc.uns["source_type"] == "tenx"
    kang = ad.read_h5ad(tmp_path / "results/raw/kang.h5ad")
    assert kang.shape == (12261, 1287)
    assert kang.obs["donor"].nunique() == 8 and kang.obs["cell_type"].nunique() == 8
    screen = ad.read_h5ad(tmp_path / "results/raw/screen.h5ad")
    assert screen.shape == (20729, 299) and screen.obsm["guide_counts"].shape[1] == 110
    assert sorted(screen.obs["gem_group"].unique()) == [1, 2, 3]
    assert "non-targeting" in set(screen.obs["target_gene"])
    log = (tmp_path / "logs/download/pbmc3k.log").read_text()
    assert "bytes in" in log  # download progress was reported
    if not has_r:
        pytest.skip("Rscript not installed: recount3 part not run (make setup installs r-base-core r-bioc-edger)")
    bulk = ad.read_h5ad(tmp_path / "results/raw/bulk.h5ad")
    assert bulk.shape[0] == 2 and set(bulk.obs["external_id"]) == {"DRR057223", "DRR057224"}
    assert bulk.var["gene_ids"].str.startswith("ENSG").all() and bulk.X.dtype.kind == "i"
    X = bulk.X.toarray()
    assert ((X >= 5).sum(axis=0) == 2).all()  # the min-samples rule: >= 5 reads in both samples


def test_bad_input_stops_the_job_with_one_clear_message_and_no_output(shared_data, tmp_path):
    datasets = {"pbmc3k": {"source": "tenx", "url": f"file://{shared_data}/pbmc3k/pbmc3k_filtered_gene_bc_matrices.tar.gz",
                           "sha256": "0" * 64}}  # fmt: skip
    res = run(tmp_path, base_config(datasets), "results/raw/pbmc3k.h5ad")
    assert res.returncode != 0
    log = (tmp_path / "logs/download/pbmc3k.log").read_text()
    errors = [line for line in log.splitlines() if " ERROR " in line]
    assert len(errors) == 1
    assert "dataset 'pbmc3k'" in errors[0] and "pbmc3k_filtered_gene_bc_matrices.tar.gz" in errors[0]
    assert "sha256 mismatch" in errors[0]
    assert not (tmp_path / "resources/raw/pbmc3k").exists()
    leftovers = list((tmp_path / "resources/raw").glob(".*")) if (tmp_path / "resources/raw").exists() else []
    assert leftovers == []  # no temporary download folder survives either
    assert not (tmp_path / "results/raw/pbmc3k.h5ad").exists()


def test_bulk_path_qc_split_and_mix_on_airway(shared_data, tmp_path):
    config = {
        "seeds": [0, 1],
        "datasets": {"airway": {"source": "h5ad", "url": f"file://{shared_data}/bulk/airway/airway.h5ad",
                                "qc": {"mode": "bulk", "min_count": 10, "min_samples": 4}}},
        "split": {"eval_fraction": 0.25, "seed": 0, "stratify": "dex"},
        "mixes": {"bulk": {"datasets": {"airway": {"cells": 5}}}},
        "models": {"ldvae": {"architecture": "ldvae"}},
    }  # fmt: skip
    res = run(tmp_path, config, "results/mixes/bulk/seed0.manifest.json", "results/mixes/bulk/seed1.manifest.json")
    assert res.returncode == 0, res.stderr[-4000:]
    qc = pd.read_csv(tmp_path / "results/qc/airway.qc.tsv", sep="\t").set_index("step")
    assert qc.loc["min_samples", "genes_left"] == 16139 and qc.loc["min_samples", "cells_left"] == 8
    held = ad.read_h5ad(tmp_path / "results/split/airway/eval.h5ad")
    assert held.n_obs == 2 and set(held.obs["dex"]) == {"trt", "untrt"}  # stratified by treatment
    assert (held.obs["library_size"] > 1e7).all()  # library size recorded before filtering
    mixes = [json.loads((tmp_path / f"results/mixes/bulk/seed{s}.manifest.json").read_text()) for s in (0, 1)]
    assert all(m["cells_per_dataset"] == {"airway": 5} and m["n_genes"] == 16139 for m in mixes)
