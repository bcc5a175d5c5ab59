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
import torch

from scmix.errors import ScmixInputError
from scmix.models.modelspec import DEFAULTS, KL_SCHEDULES
from scmix.models.modules.counts import CellData
from scmix.models.steps import make_step

log = logging.getLogger("scmix.models.train")


_D = DEFAULTS  # the model spec's defaults (scmix.models.modelspec): the trainer's are the same values, written once


@dataclass
class TrainConfig:
    epochs: int = _D["epochs"]
    batch_size: int = _D["batch_size"]
    lr: float = _D["lr"]
    weight_decay: float = _D["weight_decay"]
    kl_schedule: str = _D["kl_schedule"]  # one of scmix.models.modelspec.KL_SCHEDULES
    kl_warmup_epochs: int = _D["kl_warmup_epochs"]
    kl_cycle_epochs: int = _D["kl_cycle_epochs"]
    kl_cycle_ramp: float = _D["kl_cycle_ramp"]
    val_fraction: float = _D["val_fraction"]
    patience: int = _D["patience"]
    seed: int = 0
    device: str = _D["device"]
    cuda_graphs: bool = _D["cuda_graphs"]

    @classmethod
    def from_mapping(cls, cfg: Mapping, **overrides) -> TrainConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in {**cfg, **overrides}.items() if k in names})


def resolve_device(device: str = "auto", *, setting: str = "device", **where) -> torch.device:
    """The torch device of a ``device`` setting (``auto``: the first GPU where torch sees one, else the CPU). A GPU
    that is not there is bad input (``setting`` names the config key, ``where`` the model or mix for the message),
    not torch's error from deep inside the first tensor moved."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda":
        found = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if not found:
            build = "a CPU-only build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}"
            raise ScmixInputError(f"{setting} is '{device}', but torch {torch.__version__} ({build}) finds no CUDA GPU "
                                  f"on this machine; set {setting}: auto (a GPU where there is one) or cpu, or run the "
                                  "job on a GPU node", **where)  # fmt: skip
        if (resolved.index or 0) >= found:
            raise ScmixInputError(f"{setting} is '{device}', but this machine has {found} CUDA GPU(s) (cuda:0 to "
                                  f"cuda:{found - 1}); choose one of them or auto", **where)  # fmt: skip
    return resolved


def seed_everything(seed: int) -> None:
    np.random.seed(seed)
    torch.manual_seed(seed)


def as_cell_data(data, device) -> CellData:
    if isinstance(data, CellData):
        if data.device != device:
            raise ValueError(f"data live on {data.device} but training runs on {device}")
        return data
    return CellData(data, device=device)


class TrainingDiverged(RuntimeError):
    """A loss became NaN or infinite; ``seed`` is the diverged run's seed where several trained together."""

    seed: int | None = None


def kl_weight(epoch: int, cfg: TrainConfig) -> float:
    """The KL weight of an epoch (1-based): linear warm-up, cyclical (Fu et al. 2019) or constant 1."""
    if cfg.kl_schedule not in KL_SCHEDULES:
        raise ValueError(f"kl_schedule '{cfg.kl_schedule}' is not one of {list(KL_SCHEDULES)}")
    if cfg.kl_schedule == "cyclical":
        period = max(int(cfg.kl_cycle_epochs), 1)
        phase = ((epoch - 1) % period) / period
        return min(1.0, phase / cfg.kl_cycle_ramp) if cfg.kl_cycle_ramp > 0 else 1.0
    if cfg.kl_schedule == "linear" and cfg.kl_warmup_epochs > 0:
        return min(1.0, epoch / cfg.kl_warmup_epochs)
    return 1.0


