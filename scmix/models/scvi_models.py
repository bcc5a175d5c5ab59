"""scvi-tools models in the workflow: ``architecture: scvi`` (``scvi.model.SCVI``) and ``scvi_linear``
(``scvi.model.LinearSCVI``, the datamix study's LDVAE), trained by rule train and loaded by ``scmix.load`` as a
``ScviModel``: the interface of ``scmix.models.trained.TrainedModel`` over scvi-tools' own methods.

* normalized expression: ``get_normalized_expression`` at the posterior mean of z (``sample=False``; scvi-tools
  itself always draws z, which is ``sample=True``, the datamix study's call);
* latent: ``get_latent_representation`` (posterior means);
* held-out likelihood: ``get_marginal_ll`` (importance-sampled log p(x), per cell); the ELBO per cell is
  scvi-tools' training loss (one draw of z and of a learned library); the reconstruction NLL is at the
  posterior means. scvi-tools computes these in float32;
* zero probability: from ``get_likelihood_parameters`` (the NB/ZINB/Poisson parameters at the posterior);
* loadings: ``get_loadings`` (``scvi_linear``);
* no generation: these models are not conditioned on cell type, so rule synthetic does not run them.

scvi-tools is an optional extra (``pip install -e .[scvi]``); nothing here imports it before it is needed.
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from collections.abc import Mapping

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from scmix.errors import ScmixInputError
from scmix.models.checkpoint import FORMAT, save_payload, unreadable
from scmix.models.trained import Cells, TrainedModel, check_genes, load_weights

log = logging.getLogger("scmix.scvi")

INSTALL = "pip install -e '.[scvi]' (or: make setup)"
CLASSES = {"scvi": "SCVI", "scvi_linear": "LinearSCVI"}
# the keys that go to the scvi-tools model's constructor (the rest drive training or the scheduler)
MODEL_KEYS = ("n_hidden", "n_latent", "n_layers", "dropout_rate", "dispersion", "gene_likelihood",
              "use_observed_lib_size")  # fmt: skip


def scvi_class(architecture: str):
    try:
        import scvi
    except ImportError:
        message = f"architecture {architecture} needs scvi-tools, which is not installed; {INSTALL}"
        raise ScmixInputError(message) from None
    scvi.settings.dl_num_workers = 0
    scvi.settings.dl_persistent_workers = False
    return getattr(scvi.model, CLASSES[architecture])


def _adata(counts, obs: pd.DataFrame, genes, batch_key: str | None):
    """What scvi-tools reads: raw counts in X (float32 CSR), the model's genes, the batch column only."""
    import anndata as ad

    keep = pd.DataFrame(index=pd.Index(obs.index.astype(str)))
    if batch_key:
        keep[batch_key] = pd.Categorical(obs[batch_key].astype(str).to_numpy())
    return ad.AnnData(sp.csr_matrix(counts, dtype=np.float32), obs=keep, var=pd.DataFrame(index=pd.Index(genes)))


class _EpochTimes:
    """A lightning callback that records the wall time of every training epoch."""

    def __new__(cls):
        from lightning.pytorch.callbacks import Callback

        class Times(Callback):
            def __init__(self):
                self.seconds, self._t0 = [], None

            def on_train_epoch_start(self, trainer, module):
                self._t0 = time.perf_counter()

            def on_train_epoch_end(self, trainer, module):
                self.seconds.append(time.perf_counter() - self._t0)

        return Times()


def _history(model, seconds: list[float]) -> pd.DataFrame:
    """scvi-tools' per-epoch history in the columns of scmix's (per-cell means: reconstruction, KL, -ELBO)."""
    h = model.history
    n = len(h["elbo_train"])
    out = pd.DataFrame({"epoch": np.arange(1, n + 1)})

    def col(key):  # an epoch-level series; NaN where scvi-tools logged none (kl_weight is logged per step)
        return h[key].iloc[:, 0].to_numpy(dtype=float) if key in h and len(h[key]) == n else np.full(n, np.nan)

    out["kl_weight"] = col("kl_weight")
    out["train_recon"] = col("reconstruction_loss_train")
    out["train_kl"] = col("kl_local_train")
    out["train_elbo"] = col("elbo_train")
    if "elbo_validation" in h:
        out["val_recon"] = col("reconstruction_loss_validation")
        out["val_kl"] = col("kl_local_validation")
        out["val_elbo"] = col("elbo_validation")
    out["train_seconds"] = out["seconds"] = (list(seconds) + [np.nan] * n)[:n]
    score = out["val_elbo"] if "val_elbo" in out else out["train_elbo"]
    out["best"] = out["epoch"] == out.loc[score.idxmin(), "epoch"]
    return out


