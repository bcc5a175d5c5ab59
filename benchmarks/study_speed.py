"""The datamix study's training at its real size: seconds per epoch of scmix's LDVAE (one model, and several
sharing the device) against scvi-tools' LinearSCVI on the same device in the same run, the limit the arithmetic
allows, and the projected time of the study.

The data are simulated: ``--cells`` cells x ``--genes`` genes (default 204,000 x 19,000, the size of one mix of
microsoft/scFM-datamix's blood baseline in scTab's gene space), negative-binomial counts of 12 cell types over
heavy-tailed gene abundances (about 11 % of entries non-zero, a median of ~2,000 detected genes a cell at
19,000 genes), library sizes log-normal around 4,000. Every model gets the datamix settings: 10-d latent, two
encoder layers of 128, batch 128, lr 5e-3, 10 % of cells held aside (scmix validates on them each epoch;
scvi-tools' ``train_size`` 0.9 holds them aside unevaluated), no KL warm-up, no early stopping.

Printed, with the device's name, torch's threads and the load average: for each of scmix alone, scmix with
``--models`` models training side by side on the device (``scmix.models.train.fit_many``) and LinearSCVI,
seconds per epoch (median over the epochs after the first, which carries the CUDA graph capture or Lightning's
warm-up; the training pass, and for scmix the pass with its validation), cells per second, the ratio to
LinearSCVI, scmix's lower bound from its arithmetic (``flops.py``: FLOPs and elementwise work of an epoch at
rates measured in this run on this device), and the projected wall time of a study of ``--study-models``
models x ``--study-epochs`` epochs (40 x 250) trained one at a time, and ``--models`` at a time.

    python benchmarks/study_speed.py --device cuda                               # the study's size on a GPU
    python benchmarks/study_speed.py --cells 30000 --genes 5000 --epochs 3 --device cpu   # small, on 2 cores
    python benchmarks/study_speed.py --device cuda --models 8 --json study.json --no-peer

Without scvi-tools the script stops before training unless ``--no-peer`` asks for scmix alone.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
from scmix.threads import wait_briefly  # noqa: E402  (before torch: the workflow's OpenMP waiting)

WAITING = wait_briefly()

import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402
import torch  # noqa: E402

from scmix.models.modules import CellData  # noqa: E402
from scmix.models.train import TrainConfig, TrainingDiverged, build_and_fit, build_and_fit_many  # noqa: E402

ME = "benchmarks/study_speed.py"
N_TYPES = 12
MODEL = {"n_latent": 10, "hidden": [128, 128]}
HELDOUT = 2000  # cells simulated beside the mix for scvi-tools' held-out NLL


def fail(message: str) -> SystemExit:
    print(f"{ME}: {message}", file=sys.stderr)
    return SystemExit(1)


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def simulate(n_cells: int, n_genes: int, device: torch.device, seed: int = 0, chunk: int = 4096) -> sp.csr_matrix:
    """Gamma-Poisson counts of ``N_TYPES`` cell types, drawn a chunk of cells at a time on ``device``, as CSR."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 1.75, n_genes) + rng.normal(0.0, 0.7, (N_TYPES, n_genes))
    rho = torch.softmax(torch.as_tensor(logits, dtype=torch.float32, device=device), dim=1)
    types = torch.as_tensor(rng.integers(0, N_TYPES, n_cells), device=device)
    library = torch.as_tensor(rng.lognormal(np.log(4000.0), 0.5, n_cells), dtype=torch.float32, device=device)
    torch.manual_seed(seed)
    parts = []
    for start in range(0, n_cells, chunk):
        stop = min(start + chunk, n_cells)
        mu = library[start:stop, None] * rho[types[start:stop]]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # torch: "Sparse CSR tensor support is in beta state"
            counts = torch.poisson(mu * torch._standard_gamma(torch.full_like(mu, 2.0)) / 2.0).to_sparse_csr()
        parts.append(sp.csr_matrix((counts.values().cpu().numpy(), counts.col_indices().cpu().numpy(),
                                    counts.crow_indices().cpu().numpy()), shape=(stop - start, n_genes)))  # fmt: skip
    return sp.vstack(parts, format="csr").astype(np.float32)