class _Run:
    """One model's training, a step at a time (``steps()`` yields after each), so that several models can take
    turns on one device (``fit_many``). Batches are cut from sparse rows resident on the training device;
    losses are summed on the device and read back once per epoch."""

    def __init__(self, model: torch.nn.Module, data, cfg: TrainConfig):
        self.model, self.cfg = model, cfg
        self.device = device = resolve_device(cfg.device)
        model.to(device)
        self.data = data = as_cell_data(data, device)
        n = len(data)
        order = np.random.default_rng(cfg.seed).permutation(n)
        self.n_val = int(round(cfg.val_fraction * n)) if cfg.val_fraction > 0 else 0
        self.val_idx, train_idx = np.sort(order[: self.n_val]), np.sort(order[self.n_val :])
        if hasattr(model, "fit_library_prior"):
            model.fit_library_prior(data.batch(torch.as_tensor(train_idx)).counts.row_sums())
        self.n_train = len(train_idx)
        self.train_idx = torch.as_tensor(train_idx, device=device)
        graphs = bool(cfg.cuda_graphs) and device.type == "cuda"
        # the fused kernel updates every parameter in one op: ~10 % faster per epoch on CPU for the LDVAE;
        # capturable keeps Adam's step count on the device, so that a CUDA graph can replay the update
        fused = device.type in ("cpu", "cuda")
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused,
                               capturable=graphs)  # fmt: skip
        self.step = make_step(model, opt, data, device, self.train_idx, cfg.batch_size, graphs=graphs,
                              seed=cfg.seed, log=log)  # fmt: skip
        self.torch_gen = torch.Generator(device="cpu").manual_seed(cfg.seed)
        self.history: list[dict] = []

    def steps(self):
        """Train, yielding after every optimiser step; at the end the best state is restored."""
        cfg, model, step = self.cfg, self.model, self.step
        seed_everything(cfg.seed)  # the draws of training start from the seed, however many runs were set up since
        best, best_state, stale = math.inf, None, 0
        for epoch in range(1, cfg.epochs + 1):
            t0 = time.perf_counter()
            beta = kl_weight(epoch, cfg)
            model.train()
            step.begin_epoch(beta)
            perm = self.train_idx[torch.randperm(self.n_train, generator=self.torch_gen).to(self.device)]
            for start in range(0, len(perm), cfg.batch_size):
                idx = perm[start : start + cfg.batch_size]
                if len(idx) < 2:  # batch norm needs two cells
                    continue
                step(idx)
                yield
            recon, kl = (step.totals / self.n_train).tolist()  # the epoch's one read back to the host
            row = self._end_epoch(epoch, beta, recon, kl, t0)
            score = row["val_elbo"] if self.n_val else row["train_elbo"]
            if not math.isfinite(score):
                raise TrainingDiverged(
                    f"validation loss became {score} at epoch {epoch}; try a lower lr (now {cfg.lr})"
                )
            if score < best - 1e-4:
                best, best_state, stale = score, copy.deepcopy(model.state_dict()), 0
            else:
                stale += 1
                if cfg.patience and stale >= cfg.patience:
                    log.info("early stop at epoch %d; best -ELBO %.2f", epoch, best)
                    break
        if best_state is not None:
            model.load_state_dict(best_state)
        model.eval()

    def _end_epoch(self, epoch: int, beta: float, recon: float, kl: float, t0: float) -> dict:
        cfg = self.cfg
        train_seconds = time.perf_counter() - t0
        if not (math.isfinite(recon) and math.isfinite(kl)):
            raise TrainingDiverged(
                f"loss became NaN/inf at epoch {epoch} (reconstruction {recon}, KL {kl}); try a lower lr "
                f"(now {cfg.lr}), a longer KL warm-up, or check the input for extreme values"
            )
        row = {"epoch": epoch, "kl_weight": beta, "train_recon": recon, "train_kl": kl, "train_elbo": recon + kl}
        if self.n_val:
            row.update(evaluate_elbo(self.model, self.data, self.val_idx, cfg.batch_size, prefix="val"))
        row["train_seconds"] = train_seconds  # the pass over the training cells
        row["seconds"] = time.perf_counter() - t0  # ... and the validation pass
        self.history.append(row)
        log.info(
            "epoch %d/%d  train -ELBO %.2f (recon %.2f, KL %.2f, weight %.2f)%s  %.2fs",
            epoch, cfg.epochs, row["train_elbo"], recon, kl, beta,
            f"  val -ELBO {row['val_elbo']:.2f} (recon {row['val_recon']:.2f})" if self.n_val else "", row["seconds"],
        )  # fmt: skip
        return row

    def history_table(self) -> pd.DataFrame:
        hist = pd.DataFrame(self.history)
        hist["best"] = hist["epoch"] == hist.loc[hist["val_elbo" if self.n_val else "train_elbo"].idxmin(), "epoch"]
        return hist


