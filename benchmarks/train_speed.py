"""Seconds per training epoch of scmix's LDVAE against scvi-tools' LinearSCVI, on real PBMC 3k or on a
simulated atlas of any size.

Both models get the datamix settings (10-d latent, two encoder layers of 128, batch 128, lr 5e-3) and the
same cells and genes: PBMC 3k's 2,000 highly variable genes (scanpy seurat_v3 on the raw counts), or
``--cells`` cells x ``--genes`` genes from the embedded simulator (scmix.data.simulate: five cell types, four
donors); 10 % of cells are held out. Printed: seconds per epoch (median over epochs after the first), their
ratio, the held-out reconstruction NLL per cell of each (negative binomial, posterior mean of z, observed
library) and the load average before and after.

    python benchmarks/train_speed.py                      # CPU, both models when scvi-tools is installed
    python benchmarks/train_speed.py --cells 30000 --genes 5000 --epochs 5   # a simulated 30k x 5k mix
    python benchmarks/train_speed.py --device cuda        # data resident on the GPU
    python benchmarks/train_speed.py --cells 30000 --genes 5000 --no-peer --compete 2   # beside 2 busy processes

scvi-tools is the optional extra ``scvi`` (``make setup`` installs it); without it the script
stops with a message unless ``--no-peer`` asks for scmix alone (no ratio then). A missing data archive, an
unusable device, a model that fails or a figure that comes out zero, empty or NaN also stop it with one line
(exit code 1) instead of a result.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from scmix.threads import wait_briefly  # noqa: E402  (before torch: the workflow's OpenMP waiting)

WAITING = wait_briefly()

import numpy as np  # noqa: E402
import scanpy as sc  # noqa: E402
import scipy.sparse as sp  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(REPO / "benchmarks"))

from flops import epoch_seconds, measure_rates  # noqa: E402

from scmix.models.modules import CellData, build_model  # noqa: E402
from scmix.models.train import TrainConfig, TrainingDiverged, evaluate_elbo, fit, seed_everything  # noqa: E402

ME = "benchmarks/train_speed.py"
ARCHIVE = Path("pbmc3k") / "pbmc3k_filtered_gene_bc_matrices.tar.gz"


def fail(message: str) -> SystemExit:
    """An expected failure (missing input or tool, failed stage, unusable figure): one line, exit code 1."""
    print(f"{ME}: {message}", file=sys.stderr)
    return SystemExit(1)


def check_figures(name: str, result: dict) -> None:
    """Stop where a figure that gets printed is missing, not finite or not positive."""
    for key in ("seconds_per_epoch", "heldout_nll"):
        value = result.get(key)
        if not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
            raise fail(f"{name} gave {key} = {value!r}, not a positive number; no result printed")


def check_device(device: str) -> None:
    try:
        kind = torch.device(device).type
    except RuntimeError as err:
        raise fail(f"--device {device}: not a torch device ({err})") from None
    if kind == "cuda" and not torch.cuda.is_available():
        raise fail(f"--device {device}: torch {torch.__version__} sees no CUDA device; use --device cpu")
    if kind == "mps" and not torch.backends.mps.is_available():
        raise fail(f"--device {device}: MPS is not available here; use --device cpu")


def load_pbmc3k(shared: Path, n_genes: int, heldout: float, seed: int):
    with tempfile.TemporaryDirectory() as tmp:
        with tarfile.open(shared / "pbmc3k" / "pbmc3k_filtered_gene_bc_matrices.tar.gz") as tar:
            tar.extractall(tmp, filter="data")
        adata = sc.read_10x_mtx(Path(tmp) / "filtered_gene_bc_matrices" / "hg19")
    adata.X = sp.csr_matrix(adata.X, dtype=np.float32)
    sc.pp.highly_variable_genes(adata, n_top_genes=n_genes, flavor="seurat_v3", subset=True)
    order = np.random.default_rng(seed).permutation(adata.n_obs)
    n_held = int(round(heldout * adata.n_obs))
    return adata[np.sort(order[n_held:])].copy(), adata[np.sort(order[:n_held])].copy()


def simulated(n_cells: int, n_genes: int, heldout: float, seed: int):
    """``n_cells`` x ``n_genes`` raw counts from scmix's simulator, split into training and held-out cells."""
    from scmix.data.simulate import Universe, simulate_dataset

    spec = {"n_cells": n_cells, "donors": 4, "cell_types": {"T": 0.4, "B": 0.15, "NK": 0.1, "Mono": 0.25, "DC": 0.1}}
    adata = simulate_dataset("atlas", spec, Universe(n_genes=n_genes, seed=3))
    adata.X = sp.csr_matrix(adata.X, dtype=np.float32)
    order = np.random.default_rng(seed).permutation(adata.n_obs)
    n_held = int(round(heldout * adata.n_obs))
    return adata[np.sort(order[n_held:])].copy(), adata[np.sort(order[:n_held])].copy()


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