def train_config(epochs: int, device: str, seed: int) -> TrainConfig:
    return TrainConfig(epochs=epochs, batch_size=128, lr=5e-3, kl_warmup_epochs=0, val_fraction=0.1, patience=0,
                       seed=seed, device=device)  # fmt: skip


def _median_after_first(values) -> float:
    values = list(values)
    return float(np.median(values[1:] if len(values) > 1 else values))


def scmix_alone(X, epochs: int, device: str) -> tuple[torch.nn.Module, dict]:
    data = CellData(X, device=device)
    model, hist = build_and_fit("ldvae", {"n_genes": X.shape[1], **MODEL}, data, train_config(epochs, device, 0))
    return model, {"seconds_per_epoch": _median_after_first(hist["train_seconds"]),
            "seconds_with_validation": _median_after_first(hist["seconds"]),
            "val_elbo_first": float(hist["val_elbo"].iloc[0]), "val_elbo_last": float(hist["val_elbo"].iloc[-1]),
            "models": 1}  # fmt: skip


def scmix_shared(X, epochs: int, device: str, n_models: int) -> dict:
    """``n_models`` LDVAEs of seeds 0.. on the same cells, side by side; an epoch of them all."""
    data = CellData(X, device=device)
    n = n_models
    t0 = time.perf_counter()
    results = build_and_fit_many(["ldvae"] * n, [{"n_genes": X.shape[1], **MODEL}] * n, [data] * n,
                                 [train_config(epochs, device, seed) for seed in range(n)])  # fmt: skip
    wall = time.perf_counter() - t0
    hists = [hist for _, hist in results]
    # on a GPU the models step in turn, so each one's epoch spans an epoch of them all; on the CPU they train
    # one after another (fit_many), and an epoch of them all is the sum of theirs
    joint = np.median if device == "cuda" else np.sum
    return {"seconds_per_epoch": float(joint([_median_after_first(h["train_seconds"]) for h in hists])),
            "seconds_with_validation": float(joint([_median_after_first(h["seconds"]) for h in hists])),
            "val_elbo_last": [float(h["val_elbo"].iloc[-1]) for h in hists], "wall_seconds": wall,
            "models": n}  # fmt: skip


def evaluation_seconds(module, held, device: str) -> dict:
    """Seconds of rule evaluate's three passes over an eval set of ``held`` cells, on ``device``: the study's
    reconstruction metric (with the per-gene fit), the held-out log p(x) from 100 importance samples (float64),
    and the posterior-predictive checks; each in 2,048-cell chunks as the rule runs them."""
    import anndata as ad
    import pandas as pd

    from scmix.evaluation.metrics import evaluate_cells
    from scmix.evaluation.ppc import CheckAccumulator, top_variable
    from scmix.models.modelspec import resolve
    from scmix.models.trained import TrainedModel

    genes = [f"g{i}" for i in range(held.shape[1])]
    spec = resolve("ldvae", {"architecture": "ldvae", **MODEL})
    model = TrainedModel.from_module(module, spec=spec, genes=genes, device=device)
    cells = model.prepare(ad.AnnData(held, obs=pd.DataFrame(index=[f"c{i}" for i in range(held.shape[0])]),
                                     var=pd.DataFrame(index=genes)))  # fmt: skip
    out = {"cells": held.shape[0]}

    def timed(name, call):
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        call()
        if device == "cuda":
            torch.cuda.synchronize()
        out[name] = time.perf_counter() - t0

    timed("reconstruction", lambda: evaluate_cells(model, cells, chunk_cells=2048))
    timed("log_px_100_samples", lambda: model.heldout_likelihood(cells, n_samples=100))

    def checks():
        acc = CheckAccumulator(held.shape[1], top_variable(cells.counts, 200))
        for start, replicate in model.posterior_predictive(cells, chunk_cells=2048):
            acc.add(cells.counts[start : start + len(replicate)], replicate)
        acc.summary()

    timed("posterior_checks", checks)
    return out


