"""Peer measurement for the speed benchmark: scvi-tools ``LinearSCVI`` (LDVAE) training time and held-out NLL.

    .venv/bin/python benchmarks/scvi_peer.py      # quick check on PBMC 3k (2,000 HVG, 10 epochs)
    .venv/bin/python benchmarks/scvi_peer.py --shared DIR   # PBMC 3k from DIR (default ../shared/data)

Without scvi-tools or the PBMC 3k archive, or where a figure comes out NaN or not positive, the quick check
stops with one line (exit code 1).

``scvi_linear(train, heldout, epochs=...)`` trains ``scvi.model.LinearSCVI`` on ``train`` (raw counts in X,
no batch key, NB likelihood, gene dispersion) on the CPU with data loaders in the main process, and returns:

- ``epoch_seconds``: wall seconds of every training epoch (a Lightning callback, ``on_train_epoch_start`` to
  ``on_train_epoch_end``); ``seconds_per_epoch``: their median over the epochs after the first (the first
  one carries warm-up). With scvi's defaults and ``early_stopping=False`` the validation split
  (``1 - train_size``) is held aside but never evaluated, so no validation pass is inside an epoch;
- ``heldout_nll``: mean over the cells of ``heldout`` of the negative-binomial NLL summed over genes, at the
  posterior mean of z (``qz.loc``) and the observed library size ``log(sum_g x_g)``, with scvi's own NB
  parameters (``mu``, ``theta``) from ``module.inference`` / ``module.generative`` in eval mode and
  ``scvi.distributions.NegativeBinomial.log_prob``;
- ``version``: ``scvi.__version__``.

The module does not change torch's thread count: the caller sets it (``__main__`` uses 2 threads).

Library size: scvi-tools' ``LinearSCVI`` defaults to a *learned* library (``use_observed_lib_size=False``,
an ``l_encoder`` with a log-normal prior). ``use_observed_lib_size=True`` (the default here) makes the model
train with the observed library, the same one the held-out NLL is evaluated with; pass ``False`` for scvi's
own default (then the NLL still plugs in the observed library).
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch


def _dense_rows(x: Any, start: int, stop: int) -> np.ndarray:
    rows = x[start:stop]
    if sp.issparse(rows):
        rows = rows.toarray()
    return np.asarray(rows, dtype=np.float32)


def _heldout_nll(model: Any, heldout: Any, eval_batch_size: int) -> float:
    """Mean over cells of the NB NLL summed over genes at z = qz.loc and the observed library size."""
    from scvi.distributions import NegativeBinomial

    module = model.module
    was_training = module.training
    module.eval()
    device = next(module.parameters()).device
    x_all = heldout.X
    n = x_all.shape[0]
    total = 0.0
    try:
        with torch.no_grad():
            for start in range(0, n, eval_batch_size):
                stop = min(start + eval_batch_size, n)
                x = torch.from_numpy(_dense_rows(x_all, start, stop)).to(device)
                zeros = torch.zeros((x.shape[0], 1), dtype=torch.long, device=device)  # batch and label index 0
                inf = module.inference(x=x, batch_index=zeros)
                z = inf["qz"].loc
                library = torch.log(x.sum(dim=1, keepdim=True))
                gen = module.generative(z=z, library=library, batch_index=zeros, y=zeros)
                px = gen["px"]
                nb = NegativeBinomial(mu=px.mu, theta=px.theta)
                total += float(-nb.log_prob(x).sum().item())
    finally:
        module.train(was_training)
    return total / n


def scvi_linear(
    train: Any,
    heldout: Any,
    *,
    epochs: int,
    n_latent: int = 10,
    n_hidden: int = 128,
    n_layers: int = 2,
    batch_size: int = 128,
    lr: float = 5e-3,
    train_size: float = 0.9,
    seed: int = 0,
    use_observed_lib_size: bool = True,
    eval_batch_size: int = 1024,
    accelerator: str = "cpu",
) -> dict:
    """Train scvi-tools ``LinearSCVI`` on ``train`` and measure seconds per epoch and held-out NB NLL per cell.

    ``train``/``heldout``: AnnData with raw integer counts in X (CSR float32), the same genes in the same order.
    Returns ``seconds_per_epoch``, ``epoch_seconds``, ``heldout_nll`` and ``version`` (see the module docstring).
    """
    import anndata as ad
    import scvi
    from lightning.pytorch import Callback

    if list(train.var_names) != list(heldout.var_names):
        raise ValueError("train and heldout must have the same genes in the same order")

    class _EpochTimer(Callback):
        def __init__(self) -> None:
            super().__init__()
            self.seconds: list[float] = []
            self._t0 = 0.0

        def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
            self._t0 = time.perf_counter()

        def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            self.seconds.append(time.perf_counter() - self._t0)

    scvi.settings.seed = seed
    scvi.settings.dl_num_workers = 0
    scvi.settings.dl_persistent_workers = False

    # A light AnnData sharing X, so setup_anndata's obs columns do not land on the caller's object.
    adata = ad.AnnData(X=train.X, obs=train.obs[[]].copy(), var=train.var[[]].copy())
    scvi.model.LinearSCVI.setup_anndata(adata)
    model = scvi.model.LinearSCVI(
        adata,
        n_hidden=n_hidden,
        n_latent=n_latent,
        n_layers=n_layers,
        use_observed_lib_size=use_observed_lib_size,
    )
    timer = _EpochTimer()
    model.train(
        max_epochs=epochs,
        batch_size=batch_size,
        plan_kwargs={"lr": lr},
        train_size=train_size,
        early_stopping=False,
        enable_progress_bar=False,
        accelerator=accelerator,
        devices=1,
        datasplitter_kwargs={"num_workers": 0},
        enable_model_summary=False,
        callbacks=[timer],
    )
    epoch_seconds = list(timer.seconds)
    after_first = epoch_seconds[1:] or epoch_seconds
    return {
        "seconds_per_epoch": statistics.median(after_first) if after_first else float("nan"),
        "epoch_seconds": epoch_seconds,
        "heldout_nll": _heldout_nll(model, heldout, eval_batch_size),
        "version": scvi.__version__,
    }


def _pbmc3k_split(archive: Any, seed: int = 0, heldout_fraction: float = 0.1) -> tuple[Any, Any]:
    import pathlib
    import tarfile
    import tempfile

    import scanpy as sc

    with tempfile.TemporaryDirectory() as tmp:
        with tarfile.open(archive) as tar:
            tar.extractall(tmp, filter="data")
        adata = sc.read_10x_mtx(pathlib.Path(tmp) / "filtered_gene_bc_matrices" / "hg19")
    adata.X = sp.csr_matrix(adata.X, dtype=np.float32)
    sc.pp.highly_variable_genes(adata, n_top_genes=2000, flavor="seurat_v3")
    adata = adata[:, adata.var["highly_variable"].to_numpy()].copy()
    adata = adata[np.asarray(adata.X.sum(axis=1)).ravel() > 0].copy()
    rng = np.random.default_rng(seed)
    n = adata.n_obs
    held = np.zeros(n, dtype=bool)
    held[rng.choice(n, size=int(round(heldout_fraction * n)), replace=False)] = True
    return adata[~held].copy(), adata[held].copy()


def _main(argv: list[str] | None = None) -> int:
    import argparse
    import json
    import math
    import pathlib
    import sys
    import tarfile

    def fail(message: str) -> int:
        print(f"benchmarks/scvi_peer.py: {message}", file=sys.stderr)
        return 1

    repo = pathlib.Path(__file__).resolve().parents[1]
    ap = argparse.ArgumentParser(description="Quick check of the scvi-tools peer on PBMC 3k (10 epochs).")
    ap.add_argument("--shared", type=pathlib.Path, default=repo.parent / "shared" / "data",
                    help="data folder holding pbmc3k/ (default: ../shared/data next to the repo)")  # fmt: skip
    args = ap.parse_args(argv)
    try:
        import scvi  # noqa: F401
    except ImportError as err:
        return fail(f"scvi-tools is not importable ({err}) in {sys.executable}: run `make setup` and use "
                    f".venv/bin/python")  # fmt: skip
    archive = args.shared / "pbmc3k" / "pbmc3k_filtered_gene_bc_matrices.tar.gz"
    if not archive.is_file():
        return fail(f"PBMC 3k not found: no {archive}; pass --shared DIR, the folder that holds pbmc3k/")
    torch.set_num_threads(2)
    try:
        train_ad, heldout_ad = _pbmc3k_split(archive)
    except (OSError, EOFError, tarfile.TarError) as err:
        why = " ".join(str(err).split())
        return fail(f"could not read PBMC 3k from {archive}: {type(err).__name__}: {why}")
    print(f"train {train_ad.shape}, heldout {heldout_ad.shape}, torch {torch.__version__}", flush=True)
    result = scvi_linear(train_ad, heldout_ad, epochs=10)
    for key in ("seconds_per_epoch", "heldout_nll"):
        if not math.isfinite(result[key]) or result[key] <= 0:
            return fail(f"LinearSCVI gave {key} = {result[key]!r}, not a positive number; no result printed")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