SETTINGS = {"n_latent": 10, "hidden": [128, 128], "batch_size": 128, "lr": 5e-3, "val_fraction": 0.1}


def scmix_ldvae(train, held, *, epochs: int, device: str, seed: int) -> dict:
    cfg = TrainConfig(epochs=epochs, batch_size=SETTINGS["batch_size"], lr=SETTINGS["lr"], kl_warmup_epochs=0,
                      val_fraction=SETTINGS["val_fraction"], patience=0, seed=seed, device=device)  # fmt: skip
    seed_everything(seed)
    model = build_model("ldvae", n_genes=train.n_vars, n_latent=SETTINGS["n_latent"], hidden=SETTINGS["hidden"])
    t0 = time.perf_counter()
    history = fit(model, CellData(train.X, device=device), cfg)
    total = time.perf_counter() - t0
    nll = evaluate_elbo(model, CellData(held.X, device=device), prefix="heldout")["heldout_recon"]
    return {
        "seconds_per_epoch": float(np.median(history["train_seconds"].to_numpy()[1:])),
        "seconds_per_epoch_with_validation": float(np.median(history["seconds"].to_numpy()[1:])),
        "epoch_seconds": history["seconds"].round(4).tolist(),
        "seconds_total": total,
        "heldout_nll": nll,
    }


def flop_limit(train) -> dict:
    """``benchmarks/flops.py``'s lower bound on scmix's seconds per epoch for these cells, at the GEMM and
    elementwise rates measured now on the same threads (the training pass: the cells left after validation)."""
    cells = train.n_obs - int(round(SETTINGS["val_fraction"] * train.n_obs))
    rates = measure_rates(train.n_vars, SETTINGS["hidden"][0], SETTINGS["batch_size"])
    limit = epoch_seconds(genes=train.n_vars, hidden=SETTINGS["hidden"], latent=SETTINGS["n_latent"],
                          batch=SETTINGS["batch_size"], cells=cells, nnz_per_cell=train.X.nnz / train.n_obs,
                          gemm_flops_per_s=rates["gemm_flops_per_s"],
                          elementwise_per_s=rates["elementwise_per_s"])  # fmt: skip
    return {**limit, **rates, "training_cells": cells}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "data",
                    help=f"data folder holding {ARCHIVE} (default: ../shared/data next to the repo)")  # fmt: skip
    ap.add_argument("--epochs", type=int, default=60, help="at least 2 (the median skips the first epoch)")
    ap.add_argument("--genes", type=int, default=2000, help="PBMC 3k's highly variable genes, or simulated genes")
    ap.add_argument("--cells", type=int, help="simulate this many cells (with --genes genes) instead of PBMC 3k")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-peer", action="store_true", help="measure scmix only")
    ap.add_argument("--compete", type=int, default=0, metavar="N",
                    help="run N busy-looping processes beside the training (a shared machine)")  # fmt: skip
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args(argv)
    if args.compete < 0:
        ap.error("--compete must be 0 or more")
    if args.epochs < 2:
        ap.error("--epochs must be at least 2: seconds per epoch is the median over the epochs after the first")
    check_device(args.device)
    if args.json and not args.json.parent.is_dir():
        raise fail(f"--json {args.json}: folder {args.json.parent} does not exist")
    scvi_linear = None
    if not args.no_peer:
        try:
            import scvi  # noqa: F401 - scvi_peer imports it only when it trains
            from scvi_peer import scvi_linear
        except ImportError as err:
            raise fail(f"scvi-tools is not importable ({err}) in {sys.executable}: run `make setup` and use "
                       f".venv/bin/python, or pass --no-peer to measure scmix alone") from None  # fmt: skip
    archive = args.shared / ARCHIVE
    if args.cells is None and not archive.is_file():
        raise fail(f"PBMC 3k not found: no {archive}; pass --shared DIR, the folder that holds {ARCHIVE}")
    torch.set_num_threads(args.threads)
    if args.cells is not None:
        if args.cells < 100 or args.genes < 100:
            ap.error("--cells and --genes must be at least 100")
        train, held = simulated(args.cells, args.genes, 0.1, args.seed)
        what = "simulated"
    else:
        try:
            train, held = load_pbmc3k(args.shared, args.genes, 0.1, args.seed)
        except (OSError, EOFError, tarfile.TarError) as err:
            why = " ".join(str(err).split())
            raise fail(f"could not read PBMC 3k from {archive}: {type(err).__name__}: {why}") from None
        what = "PBMC 3k"
    competitors = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.compete)]
    try:
        rows = measure(args, train, held, what, scvi_linear)
    finally:
        for proc in competitors:
            proc.kill()
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


