"""Scale benchmark: scmix QC + held-out split + mixing on a simulated sparse atlas (1M cells x 20k genes).

    python benchmarks/mix_scale.py                          # 1,000,000 cells x 20,000 genes, 4 datasets
    python benchmarks/mix_scale.py --cells 20000            # quick check
    python benchmarks/mix_scale.py --workdir /tmp/atlas1m --json out.json   # keep and reuse the atlas

The atlas is built directly as CSR (int32 counts), dataset by dataset, in chunks written to disk: per
cell a log-normal number of detected genes, genes drawn with replacement from a heavy-tailed (Zipf x
log-normal) abundance shifted per dataset and cell type (the multiplicity of a draw is its count), 13
``MT-`` genes in the last columns, and a fraction of low-quality cells (few genes, a high mitochondrial
share). Each dataset gets ``dataset``, ``cell_type``, ``donor`` and ``low_quality`` in ``obs`` and
Ensembl-like ``gene_ids`` in ``var``.

Every stage runs in a fresh process forked from a forkserver that has imported numpy/scipy/anndata/
scanpy/scmix once; the process reads its inputs from the work folder (as a Snakemake job reads its
h5ad), warms up the scmix call on a toy AnnData (numba JIT, lazy imports), then runs the real call:

- ``qc[d]``: ``scmix.data.qc.run_qc`` on dataset d with ``scmix.settings.resolve_qc``;
- ``split[d]``: ``scmix.data.split.split_heldout`` on the QC'd dataset;
- ``mix[recipe] sN``: as scripts/mix.py, ``scmix.data.mix.cross_source_duplicates`` (the recipe's training parts
  against every other dataset's eval set), ``make_mix`` on the training parts, ``check_no_duplicate_leak``.

Measured per stage:

- seconds: wall time of the scmix call alone (loading, warm-up and saving excluded);
- peer: in the same process right after the call, the plain scipy work the stage cannot avoid on the
  same rows: QC ``X.copy()``; split ``X[train_rows]`` and ``X[eval_rows]``; mix one ``X.sum(axis=1)`` over
  every training part and eval set it reads, then ``X_d[drawn_rows]``
  (then ``[:, shared_genes]`` where QC left the datasets different genes) per dataset +
  ``scipy.sparse.vstack``. ``time/peer`` is the ratio (both measured on the same machine in the same
  process, so the load of the machine largely cancels);
- peak RSS: the kernel's high-water mark of resident memory (``VmHWM``) of the stage's process, reset
  with ``/proc/self/clear_refs`` once the inputs are loaded (so it is the peak during the call, with the
  inputs, interpreter and libraries resident); where the reset is refused, the peak since the process
  started (loading included). ``peak/atlas`` divides it by the atlas's own bytes in memory (data +
  indices + indptr of all datasets); ``work/input`` is (peak - RSS before loading the inputs) / the
  bytes of the stage's input matrices: 1.0 would be "holds its inputs and nothing else", each further
  1.0 one more input-sized copy at the peak. A densified 20k-gene matrix would show up as ~8 or more.

A stage that raises (MemoryError included: each stage process gets an address-space limit,
``--mem-limit-gib``, so that a blow-up fails in Python with a traceback instead of waking the kernel's
OOM killer) is reported with the innermost scmix line of its traceback; later stages that need its
output are skipped.

Expected failures outside the stages (a work folder that cannot be written, a ``--json`` folder that does not
exist, an atlas build that runs out of disk or memory, arguments that leave nothing to measure) stop the
script with one line naming what is wrong, exit code 1 (2 for bad arguments), before any figure is printed.
"""

from __future__ import annotations

import argparse
import gc
import inspect
import json
import multiprocessing as mp
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
import traceback
import zlib
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

import scmix.data.mix
import scmix.data.qc
import scmix.data.split
import scmix.settings

GIB = 1024**3
ME = "benchmarks/mix_scale.py"
MT_GENES = [
    "MT-ND1",
    "MT-ND2",
    "MT-CO1",
    "MT-CO2",
    "MT-ATP8",
    "MT-ATP6",
    "MT-CO3",
    "MT-ND3",
    "MT-ND4L",
    "MT-ND4",
    "MT-ND5",
    "MT-ND6",
    "MT-CYB",
]
MT_WEIGHTS = np.array([6, 3, 14, 10, 1, 7, 11, 3, 1, 6, 3, 1, 6], dtype=float)
CELL_TYPE_SETS = [
    {"T": 0.40, "B": 0.15, "NK": 0.12, "Mono": 0.25, "DC": 0.08},
    {"T": 0.35, "B": 0.15, "NK": 0.10, "Mono": 0.30, "Platelet": 0.10},
    {"Malignant_A": 0.35, "Malignant_B": 0.25, "Fibroblast": 0.15, "T": 0.15, "Mono": 0.10},
    {"K562": 1.0},
    {"Hepatocyte": 0.5, "Kupffer": 0.2, "T": 0.2, "Endothelial": 0.1},
]
DEPTH_FACTORS = [1.0, 0.85, 1.15, 0.75, 1.25]
ZIPF = 0.9
SPLIT = {"eval_fraction": 0.2, "seed": 0, "stratify": "cell_type"}
SCMIX_PRELOAD = ["numpy", "scipy.sparse", "pandas", "anndata", "scanpy", "sklearn.model_selection"]
SCMIX_PRELOAD += ["scmix.data.qc", "scmix.data.split", "scmix.data.mix"]


