import functools
import os
import re
import subprocess
import tarfile
from pathlib import Path

import pytest
import yaml
from snakerun import snakemake

from scmix.threads import wait_briefly

REPO = Path(__file__).resolve().parents[1]
# ../shared/data beside the checkout; SCMIX_SHARED_DATA names another copy (the GPU machine gets one carried in)
SHARED = Path(os.environ.get("SCMIX_SHARED_DATA") or REPO.parent / "shared" / "data")

# The suite runs in pytest-xdist workers (make test: -n 3 on two cores). Torch's OpenMP threads then share
# the cores with the other workers: they wait briefly instead of spinning (as the workflow's jobs do), and each
# worker's own torch keeps to one thread (a test that needs more sets them itself; a rule sets its job's threads).
wait_briefly()
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")


# Tests that share a build run in the same worker, so that it is built once: every test of a module that uses tiny_run
# (a whole run of the workflow), and the tests of a module that defines a fixture it builds once for the module; every
# other test is scheduled on its own. (xdist's own --dist loadgroup cannot do this with pytest 9: its group suffix
# no longer reaches the node ids.) The largest groups are handed out first.
@functools.cache
def module_group(module: str) -> str | None:
    """The unit of a test module's tests (its path from the repository), or None: each test on its own."""
    text = (REPO / module).read_text() if (REPO / module).is_file() else ""
    if "tiny_run" in text:
        return "tiny_run"
    if re.search(r'@pytest\.fixture\(scope="(module|session)"', text):
        return module
    return None


def build_group(nodeid: str) -> str:
    return module_group(nodeid.split("::", 1)[0]) or nodeid


def pytest_xdist_make_scheduler(config, log):
    from xdist.scheduler import LoadScopeScheduling

    class SharedBuilds(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return build_group(nodeid)

    return SharedBuilds(config, log)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """The tiny config, with the coarse label map, run once through the whole workflow: (workdir, config).

    Shared by the end-to-end checks of the results and of the report, so the workflow runs once."""
    workdir = tmp_path_factory.mktemp("tiny_run")
    cfg = yaml.safe_load((REPO / "tests/configs/tiny.yaml").read_text())
    cfg["evaluation"]["synthetic"]["label_map"] = str(REPO / "tests/configs/tiny_labels.tsv")
    config = workdir / "tiny.yaml"
    config.write_text(yaml.safe_dump(cfg))
    res = snakemake(workdir, "--cores", "2", config=config)
    assert res.returncode == 0, res.stderr[-5000:]
    return workdir, config


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"real data folder {SHARED} is absent (a fresh clone has no ../shared)")
    return SHARED


@pytest.fixture(scope="session")
def pbmc3k(shared_data, tmp_path_factory):
    """Real 10x PBMC 3k (2,638 cells) with its cell types, read with scanpy from the 10x download layout."""
    import pandas as pd
    import scanpy as sc

    out = tmp_path_factory.mktemp("pbmc3k")
    with tarfile.open(shared_data / "pbmc3k" / "pbmc3k_filtered_gene_bc_matrices.tar.gz") as tar:
        tar.extractall(out, filter="data")
    adata = sc.read_10x_mtx(out / "filtered_gene_bc_matrices" / "hg19", var_names="gene_symbols")
    labels = pd.read_csv(shared_data / "pbmc3k" / "cell_types.csv", index_col=0)
    adata.obs["cell_type"] = labels.loc[adata.obs_names, "cell_type"].astype("category")
    adata.var["gene_symbols"] = adata.var_names
    return adata


@pytest.fixture(scope="session")
def universe():
    from scmix.data.simulate import Universe

    return Universe(n_genes=800, seed=3)


@pytest.fixture(scope="session")
def blood(universe):
    from scmix.data.simulate import simulate_dataset

    return simulate_dataset("blood", {"n_cells": 600, "donors": 3, "cell_types": {"T": 0.5, "B": 0.2, "Mono": 0.3}},
                            universe)  # fmt: skip


@pytest.fixture(scope="session")
def pbmc3k_split(pbmc3k):
    """PBMC 3k on its 2,000 most variable genes (log1p CP10k variance), 80 % training and 20 % held out."""
    from scmix.data.expression import log1p_cp10k
    from scmix.data.split import split_heldout
    from scmix.evaluation.metrics import top_variable_genes

    genes = top_variable_genes(log1p_cp10k(pbmc3k.X), 2000)
    data = pbmc3k[:, genes].copy()
    data.obs["dataset"] = "pbmc3k"
    return split_heldout(data, 0.2, seed=0)


@pytest.fixture(scope="session")
def kang2018(shared_data):
    """Real Kang 2018 PBMCs (12,261 control cells, 1,287 genes) with donor and cell type, read with scanpy."""
    import pandas as pd
    import scanpy as sc

    adata = sc.read_10x_mtx(shared_data / "kang2018", var_names="gene_symbols")
    meta = pd.read_csv(shared_data / "kang2018" / "cell_metadata.csv", index_col=0)
    for column in ("donor", "cell_type"):
        adata.obs[column] = meta.loc[adata.obs_names, column].astype(str).astype("category")
    adata.var["gene_symbols"] = adata.var_names
    return adata


def write_mex(adata, folder: Path, prefix: str = "") -> Path:
    """``adata`` as a 10x v3 MEX folder (gzipped matrix.mtx, features.tsv, barcodes.tsv), gene names and IDs with
    ``prefix`` put before them (a reference of several genomes)."""
    import gzip

    import scipy.io
    import scipy.sparse as sp

    folder.mkdir(parents=True, exist_ok=True)
    with gzip.open(folder / "matrix.mtx.gz", "wb") as fh:
        scipy.io.mmwrite(fh, sp.csr_matrix(adata.X).T.astype("int64"))
    ids = adata.var["gene_ids"] if "gene_ids" in adata.var else adata.var_names
    with gzip.open(folder / "features.tsv.gz", "wt") as fh:
        for gid, sym in zip(ids, adata.var_names, strict=True):
            fh.write(f"{prefix}{gid}\t{prefix}{sym}\tGene Expression\n")
    with gzip.open(folder / "barcodes.tsv.gz", "wt") as fh:
        fh.write("".join(f"{b}\n" for b in adata.obs_names))
    return folder


@pytest.fixture
def closed(monkeypatch):
    """Figures passed to plt.close by the plotting functions, to inspect what was drawn."""
    import matplotlib.pyplot as plt

    figures = []
    real_close = plt.close

    def close(fig=None):
        figures.append(fig)
        real_close(fig)

    monkeypatch.setattr(plt, "close", close)  # the pyplot every figure module draws with
    return figures


@pytest.fixture
def small_tmpfs():
    """A function mounting a tmpfs of a given size (e.g. "4m") at a folder, to make a disk fill up for real; the
    test is skipped where mounting is impossible (not root, no tmpfs). Every mount is undone afterwards."""
    mounted = []

    def mount(path: Path, size: str) -> Path:
        path.mkdir(parents=True, exist_ok=True)
        if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                                               capture_output=True).returncode != 0:  # fmt: skip
            pytest.skip("needs root and tmpfs mounts to make a small file system")
        mounted.append(path)
        return path

    yield mount
    for path in reversed(mounted):
        subprocess.run(["umount", str(path)], check=False)
