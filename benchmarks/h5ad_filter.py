"""Memory of ``source: h5ad`` with and without ``obs_filter``/``max_cells`` on a large simulated h5ad.

    python benchmarks/h5ad_filter.py                        # 500,000 cells x 20,000 genes
    python benchmarks/h5ad_filter.py --cells 20000          # quick check
    python benchmarks/h5ad_filter.py --workdir /tmp/h5big   # keep and reuse the h5ad

The h5ad is simulated with ``benchmarks/mix_scale.py``'s atlas generator (one dataset: T, B, NK, Mono and Platelet
cells, a heavy-tailed gene abundance, 8 % low-quality cells) and written to an h5ad chunk by chunk (CSR counts,
``obs`` with ``cell_type``, ``donor`` and ``low_quality``), so building it never holds the matrix in memory.

Then, each in a fresh process that imports scmix first, ``scmix.data.sources.tables.parse_h5ad`` reads it:

- ``whole``: no selection (the whole matrix is read);
- ``filter``: ``obs_filter: cell_type == 'B'`` (about 15 % of the cells);
- ``filter+max``: ``obs_filter: cell_type == 'B' and not low_quality`` with ``max_cells: --max-cells`` (50,000);
- ``max``: ``max_cells: --max-cells`` alone.

Per case: the cells kept, the seconds (and as a ratio to ``whole``, measured in the same run), the peak RSS of the
process during the call (``VmHWM``, reset after the imports), the bytes of the kept cells' CSR counts (data +
indices + indptr), and their ratio (``peak/kept``: the read's working memory in units of what it returns; imports
and obs are included, so small reads show a larger ratio), and ``work/kept``: (peak - RSS after the imports) / the
kept counts' bytes, 1.0 being "holds what it returns and nothing else". The load average is printed at the start and
end."""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import mix_scale  # noqa: E402

ME = Path(__file__).name


def build_h5ad(cells: int, genes: int, median_genes: float, work: Path, seed: int) -> tuple[Path, dict]:
    """The simulated dataset as ``work/atlas.h5ad``; reused when its description matches."""
    import anndata as ad
    import h5py
    import pandas as pd
    from anndata.io import write_elem

    spec = {"cells": cells, "genes": genes, "datasets": 1, "median_genes": median_genes, "low_quality": 0.08,
            "seed": seed, "chunk": 4096}  # fmt: skip
    path, meta_path = work / "atlas.h5ad", work / "atlas.json"
    if path.exists() and meta_path.exists() and json.loads(meta_path.read_text())["spec"] == spec:
        return path, json.loads(meta_path.read_text())
    parts = work / "parts"
    info = mix_scale.build_dataset(spec, 0, "atlas", cells, str(parts))
    obs = pd.read_pickle(parts / "obs.pkl")
    var = pd.read_pickle(parts / "var.pkl")
    meta = json.loads((parts / "meta.json").read_text())
    data = np.memmap(parts / "data.bin", dtype=np.dtype(meta["data_dtype"]), mode="r")
    indices = np.memmap(parts / "indices.bin", dtype=np.dtype(meta["indices_dtype"]), mode="r")
    indptr = np.fromfile(parts / "indptr.bin", dtype=np.dtype(meta["indptr_dtype"]))
    with h5py.File(path, "w") as f:
        write_elem(f, "obs", obs)
        write_elem(f, "var", var)
        X = f.create_group("X")
        X.attrs.update({"encoding-type": "csr_matrix", "encoding-version": "0.1.0", "shape": (cells, genes)})
        step = 1 << 26
        for name, array in (("data", data), ("indices", indices)):
            out = X.create_dataset(name, shape=array.shape, dtype=array.dtype, chunks=(1 << 16,))
            for start in range(0, len(array), step):
                out[start : start + step] = array[start : start + step]
        X.create_dataset("indptr", data=indptr)
        f.attrs.update({"encoding-type": "anndata", "encoding-version": "0.1.0"})
    del data, indices
    for p in parts.iterdir():
        p.unlink()
    parts.rmdir()
    ad.read_h5ad(path, backed="r").file.close()  # anndata can open what was written
    info = {"spec": spec, "nnz": info["nnz"], "bytes": info["bytes"]}
    meta_path.write_text(json.dumps(info))
    return path, info


def _case(conn, path: str, spec: dict) -> None:
    import scipy.sparse as sp  # noqa: F401

    from scmix.data.sources import tables

    mix_scale.reset_peak_rss()
    before = mix_scale.rss_bytes()
    t0 = time.perf_counter()
    adata = tables.parse_h5ad("atlas", {"source": "h5ad", **spec}, Path(path).parent)
    seconds = time.perf_counter() - t0
    conn.send({"cells": adata.n_obs, "seconds": seconds, "peak": mix_scale.peak_rss_bytes(), "before": before,
               "kept_bytes": mix_scale.csr_nbytes(adata.X)})  # fmt: skip


def run_case(ctx, path: Path, spec: dict) -> dict:
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_case, args=(child, str(path), spec))
    proc.start()
    child.close()
    try:
        result = parent.recv()
    except EOFError:
        result = None
    proc.join()
    if result is None:
        raise SystemExit(f"{ME}: the case {spec} failed (exit code {proc.exitcode}); see the traceback above")
    return result


def gib(value: float) -> str:
    return f"{value / 2**30:.2f}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--cells", type=int, default=500_000)
    p.add_argument("--genes", type=int, default=20_000)
    p.add_argument("--median-genes", type=float, default=1000, help="median detected genes of a good cell")
    p.add_argument("--max-cells", type=int, default=50_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workdir", help="keep the h5ad here (reused when it matches)")
    p.add_argument("--json", help="write the results here")
    args = p.parse_args(argv)
    if args.cells < 1000 or args.max_cells < 1 or args.genes < 100:
        p.error("--cells must be at least 1000, --genes at least 100, --max-cells at least 1")
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="h5ad_filter."))
    mix_scale.writable_folder(work)
    print(f"load average at the start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    t0 = time.perf_counter()
    path, info = build_h5ad(args.cells, args.genes, args.median_genes, work, args.seed)
    print(f"h5ad: {args.cells:,} cells x {args.genes:,} genes, {info['nnz']:,} non-zeros, counts "
          f"{gib(info['bytes'])} GiB in memory, file {gib(path.stat().st_size)} GiB "
          f"({time.perf_counter() - t0:.0f} s)", flush=True)  # fmt: skip
    cases = {
        "whole": {},
        "filter": {"obs_filter": "cell_type == 'B'"},
        "filter+max": {"obs_filter": "cell_type == 'B' and not low_quality", "max_cells": args.max_cells},
        "max": {"max_cells": args.max_cells},
    }
    ctx = mp.get_context("spawn")
    rows = []
    for name, spec in cases.items():
        r = run_case(ctx, path, spec)
        r.update(case=name, spec=spec, time_ratio=r["seconds"] / rows[0]["seconds"] if rows else 1.0)
        rows.append(r)
        print(f"{name:<11} {r['cells']:>9,} cells {r['seconds']:7.1f} s (x{r['time_ratio']:.2f} of whole)  "
              f"peak {gib(r['peak'])} GiB  kept counts "
              f"{gib(r['kept_bytes'])} GiB  peak/kept {r['peak'] / max(r['kept_bytes'], 1):5.2f}  work/kept "
              f"{(r['peak'] - r['before']) / max(r['kept_bytes'], 1):5.2f}  (RSS after imports {gib(r['before'])} GiB)",
              flush=True)  # fmt: skip
    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if args.json:
        Path(args.json).write_text(json.dumps({"h5ad": info, "cases": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
