"""The trainer: minibatch Adam on the negative ELBO with KL warm-up, validation and early stopping.

It takes a torch module and a count matrix and returns the history; it reads and writes no files.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

log = logging.getLogger("scmix.train")


@dataclass
class TrainConfig:
    epochs: int = 50
    batch_size: int = 128
    lr: float = 5e-3
    weight_decay: float = 0.0
    kl_warmup_epochs: int = 10
    val_fraction: float = 0.1
    patience: int = 15
    seed: int = 0
    device: str = "auto"

    @classmethod
    def from_mapping(cls, cfg: Mapping, **overrides) -> TrainConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in {**cfg, **overrides}.items() if k in names})


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def seed_everything(seed: int) -> None:
    np.random.seed(seed)
    torch.manual_seed(seed)


def _to_tensor(X, device) -> torch.Tensor:
    dense = X.toarray() if sp.issparse(X) else np.asarray(X)
    return torch.as_tensor(dense, dtype=torch.float32, device=device)


class TrainingDiverged(RuntimeError):
    pass


def fit(model: torch.nn.Module, X, cfg: TrainConfig) -> pd.DataFrame:
    """Train ``model`` on the count matrix ``X`` (cells x genes); restore the best validation state."""
    device = resolve_device(cfg.device)
    seed_everything(cfg.seed)
    model.to(device)
    n = X.shape[0]
    gen = np.random.default_rng(cfg.seed)
    order = gen.permutation(n)
    n_val = int(round(cfg.val_fraction * n)) if cfg.val_fraction > 0 else 0
    val_idx, train_idx = np.sort(order[:n_val]), np.sort(order[n_val:])
    data = _to_tensor(X, device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    torch_gen = torch.Generator(device="cpu").manual_seed(cfg.seed)

    history, best, best_state, stale = [], math.inf, None, 0
    for epoch in range(1, cfg.epochs + 1):
        t0 = time.perf_counter()
        beta = min(1.0, epoch / cfg.kl_warmup_epochs) if cfg.kl_warmup_epochs > 0 else 1.0
        model.train()
        perm = torch.as_tensor(train_idx)[torch.randperm(len(train_idx), generator=torch_gen)]
        tot_recon = tot_kl = 0.0
        for start in range(0, len(perm), cfg.batch_size):
            batch = perm[start : start + cfg.batch_size]
            if len(batch) < 2:  # batch norm needs two cells
                continue
            out = model(data[batch.to(device)])
            loss = (out["recon"] + beta * out["kl"]).mean()
            if not torch.isfinite(loss):
                raise TrainingDiverged(
                    f"loss became {loss.item()} at epoch {epoch}; try a lower lr (now {cfg.lr}) "
                    "or check the input counts"
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            tot_recon += out["recon"].sum().item()
            tot_kl += out["kl"].sum().item()
        row = {
            "epoch": epoch,
            "kl_weight": beta,
            "train_recon": tot_recon / len(train_idx),
            "train_kl": tot_kl / len(train_idx),
        }
        row["train_elbo"] = row["train_recon"] + row["train_kl"]
        if n_val:
            row.update(evaluate_elbo(model, data[torch.as_tensor(val_idx, device=device)], cfg.batch_size))
            score = row["val_elbo"]
        else:
            score = row["train_elbo"]
        row["seconds"] = time.perf_counter() - t0
        history.append(row)
        log.info(
            "epoch %d/%d  train -ELBO %.2f (recon %.2f, KL %.2f)%s  %.2fs",
            epoch, cfg.epochs, row["train_elbo"], row["train_recon"], row["train_kl"],
            f"  val -ELBO {row['val_elbo']:.2f}" if n_val else "", row["seconds"],
        )  # fmt: skip
        if score < best - 1e-4:
            best, best_state, stale = score, copy.deepcopy(model.state_dict()), 0
        else:
            stale += 1
            if cfg.patience and stale >= cfg.patience:
                log.info("early stop at epoch %d; best validation -ELBO %.2f", epoch, best)
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    hist = pd.DataFrame(history)
    hist["best"] = hist["epoch"] == hist.loc[hist["val_elbo" if n_val else "train_elbo"].idxmin(), "epoch"]
    return hist


@torch.no_grad()
def evaluate_elbo(model, data: torch.Tensor, batch_size: int) -> dict[str, float]:
    """Mean reconstruction NLL and KL per cell at the posterior mean (deterministic)."""
    model.eval()
    recon = kl = 0.0
    for start in range(0, data.shape[0], max(batch_size, 1024)):
        out = model(data[start : start + max(batch_size, 1024)])
        recon += out["recon"].sum().item()
        kl += out["kl"].sum().item()
    n = data.shape[0]
    return {"val_recon": recon / n, "val_kl": kl / n, "val_elbo": (recon + kl) / n}


def build_and_fit(architecture: str, model_kwargs: Mapping, X, cfg: TrainConfig):
    """Seed, then build the model (so its initial weights depend on the seed), then train it."""
    from scmix.models import build_model

    seed_everything(cfg.seed)
    model = build_model(architecture, **model_kwargs)
    return model, fit(model, X, cfg)


def config_dict(cfg: TrainConfig) -> dict:
    return asdict(cfg)