def peer(X, held, epochs: int, device: str) -> dict:
    import anndata as ad
    from scvi_peer import scvi_linear

    train = ad.AnnData(X)
    heldout = ad.AnnData(held)
    res = scvi_linear(train, heldout, epochs=epochs, seed=0, accelerator="gpu" if device.startswith("cuda") else "cpu")
    return {"seconds_per_epoch": res["seconds_per_epoch"], "heldout_nll": res["heldout_nll"],
            "version": res.get("version"), "models": 1}  # fmt: skip


def limit(X, device: str, n_train: int) -> dict:
    """scmix's LDVAE epoch as arithmetic at this device's rates measured now (``flops.py``): a lower bound."""
    import flops

    hidden, batch = MODEL["hidden"], 128
    rates = flops.measure_rates(X.shape[1], hidden[0], batch, device=device)
    bound = flops.epoch_seconds(genes=X.shape[1], hidden=hidden, latent=MODEL["n_latent"], batch=batch,
                                cells=n_train, nnz_per_cell=X.nnz / X.shape[0],
                                gemm_flops_per_s=rates["gemm_flops_per_s"],
                                elementwise_per_s=rates["elementwise_per_s"])  # fmt: skip
    bound["describe"] = (f"{bound['matmul_flops'] / 1e9:.2f} GFLOP and {bound['elementwise_ops'] / 1e6:.0f} M "
                         f"element operations a step at {rates['gemm_flops_per_s'] / 1e9:.0f} GFLOP/s and "
                         f"{rates['elementwise_per_s'] / 1e9:.2f} G elements/s")  # fmt: skip
    return {**bound, **rates}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", type=int, default=204_000)
    ap.add_argument("--genes", type=int, default=19_000)
    ap.add_argument("--epochs", type=int, default=3, help="at least 2: the first carries capture and warm-up")
    ap.add_argument("--device", default="cuda", choices=["cpu", "cuda"])
    ap.add_argument("--models", type=int, nargs="+",
                    help="models side by side on the device, one measurement per number (default 4 on cuda, none "
                         "on cpu, where they train one after another)")  # fmt: skip
    ap.add_argument("--threads", type=int, default=2, help="torch threads on the CPU")
    ap.add_argument("--peer-epochs", type=int, help="LinearSCVI's epochs (default --epochs)")
    ap.add_argument("--no-peer", action="store_true", help="scmix alone, without scvi-tools")
    ap.add_argument("--eval-cells", type=int, default=20_000,
                    help="cells of the eval set whose evaluation is timed (0: none)")  # fmt: skip
    ap.add_argument("--study-models", type=int, default=40)
    ap.add_argument("--study-epochs", type=int, default=250)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    if args.epochs < 2 or (args.peer_epochs is not None and args.peer_epochs < 2):
        ap.error("--epochs and --peer-epochs must be at least 2: the first epoch carries warm-up")
    if args.cells < 1000 or args.genes < 100:
        ap.error("--cells must be at least 1000 and --genes at least 100")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise fail(f"--device cuda: torch {torch.__version__} sees no CUDA GPU here; use --device cpu")
    shared = args.models if args.models is not None else ([4] if args.device == "cuda" else [])
    if not args.no_peer:
        try:
            import scvi  # noqa: F401
        except ImportError as err:
            raise fail(f"scvi-tools is not importable ({err}); install it (make setup) or pass --no-peer") from None
    torch.set_num_threads(args.threads)
    gpu = torch.cuda.get_device_name(0) if args.device == "cuda" else "none"
    start_load = load_average()
    t0 = time.perf_counter()
    n_held = max(args.eval_cells or 0, HELDOUT)
    X = simulate(args.cells + n_held, args.genes, torch.device(args.device))
    X, held = X[: args.cells], X[args.cells :]
    n_train = args.cells - int(round(0.1 * args.cells))
    print(f"{args.cells} x {args.genes} simulated in {time.perf_counter() - t0:.1f} s: {X.nnz / X.shape[0]:.0f} "
          f"stored counts a cell ({100 * X.nnz / (X.shape[0] * X.shape[1]):.1f} % non-zero); device {args.device} "
          f"(GPU: {gpu}); torch {torch.__version__}, {torch.get_num_threads()} threads; OpenMP waiting {WAITING}; "
          f"load average {start_load}", flush=True)  # fmt: skip
    rows = {}
    try:
        module, rows["scmix LDVAE"] = scmix_alone(X, args.epochs, args.device)
        for n in shared:
            if n > 1:
                rows[f"scmix LDVAE × {n} sharing the device"] = scmix_shared(X, args.epochs, args.device, n)
    except TrainingDiverged as err:
        raise fail(f"scmix training diverged: {err}") from None
    if not args.no_peer:
        rows["scvi-tools LinearSCVI"] = peer(X, held[:HELDOUT], args.peer_epochs or args.epochs, args.device)
    for name, r in rows.items():
        if not (math.isfinite(r["seconds_per_epoch"]) and r["seconds_per_epoch"] > 0):
            raise fail(f"{name} gave {r['seconds_per_epoch']} seconds per epoch; no result printed")
    evaluation = evaluation_seconds(module, held[: args.eval_cells], args.device) if args.eval_cells else None
    bound = limit(X, args.device, n_train)
    peer_s = rows.get("scvi-tools LinearSCVI", {}).get("seconds_per_epoch")
    print("\n| model | s/epoch (training) | s/epoch with validation | cells/s per model | × LinearSCVI | "
          f"study {args.study_models} × {args.study_epochs} epochs |\n|---|---:|---:|---:|---:|---:|")  # fmt: skip
    for name, r in rows.items():
        per_model = r["seconds_per_epoch"] / r["models"]
        full = r.get("seconds_with_validation", r["seconds_per_epoch"]) / r["models"]
        r["cells_per_second"] = n_train / per_model
        r["speedup"] = peer_s / per_model if peer_s else None
        r["study_hours"] = args.study_models * args.study_epochs * full / 3600
        with_val = f"{r['seconds_with_validation']:.3f}" if "seconds_with_validation" in r else "—"
        speed = f"{r['speedup']:.1f}×" if r["speedup"] else "—"
        print(f"| {name} | {r['seconds_per_epoch']:.3f} | {with_val} | {r['cells_per_second']:,.0f} | {speed} | "
              f"{r['study_hours']:.1f} h |")  # fmt: skip
    if bound:
        ours = rows["scmix LDVAE"]["seconds_per_epoch"]
        print(f"\nlimit of scmix's epoch from its arithmetic at this device's measured rates: {bound['seconds']:.3f} s "
              f"({bound['describe']}); measured / limit: {ours / bound['seconds']:.2f}")  # fmt: skip
        rows["limit"] = bound
    if evaluation is not None:
        total = sum(v for k, v in evaluation.items() if k != "cells")
        epoch = rows["scmix LDVAE"]["seconds_with_validation"]
        print(f"\nevaluation of {evaluation['cells']} held-out cells on {args.device}: reconstruction metric "
              f"{evaluation['reconstruction']:.2f} s, log p(x) with 100 importance samples "
              f"{evaluation['log_px_100_samples']:.2f} s, posterior-predictive checks "
              f"{evaluation['posterior_checks']:.2f} s; {total:.2f} s in all = {total / epoch:.1f} training epochs "
              f"of this mix")  # fmt: skip
        rows["evaluation"] = evaluation
    end_load = load_average()
    print(f"load average (1, 5, 15 min): {start_load} before, {end_load} after")
    rows["machine"] = {"gpu": gpu, "device": args.device, "torch": torch.__version__, "threads": args.threads,
                       "python": platform.python_version(), "cells": args.cells, "genes": args.genes,
                       "epochs": args.epochs, "load_average": [start_load, end_load]}  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