def fit_scvi(counts, obs: pd.DataFrame, genes, spec: Mapping, *, seed: int, device: torch.device, name: str):
    """Train the scvi-tools model of ``spec`` on raw counts; (scvi-tools model, history, epochs trained)."""
    import scvi

    cls = scvi_class(spec["architecture"])
    scvi.settings.seed = int(seed)
    adata = _adata(counts, obs, genes, spec["batch_key"])
    cls.setup_anndata(adata, batch_key=spec["batch_key"])
    model = cls(adata, **{k: spec[k] for k in MODEL_KEYS})
    times = _EpochTimes()
    accelerator = "gpu" if device.type == "cuda" else "cpu"
    with warnings.catch_warnings():
        # lightning's notes on a SLURM host, on small datasets' logging interval and on its own deprecations
        for note in (r".*srun.*", r".*log_every_n_steps.*", r".*LeafSpec.*"):
            warnings.filterwarnings("ignore", message=note)
        model.train(
            max_epochs=spec["max_epochs"], accelerator=accelerator,
            devices=[device.index or 0] if accelerator == "gpu" else 1, batch_size=spec["batch_size"],
            train_size=spec["train_size"], early_stopping=spec["early_stopping"], plan_kwargs={"lr": spec["lr"]},
            callbacks=[times], enable_progress_bar=False, enable_checkpointing=False,
        )  # fmt: skip
    history = _history(model, times.seconds)
    for row in history.itertuples():
        log.info("epoch %d  train -ELBO %.2f%s  %.2fs", row.epoch, row.train_elbo,
                 f"  val -ELBO {row.val_elbo:.2f}" if "val_elbo" in history else "", row.seconds)  # fmt: skip
    return model, history, len(history)


def _description(model) -> dict:
    """What rebuilds a trained scvi-tools model, as plain data: its class, the arguments it was made with, the
    batch column and its categories in scvi-tools' code order."""
    registry = model.adata_manager.registry
    setup = dict(registry["setup_args"])
    if any(v is not None for k, v in setup.items() if k != "batch_key"):
        raise ValueError(f"scmix stores scvi-tools models set up with batch_key only, not {setup}")
    init = model.init_params_
    params = {**init["non_kwargs"], **{k: v for extra in init["kwargs"].values() for k, v in extra.items()}}
    key = setup.get("batch_key")
    batches = registry["field_registries"]["batch"]["state_registry"]["categorical_mapping"]
    description = {
        "class": type(model).__name__,
        "init_params": params,
        "batch_key": key,
        "batch_categories": [str(b) for b in batches],
        "scvi_version": str(registry.get("scvi_version")),
    }
    json.dumps(description)  # plain data only: what torch's weights-only reader takes back
    return description


def save_scvi(path, model, *, architecture: str, genes, meta: dict) -> None:
    """A trained scvi-tools model as an scmix checkpoint: its module's weights (tensors) and, under ``scvi``, the
    plain data that rebuilds it (``_description``). Not scvi-tools' own ``model.save``: its model.pt is a
    pickle (numpy object arrays, pandas tables) that only an unpickler that can run code reads back."""
    save_payload(path, {
        "format": FORMAT,
        "architecture": architecture,
        "model_kwargs": {},
        "genes": [str(g) for g in genes],
        "meta": meta,
        "scvi": _description(model),
        "state_dict": {k: v.detach().cpu() for k, v in model.module.state_dict().items()},
    })  # fmt: skip


def _rebuild(scvi_cls, description: dict, genes):
    """An untrained scvi-tools model of the checkpoint's class and arguments on a template AnnData of its genes
    and batches: a few one-count cells (the library prior it computes from them is replaced by the saved one)."""
    import anndata as ad

    key, batches = description["batch_key"], description["batch_categories"]
    n = max(3, len(batches))
    obs = pd.DataFrame(index=pd.Index([f"t{i}" for i in range(n)]))
    if key:
        obs[key] = pd.Categorical([batches[i % len(batches)] for i in range(n)], categories=batches)
    ones = sp.csr_matrix((np.ones(n, dtype=np.float32), (np.arange(n), np.zeros(n, dtype=int))),
                         shape=(n, len(genes)))  # fmt: skip
    template = ad.AnnData(ones, obs=obs, var=pd.DataFrame(index=pd.Index(genes)))
    scvi_cls.setup_anndata(template, batch_key=key)
    model = scvi_cls(template, **description["init_params"])
    mapping = model.adata_manager.registry["field_registries"]["batch"]["state_registry"]["categorical_mapping"]
    if [str(b) for b in mapping] != list(batches):
        raise ValueError(f"scvi-tools coded the batches {list(mapping)}, not {batches}")
    return model