def fit(model: torch.nn.Module, data, cfg: TrainConfig) -> pd.DataFrame:
    """Train ``model`` on ``data`` (a CellData, or a cells x genes count matrix); restore the best state.

    On a CUDA device the step is captured as a CUDA graph and replayed (``scmix.models.steps``; ``cuda_graphs:
    false`` turns that off); elsewhere it runs eagerly."""
    run = _Run(model, data, cfg)
    for _ in run.steps():
        pass
    return run.history_table()


@torch.no_grad()
def evaluate_elbo(model, data, idx=None, batch_size: int = 1024, prefix: str = "val") -> dict[str, float]:
    """Mean reconstruction NLL, KL and negative ELBO per cell at the posterior mean (deterministic)."""
    model.eval()
    idx = np.arange(len(data)) if idx is None else np.asarray(idx)
    totals = None
    step = max(batch_size, 1024)
    for start in range(0, len(idx), step):
        out = model(data.batch(torch.as_tensor(idx[start : start + step])))
        part = torch.stack([out["recon"].sum(), out["kl"].sum()])
        totals = part if totals is None else totals + part
    recon, kl = (totals / len(idx)).tolist()
    return {f"{prefix}_recon": recon, f"{prefix}_kl": kl, f"{prefix}_elbo": recon + kl}


def build_and_fit(architecture: str, model_kwargs: Mapping, data, cfg: TrainConfig):
    """Seed, then build the model (so its initial weights depend on the seed), then train it."""
    from scmix.models.modules import build_model

    seed_everything(cfg.seed)
    model = build_model(architecture, **model_kwargs)
    return model, fit(model, data, cfg)


def fit_many(models: list[torch.nn.Module], datas: list, cfgs: list[TrainConfig]) -> list[pd.DataFrame]:
    """Train several models together on one device (each with its own cells and settings); each ends as
    ``fit(model, data, cfg)`` alone would, and its history is the one that call would return.

    On a GPU (with ``cuda_graphs``) the models take turns step by step, each replaying its captured step on a
    CUDA stream of its own with a generator state of its own, so one model's small kernels run beside
    another's. Elsewhere they train one after another: their random draws come from one global generator,
    which models stepping in turn would share."""
    runs = [_Run(m, d, c) for m, d, c in zip(models, datas, cfgs, strict=True)]
    if not all(run.step.graphed for run in runs):  # the CPU, or CUDA without graphs: one global generator
        for run in runs:
            for _ in _naming_seed(run):
                pass
        return [run.history_table() for run in runs]
    pending = [(run, _naming_seed(run), torch.cuda.Stream(device=run.device)) for run in runs]
    for run, _, stream in pending:
        stream.wait_stream(torch.cuda.current_stream(run.device))
    while pending:
        for item in list(pending):
            run, steps, stream = item
            with torch.cuda.stream(stream):
                if next(steps, StopIteration) is StopIteration:
                    pending.remove(item)
    for run in runs:
        torch.cuda.synchronize(run.device)
    return [run.history_table() for run in runs]


def _naming_seed(run: _Run):
    """``run.steps()``, with the run's seed on a TrainingDiverged it raises."""
    try:
        yield from run.steps()
    except TrainingDiverged as err:
        err.seed = run.cfg.seed
        raise


def build_and_fit_many(architectures: list[str], model_kwargs: list[Mapping], datas: list, cfgs: list[TrainConfig]):
    """``build_and_fit`` for several models at once: each is built after seeding with its own seed, then all
    train together (``fit_many``); returns [(model, history), ...] in the order given."""
    from scmix.models.modules import build_model

    models = []
    for arch, kwargs, cfg in zip(architectures, model_kwargs, cfgs, strict=True):
        seed_everything(cfg.seed)
        models.append(build_model(arch, **kwargs))
    return list(zip(models, fit_many(models, datas, cfgs), strict=True))


def config_dict(cfg: TrainConfig) -> dict:
    return asdict(cfg)