# ---------------------------------------------------------------- memory


def _status_bytes(field: str) -> int | None:
    """A ``Vm*`` field of /proc/self/status in bytes (None where /proc is absent)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def rss_bytes() -> int:
    """Current resident set size of this process."""
    value = _status_bytes("VmRSS")
    if value is not None:
        return value
    import psutil

    return psutil.Process().memory_info().rss


def peak_rss_bytes() -> int:
    """High-water mark of this process's resident set (VmHWM; else ru_maxrss)."""
    value = _status_bytes("VmHWM")
    if value is not None:
        return value
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss if sys.platform == "darwin" else maxrss * 1024


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where the kernel refuses."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        return False
    return _status_bytes("VmHWM") is not None


def mem_available_bytes() -> int | None:
    try:
        with open("/proc/meminfo") as fh:
            info = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in fh}
    except OSError:
        return None
    return info.get("MemAvailable")


def csr_nbytes(X) -> int:
    return int(X.data.nbytes + X.indices.nbytes + X.indptr.nbytes)


# ---------------------------------------------------------------- storage (raw arrays + pickled frames)


def save_adata(adata: ad.AnnData, path: Path, *, with_x: bool = True) -> None:
    path.mkdir(parents=True, exist_ok=True)
    meta = {"shape": list(adata.shape)}
    if with_x:
        X = adata.X
        if not sp.issparse(X) or X.format != "csr":
            raise TypeError(f"expected CSR counts, got {type(X).__name__}")
        for part in ("data", "indices", "indptr"):
            arr = getattr(X, part)
            arr.tofile(path / f"{part}.bin")
            meta[f"{part}_dtype"] = arr.dtype.str
    adata.obs.to_pickle(path / "obs.pkl")
    adata.var.to_pickle(path / "var.pkl")
    (path / "meta.json").write_text(json.dumps(meta))


def load_adata(path: Path) -> ad.AnnData:
    """Read a saved part fully into memory (no memory map: RSS then holds the whole input)."""
    meta = json.loads((path / "meta.json").read_text())
    arrays = {p: np.fromfile(path / f"{p}.bin", dtype=np.dtype(meta[f"{p}_dtype"])) for p in ("data", "indices")}
    indptr = np.fromfile(path / "indptr.bin", dtype=np.dtype(meta["indptr_dtype"]))
    X = sp.csr_matrix((arrays["data"], arrays["indices"], indptr), shape=tuple(meta["shape"]))
    return ad.AnnData(X=X, obs=pd.read_pickle(path / "obs.pkl"), var=pd.read_pickle(path / "var.pkl"))


def load_obs_names(path: Path) -> pd.Index:
    return pd.read_pickle(path / "obs.pkl").index


# ---------------------------------------------------------------- the simulated atlas


def dataset_names(n: int) -> list[str]:
    return ["base"] + [f"ds{i}" for i in range(1, n)]


def dataset_sizes(cells: int, n_datasets: int) -> dict[str, int]:
    """The base holds 40 % of the cells (all of them when alone), the others share the rest equally."""
    names = dataset_names(n_datasets)
    if n_datasets == 1:
        return {"base": cells}
    base = int(round(0.4 * cells))
    rest = np.array_split(np.arange(cells - base), n_datasets - 1)
    return {"base": base, **{d: len(r) for d, r in zip(names[1:], rest, strict=True)}}


def effective_median_genes(spec: dict) -> float:
    return float(min(spec["median_genes"], 0.4 * (spec["genes"] - len(MT_GENES))))