def _checked_description(payload: dict, path) -> dict:
    arch, description = payload["architecture"], payload.get("scvi")
    if not isinstance(description, dict):
        raise unreadable(f"architecture {arch} but no scvi-tools description in it", path)
    if description.get("class") != CLASSES[arch]:
        raise unreadable(f"it says architecture '{arch}' but holds an scvi-tools {description.get('class')}", path)
    params, key, batches = description.get("init_params"), description.get("batch_key"), description.get(
        "batch_categories")  # fmt: skip
    plain = (str, int, float, bool, type(None))
    if not (isinstance(params, dict) and all(isinstance(k, str) and isinstance(v, plain) for k, v in params.items())
            and isinstance(key, str | None) and isinstance(batches, list)
            and all(isinstance(b, str) for b in batches) and (batches or not key)):  # fmt: skip
        raise unreadable("its scvi-tools description is not the plain data scmix writes", path)
    return description


class ScviModel(TrainedModel):
    """A trained scvi-tools model behind scmix's trained-model interface (see the module docstring)."""

    def __init__(self, scvi_model, *, architecture: str, genes, meta: dict, device="cpu"):
        super().__init__(scvi_model.module, architecture=architecture, model_kwargs={}, genes=genes, meta=meta,
                         device=device)  # fmt: skip
        self.scvi = scvi_model

    @classmethod
    def from_payload(cls, payload: dict, device="cpu", path=None) -> ScviModel:
        """The scvi-tools model rebuilt from a checkpoint's description and loaded with its weights
        (``save_scvi``): no pickle is read."""
        arch, genes = payload["architecture"], payload["genes"]
        check_genes(payload, path)
        description = _checked_description(payload, path)
        scvi_cls = scvi_class(arch)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            try:
                model = _rebuild(scvi_cls, description, genes)
            except (TypeError, ValueError, KeyError) as err:
                raise unreadable(f"its scvi-tools settings do not make a {CLASSES[arch]}: {err}", path) from None

        def refit(other):
            if other not in CLASSES or other == arch:
                return False
            try:
                _rebuild(scvi_class(other), description, genes).module.load_state_dict(payload["state_dict"])
            except (TypeError, ValueError, KeyError, RuntimeError):
                return False
            return True

        load_weights(model.module, payload, path, n_genes=len(genes), refit=refit)
        model.is_trained_ = True
        model.module.eval()
        model.to_device(torch.device(device))
        return cls(model, architecture=arch, genes=genes, meta=payload["meta"], device=device)

    @property
    def counts_model(self) -> bool:
        return True

    @property
    def likelihood(self) -> str:
        return self.spec.get("gene_likelihood", "nb")

    @property
    def linear(self) -> bool:
        return self.architecture == "scvi_linear"

    @property
    def n_latent(self) -> int:
        return int(self.spec.get("n_latent", self.module.n_latent))

    def _data(self, cells: Cells):
        """The cells as an AnnData registered with the model (cells of a batch it never saw are an error)."""
        if "scvi" not in cells.cache:
            key = self.spec.get("batch_key")
            if key:
                known = set(self.categories.get(key, []))
                values = cells.obs[key].astype(str) if key in cells.obs else pd.Series(["<missing>"] * cells.n_cells)
                unseen = sorted(set(values) - known)
                if unseen:
                    raise ScmixInputError(
                        f"{len(unseen)} value(s) of batch_key '{key}' the scvi-tools model was not trained on "
                        f"({', '.join(unseen[:5])}); scvi-tools cannot encode cells of an unseen batch: evaluate them "
                        f"with a model trained on their batches, or drop batch_key",
                        dataset=cells.name,
                    )  # fmt: skip
            adata = _adata(cells.counts, cells.obs, self.genes, key)
            self.scvi._validate_anndata(adata)
            cells.cache["scvi"] = adata
        return cells.cache["scvi"]

    def expression_chunks(self, cells, *, chunk_cells: int = 2048, library_size: float = 1.0, sample: bool = False,
                          seed: int = 0):  # fmt: skip
        cells = self.prepare(cells)
        adata = self._data(cells)
        if sample:
            import scvi

            scvi.settings.seed = int(seed)  # once: the chunks draw from one stream
            for start in range(0, cells.n_cells, chunk_cells):
                rows = np.arange(start, min(start + chunk_cells, cells.n_cells))
                out = self.scvi.get_normalized_expression(adata, indices=rows, library_size=library_size,
                                                          batch_size=chunk_cells, return_numpy=True)  # fmt: skip
                yield start, np.asarray(out, dtype=np.float64)
            return
        start = 0
        for out in self._posterior_batches(adata, chunk_cells, lambda px, t: px.scale * library_size):
            yield start, out
            start += len(out)

    def _loader(self, adata, batch_size: int):
        return self.scvi._make_data_loader(adata=adata, batch_size=batch_size, shuffle=False)

    @torch.inference_mode()
    def _posterior_batches(self, adata, batch_size: int, what):
        """``what(px, tensors)`` per batch (float64 numpy), with the decoder at the posterior means of z (and of
        a learned library)."""
        module = self.module
        for tensors in self._loader(adata, batch_size):
            tensors = {k: v.to(module.device) if torch.is_tensor(v) else v for k, v in tensors.items()}
            inference = module.inference(**module._get_inference_input(tensors))
            inference = {**inference, "z": inference["qz"].loc}
            if inference.get("ql") is not None:
                inference["library"] = inference["ql"].loc
            px = module.generative(**module._get_generative_input(tensors, inference))["px"]
            yield what(px, tensors).detach().cpu().numpy().astype(np.float64)

    def posterior_predictive(self, cells, *, chunk_cells: int = 2048, seed: int = 0):
        """One replicate of every cell, as scvi-tools' posterior predictive draws it (z and a learned library from
        their posteriors, counts from px), a chunk of cells at a time: yields (first row, cells x genes array)."""
        import scvi

        cells = self.prepare(cells)
        adata = self._data(cells)
        scvi.settings.seed = int(seed)
        module, start = self.module, 0
        with torch.inference_mode():
            for tensors in self._loader(adata, chunk_cells):
                tensors = {k: v.to(module.device) if torch.is_tensor(v) else v for k, v in tensors.items()}
                inference = module.inference(**module._get_inference_input(tensors))
                px = module.generative(**module._get_generative_input(tensors, inference))["px"]
                draw = px.sample().cpu().numpy()
                yield start, draw
                start += len(draw)

    def latent(self, cells, *, batch_size: int = 1024) -> np.ndarray:
        adata = self._data(self.prepare(cells))
        return np.asarray(self.scvi.get_latent_representation(adata, batch_size=batch_size), dtype=np.float64)

    def heldout_likelihood(self, cells, *, n_samples: int = 100, seed: int = 0, batch_size: int = 256) -> pd.DataFrame:
        """Per cell: reconstruction NLL at the posterior means, scvi-tools' -loss (one draw: its ELBO) and
        ``get_marginal_ll`` with ``n_samples`` importance samples (nats, float32 as scvi-tools computes them)."""
        import scvi

        cells = self.prepare(cells)
        adata = self._data(cells)
        scvi.settings.seed = int(seed)
        recon = np.concatenate(list(self._posterior_batches(adata, batch_size,
                                                             lambda px, t: -px.log_prob(t["X"]).sum(-1))))  # fmt: skip
        elbo = []
        with torch.inference_mode():
            for tensors in self._loader(adata, batch_size):
                _, _, losses = self.module.forward(tensors, loss_kwargs={"kl_weight": 1.0})
                per_cell = losses.dict_sum(losses.reconstruction_loss) + losses.dict_sum(losses.kl_local)
                elbo.append((-per_cell).cpu().numpy())
        marginal = self.scvi.get_marginal_ll(adata, n_mc_samples=n_samples, batch_size=batch_size, return_mean=False)
        return pd.DataFrame({"recon_nll": recon, "elbo": np.concatenate(elbo).astype(np.float64),
                             "marginal_ll": np.asarray(marginal, dtype=np.float64)})  # fmt: skip

    def zero_probability(self, cells, *, batch_size: int = 1024) -> np.ndarray:
        cells = self.prepare(cells)
        adata = self._data(cells)

        def zeros(px, tensors):
            return torch.exp(px.log_prob(torch.zeros_like(px.mean))).sum(0)

        total = np.zeros(len(self.genes))
        for p0 in self._posterior_batches(adata, batch_size, zeros):
            total += p0
        return total / cells.n_cells if cells.n_cells else np.full(len(self.genes), np.nan)

    def generate(self, obs, label_key, n_per_label, *, seed=0, mode="prior", cells=None, batch_size=1024):
        raise ValueError(f"model '{self.name}' ({self.architecture}) is not conditioned on '{label_key}'; scvi-tools "
                         f"models here generate no labelled cells")  # fmt: skip

    def loadings(self) -> pd.DataFrame:
        if not self.linear:
            raise ValueError(f"model '{self.name}' ({self.architecture}) has no linear decoder, so no gene loadings")
        table = self.scvi.get_loadings()
        table.columns = [f"z{i}" for i in range(table.shape[1])]
        return table.set_axis(self.genes, axis=0)

    def save(self, path) -> None:
        save_scvi(path, self.scvi, architecture=self.architecture, genes=self.genes, meta=self.meta)