def measure(args, train, held, what: str, scvi_linear) -> dict:
    start_load = load_average()
    print(f"{what}: {train.n_obs} training + {held.n_obs} held-out cells x {train.n_vars} genes; "
          f"{args.epochs} epochs; {args.threads} threads; device {args.device}; load average {start_load}; "
          f"OpenMP waiting {WAITING}; {args.compete} competing busy processes")  # fmt: skip
    try:
        rows = {"scmix LDVAE": scmix_ldvae(train, held, epochs=args.epochs, device=args.device, seed=args.seed)}
    except TrainingDiverged as err:
        raise fail(f"scmix LDVAE training diverged: {err}") from None
    check_figures("scmix LDVAE", rows["scmix LDVAE"])
    limit = flop_limit(train) if args.device == "cpu" else None
    if scvi_linear is not None:
        accelerator = "gpu" if args.device.startswith("cuda") else "cpu"
        rows["scvi-tools LinearSCVI"] = scvi_linear(train, held, epochs=args.epochs, seed=args.seed,
                                                    accelerator=accelerator)  # fmt: skip
        check_figures("scvi-tools LinearSCVI", rows["scvi-tools LinearSCVI"])
    print("\n| model | s/epoch | held-out NLL/cell |\n|---|---:|---:|")
    for name, r in rows.items():
        print(f"| {name} | {r['seconds_per_epoch']:.3f} | {r['heldout_nll']:.2f} |")
    if len(rows) == 2:
        ours, peer = rows["scmix LDVAE"], rows["scvi-tools LinearSCVI"]
        speedup = peer["seconds_per_epoch"] / ours["seconds_per_epoch"]
        nll_gap = ours["heldout_nll"] / peer["heldout_nll"] - 1
        print(f"\nspeed-up per epoch (scvi-tools / scmix): {speedup:.2f}x; held-out NLL scmix vs scvi-tools: "
              f"{100 * nll_gap:+.2f} %  (scvi-tools {peer.get('version')})")  # fmt: skip
        rows["ratio"] = {"speedup": speedup, "nll_gap": nll_gap}
    if limit is not None:
        ratio = rows["scmix LDVAE"]["seconds_per_epoch"] / limit["seconds"]
        print(f"FLOP limit (benchmarks/flops.py): {limit['seconds']:.3f} s/epoch ({limit['matmul_seconds']:.3f} s of "
              f"matrix products at {limit['gemm_flops_per_s'] / 1e9:.0f} GFLOP/s, {limit['elementwise_seconds']:.3f} s "
              f"of elementwise work at {limit['elementwise_per_s'] / 1e9:.2f} G elements/s, both measured now on "
              f"{limit['threads']} threads); scmix / limit: {ratio:.2f}x")  # fmt: skip
        rows["flop_limit"] = {**limit, "scmix_over_limit": ratio}
    end_load = load_average()
    print(f"load average (1, 5, 15 min): {start_load} before, {end_load} after")
    rows["machine"] = {"python": platform.python_version(), "torch": torch.__version__, "threads": args.threads,
                       "device": args.device, "cpu": platform.processor() or platform.machine(),
                       "load_average": [start_load, end_load], "data": what, "cells": train.n_obs + held.n_obs,
                       "genes": train.n_vars, "openmp_waiting": WAITING,
                       "competing_processes": args.compete}  # fmt: skip
    return rows


if __name__ == "__main__":
    sys.exit(main())
