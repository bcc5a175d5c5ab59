"""Every model variant on a CUDA GPU against the CPU, and the LDVAE's training speed on both.

For each variant (likelihood, library, dispersion, conditions, prior) one model is built on the CPU and copied to
the GPU with the same weights; in eval mode (z at the posterior mean) the per-cell reconstruction NLL and KL,
the decoder's proportions and P(0) must agree between the devices, and so must the gradients of one training
step. Each variant then trains for a few epochs on the GPU (finite history, a falling validation ELBO) and gives
float64 importance-sampled log p(x) there (finite, never below the Monte Carlo ELBO of the same draws).
Last, the LDVAE with the datamix settings is timed per epoch on simulated counts on the CPU and on the GPU.

Needs torch, numpy, scipy and pandas only (no anndata), so it runs in a bare CUDA image:

    python benchmarks/gpu_models.py [--cells 50000 --genes 5000 --epochs 3] [--out results.tsv]

It exits 2 with one line when no GPU is visible, and 1 when a check fails.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scmix.models.modules import CellData, build_model  # noqa: E402
from scmix.models.train import TrainConfig, fit  # noqa: E402

VARIANTS = {
    "ldvae-nb": ("ldvae", {}),
    "vae-zinb-latent-library": ("vae", {"likelihood": "zinb", "library": "latent"}),
    "vae-poisson": ("vae", {"likelihood": "poisson", "norm": "none"}),
    "vae-nb-gene-batch": ("vae", {"dispersion": "gene-batch", "dispersion_key": "donor"}),
    "vae-gaussian": ("vae", {"likelihood": "gaussian"}),
    "cvae": ("cvae", {"conditions": ["cell_type", "donor"], "inject": "both"}),
    "gmvae": ("gmvae", {"n_components": 4}),
}
COVARIATES = {"cell_type": 5, "donor": 3}


def simulate(n_cells: int, n_genes: int, seed: int = 0):
    """Negative-binomial counts from 5 cell types (a low-rank programme each), as CSR; codes 1-based."""
    rng = np.random.default_rng(seed)
    types = rng.integers(0, 5, n_cells)
    donors = rng.integers(0, 3, n_cells)
    base = rng.normal(0, 1, n_genes)
    programmes = rng.normal(0, 0.8, (5, n_genes))
    logits = base + programmes[types]
    rho = np.exp(logits - logits.max(1, keepdims=True))
    rho /= rho.sum(1, keepdims=True)
    lib = rng.lognormal(np.log(3000), 0.4, n_cells)[:, None]
    mu = lib * rho
    counts = rng.poisson(rng.gamma(2.0, mu / 2.0)).astype(np.float32)
    return sp.csr_matrix(counts), np.stack([types + 1, donors + 1], 1)


def variant(arch, extra, X, codes):
    """A variant's model (initial weights of seed 0, on the CPU) and its cells, as a function of the device."""
    torch.manual_seed(0)
    model = build_model(arch, n_genes=X.shape[1], n_latent=8, hidden=[64], covariates=COVARIATES, **extra)
    target = np.log1p(X.toarray()) if not model.counts_model else None  # the Gaussian's input
    return model, lambda device: CellData(X, codes=codes, target=target, device=device)


def mean_loss(out):
    return (out["recon"] + out["kl"]).mean()


def compare_devices(arch, extra, X, codes, device):
    """Same weights on CPU and GPU: eval-mode outputs and one step's gradients; returns the largest differences."""
    cpu, cells = variant(arch, extra, X, codes)
    gpu = copy.deepcopy(cpu).to(device)
    idx = torch.arange(256)
    b_cpu, b_gpu = cells("cpu").batch(idx), cells(device).batch(idx.to(device))
    out = {}
    cpu.eval(), gpu.eval()
    with torch.no_grad():
        o_c, o_g = cpu(b_cpu), gpu(b_gpu)
        for key in ("recon", "kl"):
            out[f"max_rel_{key}"] = float(((o_c[key] - o_g[key].cpu()).abs() / o_c[key].abs().clamp(min=1)).max())
        out["max_abs_reconstruct"] = float((cpu.reconstruct(b_cpu) - gpu.reconstruct(b_gpu).cpu()).abs().max())
        if cpu.counts_model:
            p_c, p_g = cpu.zero_probability(b_cpu), gpu.zero_probability(b_gpu).cpu()
            out["max_abs_p0"] = float((p_c - p_g).abs().max())
    # dropout and z draws differ between devices: the gradients are compared in eval mode (deterministic)
    mean_loss(cpu(b_cpu)).backward()
    mean_loss(gpu(b_gpu)).backward()
    worst = 0.0
    for pc, pg in zip(cpu.parameters(), gpu.parameters(), strict=True):
        if pc.grad is None:
            continue
        scale = float(pc.grad.abs().max().clamp(min=1e-6))
        worst = max(worst, float((pc.grad - pg.grad.cpu()).abs().max()) / scale)
    out["max_rel_grad"] = worst
    return out