def qc_thresholds(spec: dict) -> dict:
    """The workflow's demo thresholds; min_genes scaled down when a tiny gene universe makes cells small."""
    med = effective_median_genes(spec)
    return {
        "min_genes": int(min(200, med // 4)),
        "min_counts": int(min(300, med // 3)),
        "max_pct_mito": 20,
        "min_cells": 3,
        "mito_prefix": "MT-",
    }


def gene_table(spec: dict) -> pd.DataFrame:
    n_other = spec["genes"] - len(MT_GENES)
    if n_other < 50:
        raise SystemExit("--genes must be at least 63")
    names = [f"GENE{i:05d}" for i in range(n_other)] + MT_GENES
    ids = [f"ENSG{i:011d}" for i in range(spec["genes"])]
    return pd.DataFrame({"gene_ids": ids}, index=pd.Index(names, name=None))


def _abundance(spec: dict, dataset_index: int, cell_type: str) -> np.ndarray:
    """Non-mitochondrial gene weights: Zipf x log-normal, a per-dataset shift, cell-type markers."""
    n = spec["genes"] - len(MT_GENES)
    rng = np.random.default_rng([spec["seed"], 0])
    w = (rng.permutation(n) + 1.0) ** -ZIPF * rng.lognormal(0.0, 0.5, n)
    w *= np.random.default_rng([spec["seed"], 1, dataset_index]).lognormal(0.0, 0.3, n)
    rng_ct = np.random.default_rng([spec["seed"], 2, zlib.crc32(cell_type.encode())])
    markers = rng_ct.choice(n, size=min(100, n // 10), replace=False)
    w[markers] *= 8.0
    return w / w.sum()


def _unique_curve(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Expected detected genes after k draws with replacement, on a grid of k."""
    ks = np.unique(np.geomspace(1, 2e7, 500).astype(np.int64))
    log_miss = np.log1p(-w)
    detected = np.array([-np.expm1(k * log_miss).sum() for k in ks])
    return ks, detected


def _draw_chunk(rng: np.random.Generator, cdf: np.ndarray, k: np.ndarray, n_cols: int) -> sp.csr_matrix:
    """CSR rows of k[i] draws each from ``cdf``; a gene drawn m times gets count m. Indices come sorted.

    Sorted uniforms per cell from normalised cumulative exponential spacings (the last of each cell's
    k+1 spacings becomes a sentinel past the last gene), so searchsorted yields sorted gene indices and a
    run of equal indices is one non-zero with the run length as its count.
    """
    n = len(k)
    seg = k + 1
    ends = np.cumsum(seg)
    u = rng.standard_exponential(int(ends[-1]))
    np.cumsum(u, out=u)
    base = np.zeros(n)
    base[1:] = u[ends[:-1] - 1]
    scale = 1.0 / (u[ends - 1] - base)
    u -= np.repeat(base, seg)
    u *= np.repeat(scale, seg)
    u[ends - 1] = 2.0  # sentinel: searchsorted gives len(cdf)
    g = np.searchsorted(cdf, u, side="right")
    del u
    g_max = len(cdf)
    np.minimum(g, g_max, out=g)
    new = np.empty(len(g), dtype=bool)
    new[0] = True
    np.not_equal(g[1:], g[:-1], out=new[1:])
    starts = np.flatnonzero(new)
    del new
    run = np.diff(starts, append=len(g))
    genes = g[starts]
    del g
    real = genes < g_max
    cum_real = np.concatenate([[0], np.cumsum(real)])
    nnz = cum_real[np.searchsorted(starts, ends)] - cum_real[np.searchsorted(starts, ends - seg)]
    indptr = np.concatenate([[0], np.cumsum(nnz)]).astype(np.int64)
    return sp.csr_matrix(
        (run[real].astype(np.int32), genes[real].astype(np.int32), indptr), shape=(n, n_cols), copy=False
    )


def build_dataset(spec: dict, index: int, name: str, n_cells: int, out: str) -> dict:
    """Simulate one dataset chunk by chunk, appending its CSR arrays to files under ``out``."""
    t0 = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([spec["seed"], 3, index])
    n_other = spec["genes"] - len(MT_GENES)
    types = CELL_TYPE_SETS[index % len(CELL_TYPE_SETS)]
    n_per_type = rng.multinomial(n_cells, np.array(list(types.values())) / sum(types.values()))
    median = effective_median_genes(spec) * DEPTH_FACTORS[index % len(DEPTH_FACTORS)]
    median = min(median, 0.45 * n_other)
    n_donors = int(rng.integers(3, 9))
    mt_w = MT_WEIGHTS / MT_WEIGHTS.sum()
    offset = 0
    obs_parts, nnz_per_cell, totals, mito = [], [], [], []
    with (
        open(out / "data.bin", "wb") as f_data,
        open(out / "indices.bin", "wb") as f_ind,
        open(out / "indptr64.bin", "wb") as f_ptr,
    ):
        np.zeros(1, dtype=np.int64).tofile(f_ptr)
        for cell_type, n_type in zip(types, n_per_type, strict=True):
            w = _abundance(spec, index, cell_type)
            cdf = np.cumsum(w)
            cdf[-1] = 1.0
            ks, curve = _unique_curve(w)
            for lo in range(0, int(n_type), spec["chunk"]):
                n = min(spec["chunk"], int(n_type) - lo)
                low_q = rng.random(n) < spec["low_quality"]
                target = np.where(
                    low_q, rng.lognormal(np.log(median / 8), 0.5, n), rng.lognormal(np.log(median), 0.45, n)
                )
                target = np.clip(target, 3, 0.9 * curve[-1])
                k = np.maximum(np.interp(target, curve, ks).astype(np.int64), 1)
                A = _draw_chunk(rng, cdf, k, n_other)
                frac = np.where(low_q, rng.uniform(0.25, 0.75, n), rng.beta(2.0, 38.0, n))
                mt_total = k * frac / (1 - frac)
                B = sp.csr_matrix(rng.poisson(mt_total[:, None] * mt_w[None, :]).astype(np.int32))
                X = sp.hstack([A, B], format="csr")
                X.data.astype(np.int32, copy=False).tofile(f_data)
                X.indices.astype(np.int32, copy=False).tofile(f_ind)
                (X.indptr[1:].astype(np.int64) + offset).tofile(f_ptr)
                offset += X.nnz
                nnz_per_cell.append(np.diff(X.indptr))
                tot = np.asarray(X.sum(axis=1, dtype=np.int64)).ravel()
                totals.append(tot)
                mito.append(np.asarray(B.sum(axis=1, dtype=np.int64)).ravel() / np.maximum(tot, 1))
                obs_parts.append(
                    pd.DataFrame(
                        {
                            "cell_type": cell_type,
                            "donor": rng.integers(0, n_donors, n),
                            "low_quality": low_q,
                        }
                    )
                )
                del A, B, X
    indptr = np.fromfile(out / "indptr64.bin", dtype=np.int64)
    (out / "indptr64.bin").unlink()
    if offset < np.iinfo(np.int32).max:
        indptr = indptr.astype(np.int32)
    indptr.tofile(out / "indptr.bin")
    obs = pd.concat(obs_parts, ignore_index=True)
    obs.index = pd.Index([f"{name}-{i:07d}" for i in range(n_cells)])
    obs.insert(0, "dataset", pd.Categorical([name] * n_cells))
    obs["cell_type"] = obs["cell_type"].astype("category")
    obs["donor"] = pd.Categorical([f"{name}_donor{d}" for d in obs["donor"]])
    obs.to_pickle(out / "obs.pkl")
    gene_table(spec).to_pickle(out / "var.pkl")
    meta = {"shape": [n_cells, spec["genes"]], "data_dtype": "<i4", "indices_dtype": "<i4"}
    meta["indptr_dtype"] = indptr.dtype.str
    (out / "meta.json").write_text(json.dumps(meta))
    nnz_per_cell = np.concatenate(nnz_per_cell)
    return {
        "dataset": name,
        "cells": n_cells,
        "nnz": int(offset),
        "bytes": int(offset * 8 + indptr.nbytes),
        "median_genes": float(np.median(nnz_per_cell)),
        "median_counts": float(np.median(np.concatenate(totals))),
        "median_pct_mito": float(100 * np.median(np.concatenate(mito))),
        "low_quality": int(obs["low_quality"].sum()),
        "seconds": time.perf_counter() - t0,
        "peak_rss": peak_rss_bytes(),
    }


# ---------------------------------------------------------------- stages (run in child processes)


def _toy_adata(name: str, n: int = 60, seed: int = 0) -> ad.AnnData:
    rng = np.random.default_rng(seed)
    genes = [f"G{i}" for i in range(37)] + ["MT-CO1", "MT-ND1", "MT-CYB"]
    X = sp.csr_matrix(rng.poisson(1.0, (n, len(genes))).astype(np.int32))
    obs = pd.DataFrame(
        {"cell_type": pd.Categorical(["a", "b"] * (n // 2)), "donor": pd.Categorical(["x", "y", "z"] * (n // 3))},
        index=[f"{name}-{i}" for i in range(n)],
    )
    var = pd.DataFrame({"gene_ids": [f"ENSG{i:011d}" for i in range(len(genes))]}, index=genes)
    return ad.AnnData(X=X, obs=obs, var=var)


def _warm_up(kind: str) -> None:
    """Run the stage's scmix call once on a toy AnnData: numba JIT and lazy imports stay out of the timing."""
    if kind == "qc":
        params = scmix.settings.resolve_qc({"min_genes": 1, "min_counts": 0, "min_cells": 0, "max_pct_mito": 100})
        scmix.data.qc.run_qc(_toy_adata("toy"), params)
    elif kind == "split":
        scmix.data.split.split_heldout(_toy_adata("toy"), **SPLIT)
    elif kind == "mix":
        parts = {"a": _toy_adata("a"), "b": _toy_adata("b", seed=1)}
        recipe = {"total_cells": 20, "datasets": {"a": 0.5, "b": 0.5}}
        scmix.data.mix.make_mix("toy", recipe, parts, 0, min_shared=1)  # the toy has 40 genes
        scmix.data.mix.cross_source_duplicates({"a": parts["a"]}, {"b": parts["b"]})
    gc.collect()


def _short(path: str) -> str:
    for marker in (f"{os.sep}site-packages{os.sep}", f"{os.sep}scmix{os.sep}"):
        if marker in path:
            rest = path.rsplit(marker, 1)[1]
            return rest if "site-packages" in marker else "scmix/" + rest
    return path


def _where(tb) -> str:
    """The innermost scmix frame of a traceback and the frames below it (else the innermost frame)."""
    frames = traceback.extract_tb(tb)
    if not frames:
        return ""
    ours = [i for i, f in enumerate(frames) if f"{os.sep}scmix{os.sep}" in f.filename]
    first = ours[-1] if ours else len(frames) - 1
    chain = [f"{_short(f.filename)}:{f.lineno} in {f.name}" for f in frames[first:]]
    return f"{chain[0]}: {frames[first].line}" + "".join(f"\n    -> {c}" for c in chain[1:])


def _child_main(conn, fn_name: str, kwargs: dict, mem_limit: int | None) -> None:
    try:
        if mem_limit:
            resource.setrlimit(resource.RLIMIT_AS, (mem_limit, mem_limit))
        result = globals()[fn_name](**kwargs)
    except BaseException as err:  # noqa: BLE001 - reported to the parent, which decides
        result = {
            "error": f"{type(err).__name__}: {err}"[:500],
            "where": _where(err.__traceback__),
            "traceback": traceback.format_exc()[-4000:],
            "peak_rss": peak_rss_bytes(),
        }
    conn.send(result)
    conn.close()


def _measured(kind: str, load, call, peer) -> dict:
    """Warm up, load inputs, run ``call`` under the peak-RSS meter, then time ``peer`` on the same data."""
    _warm_up(kind)
    base_rss = rss_bytes()
    inputs, input_bytes = load()
    parts = inputs.get("train", inputs).values() if isinstance(inputs, dict) else [inputs]
    cells_in = sum(a.n_obs for a in parts)  # training cells (a mix's eval sets are inputs, not counted here)
    gc.collect()
    loaded_rss = rss_bytes()
    method = "VmHWM reset after loading" if reset_peak_rss() else "process peak since start"
    t0 = time.perf_counter()
    result = call(inputs)
    seconds = time.perf_counter() - t0
    peak = peak_rss_bytes()
    t0 = time.perf_counter()
    peer(inputs, result)
    peer_seconds = time.perf_counter() - t0
    return {
        "seconds": seconds,
        "peer_seconds": peer_seconds,
        "input_bytes": input_bytes,
        "base_rss": base_rss,
        "loaded_rss": loaded_rss,
        "peak_rss": peak,
        "peak_method": method,
        "cells_in": cells_in,
        "_result": result,
    }


def stage_qc(work: str, name: str, params: dict) -> dict:
    work = Path(work)

    def load():
        adata = load_adata(work / "atlas" / name)
        return adata, csr_nbytes(adata.X)

    def peer(adata, _):
        adata.X.copy()

    row = _measured("qc", load, lambda a: scmix.data.qc.run_qc(a, params), peer)
    filtered, report = row.pop("_result")
    save_adata(filtered, work / "qc" / name)
    row.update(cells_out=filtered.n_obs, genes_out=filtered.n_vars)
    row["report"] = report.astype(str).to_dict(orient="records")
    return row


def stage_split(work: str, name: str) -> dict:
    work = Path(work)

    def load():
        adata = load_adata(work / "qc" / name)
        return adata, csr_nbytes(adata.X)

    def peer(adata, result):
        n_train = result[0].n_obs
        rows = np.random.default_rng(0).permutation(adata.n_obs)
        adata.X[np.sort(rows[:n_train])]
        adata.X[np.sort(rows[n_train:])]

    row = _measured("split", load, lambda a: scmix.data.split.split_heldout(a, **SPLIT), peer)
    train, held = row.pop("_result")[:2]
    save_adata(train, work / "split" / name / "train")
    save_adata(held, work / "split" / name / "eval")  # with counts: the mix stage looks for the same cells
    row.update(cells_out=train.n_obs, genes_out=train.n_vars)
    row["eval_cells"] = held.n_obs
    return row


def stage_mix(work: str, mix: str, recipe: dict, seed: int, kwargs: dict) -> dict:
    """As scripts/mix.py: every dataset's eval set is read (the workflow's default eval sets: all datasets), the
    training parts are checked against the other datasets' eval sets for the same cells, then mixed."""
    work = Path(work)
    names = list(recipe["datasets"])
    eval_sets = sorted(p.name for p in (work / "split").iterdir() if (p / "eval").is_dir())

    def load():
        parts = {d: load_adata(work / "split" / d / "train") for d in names}
        held = {e: load_adata(work / "split" / e / "eval") for e in eval_sets}
        nbytes = sum(csr_nbytes(a.X) for a in [*parts.values(), *held.values()])
        return {"train": parts, "eval": held}, nbytes

    def call(inputs):
        found = scmix.data.mix.cross_source_duplicates(inputs["train"], inputs["eval"])
        out = scmix.data.mix.make_mix(mix, recipe, inputs["train"], seed, **kwargs)
        scmix.data.mix.check_no_duplicate_leak(out, found, mix)
        out.uns["cross_source_pairs"] = sum(len(p) for p, _ in found.values())
        return out

    def peer(inputs, out):
        parts = inputs["train"]
        for a in [*parts.values(), *inputs["eval"].values()]:  # one pass over every input row
            a.X.sum(axis=1)
        rng = np.random.default_rng(seed)
        counts = out.uns["mix"]["cells_per_dataset"]
        pieces = []
        for d in names:
            cols = parts[d].var_names.get_indexer(out.var_names)
            rows = parts[d].X[rng.permutation(parts[d].n_obs)[: counts[d]]]
            identity = len(cols) == parts[d].n_vars and (cols == np.arange(len(cols))).all()
            pieces.append(rows if identity or (cols < 0).any() else rows[:, cols])
        sp.vstack(pieces, format="csr")

    # the atlas's datasets share every gene QC kept; --genes may be below the workflow's genes.min_shared
    kwargs = {"min_shared": 1, **kwargs}
    row = _measured("mix", load, call, peer)
    out = row.pop("_result")
    eval_ids = {e: load_obs_names(work / "split" / e / "eval") for e in eval_sets}
    scmix.data.mix.check_no_leak(out.obs["source_cell_id"], eval_ids, mix)
    row.update(cells_out=out.n_obs, genes_out=out.n_vars, cross_source_pairs=int(out.uns["cross_source_pairs"]))
    row["out_bytes"] = csr_nbytes(out.X) if sp.issparse(out.X) else int(out.X.nbytes)
    row["out_sparse"] = bool(sp.issparse(out.X))
    return row


# ---------------------------------------------------------------- parent


def run_child(ctx, fn_name: str, kwargs: dict, mem_limit: int | None) -> dict:
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child_main, args=(send, fn_name, kwargs, mem_limit))
    proc.start()
    send.close()
    try:
        result = recv.recv()
    except EOFError:
        result = None
    proc.join()
    if result is None:
        sig = -proc.exitcode if proc.exitcode and proc.exitcode < 0 else None
        why = f"killed by signal {sig} (9 = likely the kernel OOM killer)" if sig else f"exit code {proc.exitcode}"
        result = {"error": f"stage process died: {why}", "where": "", "traceback": "", "peak_rss": None}
    return result


def mix_recipes(names: list[str], total: int) -> list[tuple[str, dict]]:
    recipes = [("base", {"total_cells": total, "datasets": {"base": 1.0}})]
    if len(names) >= 2:
        recipes.append((f"base+{names[1]}", {"total_cells": total, "datasets": {"base": 0.5, names[1]: 0.5}}))
    if len(names) >= 3:
        share = 1.0 / len(names)
        fr = {d: share for d in names}
        fr[names[0]] += 1.0 - sum(fr.values())
        recipes.append(("all", {"total_cells": total, "datasets": fr}))
    return recipes


def capped_total(recipe: dict, available: dict[str, int]) -> int:
    return int(min(available[d] / f for d, f in recipe["datasets"].items()))


def fmt_table(rows: list[dict]) -> str:
    head = ["stage", "cells in", "cells out", "seconds", "peer s", "time/peer", "input GiB", "peak RSS GiB"]
    head += ["peak/atlas", "work/input"]
    lines = [head]
    for r in rows:
        if r.get("error"):
            status = "skipped" if r["error"].startswith("skipped") else "FAILED"
            lines.append([r["stage"], status, "", "", "", "", "", _gib(r.get("peak_rss")), "", ""])
            continue
        lines.append(
            [
                r["stage"],
                f"{r['cells_in']:,}" if r.get("cells_in") else "",
                f"{r.get('cells_out', 0):,}",
                "reused" if r.get("reused") else f"{r['seconds']:.2f}",
                "" if r.get("peer_seconds") is None else f"{r['peer_seconds']:.2f}",
                "" if r.get("time_ratio") is None else f"{r['time_ratio']:.1f}",
                _gib(r.get("input_bytes")),
                _gib(r.get("peak_rss")),
                "" if r.get("peak_atlas") is None else f"{r['peak_atlas']:.2f}",
                "" if r.get("work_input") is None else f"{r['work_input']:.2f}",
            ]
        )
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(head))]
    out = []
    for j, line in enumerate(lines):
        cells = [str(c).ljust(widths[0]) if i == 0 else str(c).rjust(widths[i]) for i, c in enumerate(line)]
        out.append("  ".join(cells))
        if j == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def _gib(value) -> str:
    return "" if value is None else f"{value / GIB:.3f}"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--cells", type=int, default=1_000_000, help="cells in the atlas (all datasets)")
    p.add_argument("--genes", type=int, default=20_000, help="genes (13 of them MT-)")
    p.add_argument("--datasets", type=int, default=4, help="datasets (base 40%% of the cells, the rest equal)")
    p.add_argument("--median-genes", type=float, default=1200, help="median detected genes of a good cell")
    p.add_argument("--low-quality", type=float, default=0.08, help="fraction of low-quality cells")
    p.add_argument("--mix-cells", type=int, default=200_000, help="total_cells of every mix (capped to fit)")
    p.add_argument("--seeds", type=int, default=2, help="mix seeds per recipe")
    p.add_argument("--hvg", type=int, default=2000, help="also a base+X mix with make_mix(n_top_genes=N); 0: not")
    p.add_argument("--seed", type=int, default=0, help="simulation seed")
    p.add_argument("--chunk", type=int, default=4096, help="cells simulated at once")
    p.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1), help="processes building the atlas")
    p.add_argument("--workdir", help="keep the atlas and outputs here (reused when the atlas matches)")
    p.add_argument("--keep", action="store_true", help="keep the QC'd and split parts in the workdir")
    p.add_argument(
        "--mem-limit-gib",
        type=float,
        default=None,
        help="address-space limit per stage process (default: MemAvailable at start - 0.5 GiB; 0: none)",
    )
    p.add_argument("--json", help="write the results here")
    args = p.parse_args(argv)
    for name in ("cells", "datasets", "mix_cells", "seeds", "chunk", "jobs"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.genes < len(MT_GENES) + 50:
        p.error(f"--genes must be at least {len(MT_GENES) + 50} ({len(MT_GENES)} of them MT-)")
    if args.cells < 100 * args.datasets:
        p.error(f"--cells must be at least 100 x --datasets ({100 * args.datasets:,} for {args.datasets} datasets)")
    if not 0 <= args.low_quality < 1 or args.median_genes <= 0:
        p.error("--low-quality must be in [0, 1) and --median-genes positive")
    if args.mem_limit_gib is not None and args.mem_limit_gib < 0:
        p.error("--mem-limit-gib must be positive (0: no limit)")
    return args


def fail(message: str) -> SystemExit:
    """An expected failure outside the stages: one line on stderr, exit code 1."""
    print(f"{ME}: {message}", file=sys.stderr)
    return SystemExit(1)


def writable_folder(path: Path) -> None:
    """Create ``path`` if needed and write a probe file into it; stop with one line where that fails."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise fail(
            f"cannot write the work folder {path} ({type(err).__name__}: {err.strerror or err}); pass --workdir "
            "a writable folder, or leave it out for a temporary one"
        ) from None


def main(argv=None) -> int:
    args = parse_args(argv)
    t_start = time.perf_counter()
    spec = {
        "cells": args.cells,
        "genes": args.genes,
        "datasets": args.datasets,
        "median_genes": args.median_genes,
        "low_quality": args.low_quality,
        "seed": args.seed,
        "chunk": args.chunk,
    }
    avail = mem_available_bytes()
    if args.mem_limit_gib is None:
        mem_limit = int(avail - 0.5 * GIB) if avail else None
        if mem_limit is not None and mem_limit <= 0:
            raise fail(f"only {avail / GIB:.2f} GiB of memory available; free some, or set --mem-limit-gib")
    else:
        mem_limit = int(args.mem_limit_gib * GIB) or None
    if args.json and not Path(args.json).resolve().parent.is_dir():
        raise fail(f"--json {args.json}: folder {Path(args.json).resolve().parent} does not exist")
    tmp = None
    if args.workdir:
        work = Path(args.workdir).resolve()
    else:
        try:
            tmp = tempfile.mkdtemp(prefix="scmix-mix-scale-")
        except OSError as err:
            raise fail(
                f"cannot create a temporary work folder in {tempfile.gettempdir()} ({err.strerror or err}); "
                "pass --workdir a writable folder or set TMPDIR"
            ) from None
        work = Path(tmp)
    writable_folder(work)
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["__main__", *SCMIX_PRELOAD])
    env = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "loadavg_start": os.getloadavg(),
        "mem_available_start_gib": None if avail is None else round(avail / GIB, 2),
        "mem_limit_per_stage_gib": None if mem_limit is None else round(mem_limit / GIB, 2),
        "versions": {m: _version(m) for m in ("numpy", "scipy", "pandas", "anndata", "scanpy", "scikit-learn")},
    }
    print(
        f"# scmix mix_scale: {args.cells:,} cells x {args.genes:,} genes, {args.datasets} datasets; "
        f"{env['cpus']} CPUs, load average {env['loadavg_start'][0]:.2f}, "
        f"MemAvailable {env['mem_available_start_gib']} GiB, stage address-space limit "
        f"{env['mem_limit_per_stage_gib']} GiB; work folder {work}",
        flush=True,
    )
    try:
        rows, atlas = _run(args, spec, work, ctx, mem_limit)
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    env["loadavg_end"] = os.getloadavg()
    print()
    print(fmt_table(rows))
    print(
        f"\npeak RSS: VmHWM of the stage's own process (reset after loading its inputs), interpreter + "
        f"libraries + inputs + working memory; peak/atlas = peak RSS / atlas bytes ({atlas['bytes'] / GIB:.3f} "
        f"GiB); work/input = (peak - RSS before loading) / input bytes. time/peer = seconds / plain scipy "
        f"copy or row-take of the same rows. Load average at end {env['loadavg_end'][0]:.2f} "
        f"({env['cpus']} CPUs): other processes share the machine."
    )
    print(f"total wall time {time.perf_counter() - t_start:.1f} s")
    failed = [r for r in rows if r.get("error")]
    for r in failed:
        where = f"\n  at {r['where']}" if r.get("where") else ""
        print(f"{r['stage']}: {r['error']}{where}")
    if args.json:
        Path(args.json).write_text(
            json.dumps({"params": vars(args), "env": env, "atlas": atlas, "rows": rows}, indent=1)
        )
    return 1 if failed else 0


def _version(module: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(module)
    except PackageNotFoundError:
        return "?"


def _run(args, spec: dict, work: Path, ctx, mem_limit: int | None) -> tuple[list[dict], dict]:
    sizes = dataset_sizes(args.cells, args.datasets)
    names = list(sizes)
    rows: list[dict] = []

    # -- build (or reuse) the atlas
    atlas_meta = work / "atlas" / "atlas.json"
    try:
        reuse = atlas_meta.exists() and json.loads(atlas_meta.read_text()).get("spec") == spec
    except (OSError, ValueError):  # an unreadable or half-written atlas.json: build the atlas again
        reuse = False
    t0 = time.perf_counter()
    if reuse:
        built = json.loads(atlas_meta.read_text())["datasets"]
        print(f"reusing the atlas in {atlas_meta.parent}", flush=True)
    else:
        shutil.rmtree(work / "atlas", ignore_errors=True)
        jobs = max(1, min(args.jobs, len(names)))
        build_error = None
        with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
            futures = [
                pool.submit(build_dataset, spec, i, d, sizes[d], str(work / "atlas" / d)) for i, d in enumerate(names)
            ]
            try:
                built = [f.result() for f in futures]
            except (OSError, MemoryError, BrokenProcessPool) as err:
                build_error = err
                pool.shutdown(wait=True, cancel_futures=True)
        if build_error is not None:
            shutil.rmtree(work / "atlas", ignore_errors=True)
            died = isinstance(build_error, BrokenProcessPool)
            why = "a build process died (killed by the OOM killer?)" if died else build_error
            raise fail(
                f"building the atlas in {work / 'atlas'} failed: {type(build_error).__name__}: {why}; free disk "
                "space or memory, pass --workdir elsewhere, or lower --cells / --jobs"
            )
        atlas_meta.write_text(json.dumps({"spec": spec, "datasets": built}))
    build_seconds = time.perf_counter() - t0
    atlas = {
        "cells": sum(b["cells"] for b in built),
        "genes": args.genes,
        "nnz": sum(b["nnz"] for b in built),
        "bytes": sum(b["bytes"] for b in built),
        "datasets": built,
    }
    density = atlas["nnz"] / (atlas["cells"] * args.genes)
    print(
        f"atlas: nnz {atlas['nnz']:,} (density {density:.4f}); data+indices+indptr {atlas['bytes']:,} bytes "
        f"= {atlas['bytes'] / GIB:.3f} GiB (int32 data, int32 indices; a dense int32 matrix would be "
        f"{atlas['cells'] * args.genes * 4 / GIB:.3g} GiB); "
        f"{'reused' if reuse else f'built in {build_seconds:.1f} s with {min(args.jobs, len(names))} processes'}"
    )
    for b in built:
        print(
            f"  {b['dataset']:>5}: {b['cells']:,} cells, nnz {b['nnz']:,} ({b['bytes'] / GIB:.3f} GiB), median "
            f"{b['median_genes']:.0f} genes / {b['median_counts']:.0f} counts / {b['median_pct_mito']:.1f} % MT, "
            f"{b['low_quality']:,} low-quality cells"
        )
    rows.append(
        {
            "stage": "build atlas (simulation)",
            "cells_in": 0,
            "cells_out": atlas["cells"],
            "seconds": build_seconds,
            "peer_seconds": None,
            "input_bytes": None,
            "peak_rss": None if reuse else max(b["peak_rss"] for b in built),
            "reused": reuse,
        }
    )

    def record(row: dict, stage: str) -> dict:
        row["stage"] = stage
        if not row.get("error"):
            row["time_ratio"] = row["seconds"] / row["peer_seconds"] if row["peer_seconds"] > 0 else None
            row["peak_atlas"] = row["peak_rss"] / atlas["bytes"]
            row["work_input"] = (row["peak_rss"] - row["base_rss"]) / row["input_bytes"]
        else:
            print(f"  {stage}: FAILED {row['error']} at {row.get('where')}", flush=True)
        rows.append(row)
        if not row.get("error"):
            print(
                f"  {stage}: {row['seconds']:.2f} s (peer {row['peer_seconds']:.2f} s), peak RSS "
                f"{row['peak_rss'] / GIB:.3f} GiB",
                flush=True,
            )
        return row

    # -- QC, then the held-out split, per dataset
    qc_params = scmix.settings.resolve_qc(qc_thresholds(spec))
    print(f"QC params: {qc_params}", flush=True)
    train_cells: dict[str, int] = {}
    for d in names:
        r = record(
            run_child(ctx, "stage_qc", {"work": str(work), "name": d, "params": qc_params}, mem_limit), f"qc[{d}]"
        )
        if r.get("error"):
            continue
        r = record(run_child(ctx, "stage_split", {"work": str(work), "name": d}, mem_limit), f"split[{d}]")
        if not args.keep:
            shutil.rmtree(work / "qc" / d, ignore_errors=True)
        if not r.get("error"):
            train_cells[d] = r["cells_out"]

    # -- mixes
    hvg_ok = args.hvg > 0 and "n_top_genes" in inspect.signature(scmix.data.mix.make_mix).parameters
    plans = []
    for mix, recipe in mix_recipes(names, args.mix_cells):
        missing = [d for d in recipe["datasets"] if d not in train_cells]
        if missing:
            rows.append({"stage": f"mix[{mix}]", "error": f"skipped: no training part for {missing}", "where": ""})
            continue
        cap = capped_total(recipe, train_cells)
        if cap < recipe["total_cells"]:
            print(f"mix {mix}: total_cells capped from {recipe['total_cells']:,} to {cap:,} (training cells)")
            recipe = {**recipe, "total_cells": cap}
        for seed in range(args.seeds):
            plans.append((f"mix[{mix}] s{seed}", mix, recipe, seed, {}))
        if hvg_ok and mix.startswith("base+"):
            n_top = min(args.hvg, args.genes // 2)
            plans.append((f"mix[{mix},hvg{n_top}] s0", mix, recipe, 0, {"n_top_genes": n_top}))
    for stage, mix, recipe, seed, kwargs in plans:
        kw = {"work": str(work), "mix": mix, "recipe": recipe, "seed": seed, "kwargs": kwargs}
        record(run_child(ctx, "stage_mix", kw, mem_limit), stage)
    if not args.keep:
        shutil.rmtree(work / "qc", ignore_errors=True)
        shutil.rmtree(work / "split", ignore_errors=True)
    return rows, atlas


if __name__ == "__main__":
    sys.exit(main())