def train_on_gpu(arch, extra, X, codes, device, epochs=5):
    model, cells = variant(arch, extra, X, codes)
    data = cells(device)
    hist = fit(model, data, TrainConfig(epochs=epochs, batch_size=128, lr=5e-3, patience=0, seed=0,
                                        device=str(device)))  # fmt: skip
    res = {"val_elbo_first": float(hist["val_elbo"].iloc[0]), "val_elbo_last": float(hist["val_elbo"].iloc[-1]),
           "finite": bool(np.isfinite(hist.select_dtypes("number").to_numpy()).all())}  # fmt: skip
    if model.counts_model:
        wide = copy.deepcopy(model).double().eval()
        gen = torch.Generator(device=device).manual_seed(0)
        batch = data.batch(torch.arange(512, device=device), dtype=torch.float64)
        log_w = wide.log_importance_weights(batch, 20, generator=gen)
        elbo, iwae = log_w.mean(0), torch.logsumexp(log_w, 0) - np.log(20)
        res["iwae_finite"] = bool(torch.isfinite(iwae).all())
        res["iwae_minus_elbo_min"] = float((iwae - elbo).min())
    return res


def time_epochs(X, device, epochs):
    kwargs = {"n_genes": X.shape[1], "n_latent": 10, "hidden": [128, 128]}
    torch.manual_seed(0)
    model = build_model("ldvae", **kwargs)
    data = CellData(X, device=device)
    hist = fit(model, data, TrainConfig(epochs=epochs, batch_size=128, lr=5e-3, patience=0, seed=0,
                                        device=str(device)))  # fmt: skip
    col = "train_seconds" if "train_seconds" in hist else "seconds"
    return float(hist[col].iloc[1:].median() if len(hist) > 1 else hist[col].iloc[0])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", type=int, default=50000)
    ap.add_argument("--genes", type=int, default=5000)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--out", default=None)
    ap.add_argument("--device", default="cuda", help="cpu runs every check against itself (a smoke test)")
    args = ap.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu_models.py: no CUDA GPU is visible (torch.cuda.is_available() is False); nothing measured; "
              "--device cpu runs the checks on the CPU against itself", file=sys.stderr)  # fmt: skip
        return 2
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(0) if device.type == "cuda" else "none (CPU against itself)"
    print(f"GPU {name}, torch {torch.__version__}, CPU threads {torch.get_num_threads()}, "
          f"load average {os.getloadavg()[0]:.2f}", flush=True)  # fmt: skip
    X, codes = simulate(3000, 1500)
    rows, failed = [], []
    for name, (arch, extra) in VARIANTS.items():
        row = {"variant": name, **compare_devices(arch, extra, X, codes, device)}
        row.update(train_on_gpu(arch, extra, X, codes, device))
        rows.append(row)
        ok = (row["max_rel_recon"] < 1e-4 and row["max_rel_kl"] < 1e-3 and row["max_rel_grad"] < 1e-3
              and row["finite"] and row["val_elbo_last"] < row["val_elbo_first"]
              and row.get("iwae_finite", True) and row.get("iwae_minus_elbo_min", 0.0) >= -1e-9)  # fmt: skip
        if not ok:
            failed.append(name)
        print(("ok   " if ok else "FAIL ") + " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                                                  for k, v in row.items()), flush=True)  # fmt: skip
    table = pd.DataFrame(rows)
    Xbig, _ = simulate(args.cells, args.genes, seed=1)
    gpu_s = time_epochs(Xbig, device, args.epochs)
    cpu_s = time_epochs(Xbig, torch.device("cpu"), args.epochs)
    print(f"LDVAE {args.cells} x {args.genes}, batch 128: {cpu_s:.2f} s/epoch on CPU ({torch.get_num_threads()} "
          f"threads), {gpu_s:.2f} s/epoch on {device.type}: {cpu_s / gpu_s:.1f}x; "
          f"load average {os.getloadavg()[0]:.2f}")  # fmt: skip
    if args.out:
        table.to_csv(args.out, sep="\t", index=False)
    if failed:
        print(f"gpu_models.py: {len(failed)} variant(s) failed a check: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
