"""A trained model as one object: ``scmix.load(path)`` gives a ``TrainedModel`` whatever trained it.

``model.prepare(adata)`` matches an AnnData's genes to the model's (on the keys its mix used: symbols or
Ensembl IDs; genes the cells lack are zero-padded), checks that the counts are raw integers and returns
``Cells`` that every method takes, so that a rule moves its cells to the device once. The methods:

* ``normalized_expression(cells, library_size=1e4, sample=False)``: the decoder's expression at a library
  size (``library_size=1``: proportions, rows sum to one), at the posterior mean of z or one draw of it;
* ``latent(cells)``: posterior means of z;
* ``heldout_likelihood(cells, n_samples)``: per cell, reconstruction NLL at the posterior mean, a Monte Carlo
  ELBO and the importance-sampled log p(x), summed per cell in float64;
* ``zero_probability(cells)``: per gene, the model's mean P(x = 0) over the cells;
* ``generate(obs, label_key, n_per_label, mode=, cells=)``: synthetic cells of each label a conditional model
  knows, z from the prior, the label's aggregate posterior or each drawn cell's posterior;
* ``posterior_predictive(cells)``: one replicate of each cell, z ~ q(z | x), counts from the likelihood;
* ``loadings()``: the gene x latent weights of a linear decoder; ``save(path)``.

Every method also takes an AnnData and prepares it first. Models of scvi-tools (``architecture: scvi`` or
``scvi_linear``) load as ``scmix.models.scvi_models.ScviModel``, the same interface over scvi-tools' own methods.
``scmix.models.loading`` reads a checkpoint back as one or the other.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from scmix.data.genes import gene_keys, reindex_to_genes
from scmix.io import check_integer_counts
from scmix.models import transforms
from scmix.models.checkpoint import save_checkpoint, unreadable
from scmix.models.modeldata import cell_data, encode
from scmix.models.modelspec import ARCHITECTURES, SCVI_ARCHITECTURES
from scmix.models.modules import build_model

# where generate() draws z from (its docstring); the config's evaluation.synthetic.generation
GENERATION_MODES = ("posterior", "aggregate", "prior")


@dataclass
class Cells:
    """An AnnData's cells as a model reads them: counts in the model's gene order, obs, and the fraction of
    the model's genes the AnnData had. ``data`` (the model's tensors on its device) is built on first use."""

    counts: sp.csr_matrix
    obs: pd.DataFrame
    overlap: float
    name: str
    cache: dict = field(default_factory=dict, repr=False)

    @property
    def n_cells(self) -> int:
        return self.counts.shape[0]

    @property
    def obs_names(self) -> pd.Index:
        return self.obs.index


def check_genes(payload: dict, path) -> None:
    """The gene keys (what cells are matched on) are one per gene of the checkpoint."""
    keys = payload["meta"].get("gene_keys")
    if keys is not None and not isinstance(keys, list):
        raise unreadable(f"its gene keys are a {type(keys).__name__}, not a list", path)
    if keys is not None and len(keys) != len(payload["genes"]):
        raise unreadable(f"{len(keys)} gene keys for {len(payload['genes'])} genes", path)


def load_weights(module, payload: dict, path, *, n_genes: int, refit=None) -> None:
    """``module.load_state_dict`` of the checkpoint's weights, strict; weights that do not fit the module (built
    from the checkpoint's architecture, settings and gene list) are one line saying what they are: weights for
    another number of genes than the gene list's, or (``refit(arch)``: a module of another architecture that
    takes them, or None) weights of another architecture than the file says."""
    state, arch, genes = payload["state_dict"], payload["architecture"], payload["genes"]
    try:
        module.load_state_dict(state)
        return
    except RuntimeError:
        pass
    for other in (a for a in ARCHITECTURES + SCVI_ARCHITECTURES if a != arch):
        if refit is not None and refit(other):
            raise unreadable(f"it says architecture '{arch}' but its weights are those of architecture '{other}'",
                             path)  # fmt: skip
    expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    for key, shape in expected.items():
        found = tuple(state[key].shape) if key in state else None
        if found and len(found) == len(shape) and found != shape:
            for want, have in zip(shape, found, strict=True):
                if want == n_genes and have != want:
                    raise unreadable(f"its weights are for {have} genes, not the {len(genes)} it lists "
                                     f"({key} is {list(found)})", path)  # fmt: skip
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    detail = "; ".join(part for part in (
        f"missing {', '.join(missing[:3])}" if missing else "",
        f"unexpected {', '.join(extra[:3])}" if extra else "",
    ) if part) or "tensor shapes differ"  # fmt: skip
    raise unreadable(f"its weights do not fit architecture '{arch}' with its recorded settings ({detail})", path)


class TrainedModel:
    """One of scmix's torch models with what it was trained on: genes and their keys, category vocabularies,
    the model spec. ``module`` is the torch module (``scmix.models.modules.VAE``)."""

    def __init__(self, module, *, architecture: str, model_kwargs: dict, genes, meta: dict, device="cpu"):
        self.module = module.to(device).eval()
        self.architecture = architecture
        self.model_kwargs = dict(model_kwargs)
        self.genes = pd.Index([str(g) for g in genes])
        self.meta = dict(meta)
        self.device = torch.device(device)
        self._module64 = None

    @classmethod
    def from_module(cls, module, *, spec: dict, genes, categories=None, model_kwargs=None, name: str = "model",
                    device="cpu") -> TrainedModel:  # fmt: skip
        """A module trained in Python (``scmix.models.train.build_and_fit``) with its spec, genes and vocabulary."""
        meta = {
            "model": name,
            "spec": dict(spec),
            "categories": dict(categories or {}),
            "transform": spec.get("transform"),
        }
        return cls(module, architecture=spec["architecture"], model_kwargs=dict(model_kwargs or {}), genes=genes,
                   meta=meta, device=device)  # fmt: skip

    @classmethod
    def from_payload(cls, payload: dict, device="cpu", path=None) -> TrainedModel:
        """The model of a checkpoint's contents (``checkpoint.load_payload``), its architecture, settings, gene
        list and weights checked against each other."""
        arch, kwargs, genes = payload["architecture"], payload["model_kwargs"], payload["genes"]
        check_genes(payload, path)
        try:
            module = build_model(arch, **kwargs)
        except (TypeError, ValueError) as err:
            raise unreadable(f"its recorded settings do not make a {arch}: {err}", path) from None

        def refit(other):
            try:
                build_model(other, **kwargs).load_state_dict(payload["state_dict"])
            except (TypeError, ValueError, RuntimeError):
                return False
            return True

        load_weights(module, payload, path, n_genes=int(kwargs.get("n_genes", module.n_genes)), refit=refit)
        if module.n_genes != len(genes):
            raise unreadable(f"it lists {len(genes)} genes but its weights are for {module.n_genes} genes", path)
        return cls(module, architecture=arch, model_kwargs=kwargs, genes=genes, meta=payload["meta"],
                   device=device)  # fmt: skip

    # -- what the model knows ------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return str(self.meta.get("model", "model"))

    @property
    def spec(self) -> dict:
        return dict(self.meta.get("spec") or {})

    @property
    def categories(self) -> dict[str, list[str]]:
        """The vocabulary of each covariate (code = position + 1; 0 is a category the model never saw)."""
        return dict(self.meta.get("categories") or {})

    @property
    def match_on(self) -> str:
        return self.meta.get("match_on", "symbols")

    @property
    def gene_keys(self) -> pd.Index:
        """The keys the model's genes are matched on (symbols, or Ensembl IDs when its mix matched on IDs)."""
        return pd.Index(self.meta.get("gene_keys") or list(self.genes))

    @property
    def counts_model(self) -> bool:
        return bool(self.module.counts_model)

    @property
    def likelihood(self) -> str:
        return self.spec.get("likelihood", self.model_kwargs.get("likelihood", "nb"))

    @property
    def linear(self) -> bool:
        return getattr(self.module, "decoder_kind", None) == "linear"

    @property
    def n_latent(self) -> int:
        return int(self.module.n_latent)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {self.architecture}, {len(self.genes)} genes, {self.device})"

    # -- cells -----------------------------------------------------------------------------------------------
    def prepare(self, adata, *, min_overlap: float = 0.0, name: str = "cells", path=None,
                kind: str = "dataset") -> Cells:  # fmt: skip
        """``adata``'s raw counts on the model's genes (missing genes zero, with a warning; fewer than
        ``min_overlap`` of them found is an error), checked to be integers. ``name``/``kind``/``path`` name the
        cells in messages."""
        if isinstance(adata, Cells):
            return adata
        counts, overlap = reindex_to_genes(adata, self.gene_keys, keys=gene_keys(adata, self.match_on),
                                           min_overlap=min_overlap, eval_set=name, kind=kind)  # fmt: skip
        check_integer_counts(counts, path=str(path) if path else None, **{kind: name})
        return Cells(counts, adata.obs.copy(), overlap, name)

    def _data(self, cells: Cells):
        """The cells' tensors on the model's device (counts, category codes, a Gaussian model's input), once."""
        key = ("scmix", str(self.device))
        if key not in cells.cache:
            transform = None if self.counts_model else self.spec.get("transform")
            cells.cache[key] = cell_data(cells.counts, cells.obs, transform=transform, vocab=self.categories,
                                         device=self.device)  # fmt: skip
        return cells.cache[key]

    def _generator(self, seed: int) -> torch.Generator:
        return torch.Generator(device=self.device).manual_seed(int(seed))

    # -- what the model says about cells ---------------------------------------------------------------------
    def normalized_expression(self, cells, *, library_size: float = 1e4, sample: bool = False, seed: int = 0,
                              batch_size: int = 1024) -> np.ndarray:  # fmt: skip
        """The decoder's expression (cells x genes) scaled to ``library_size`` per cell (1: proportions), at the
        posterior mean of z or (``sample``) one draw of it. A Gaussian model's output is mapped back to
        proportions from its transform space (``transforms.to_proportions``). All cells at once: see
        ``expression_chunks`` for a chunk at a time."""
        chunks = [rho for _, rho in self.expression_chunks(cells, chunk_cells=batch_size, library_size=library_size,
                                                           sample=sample, seed=seed)]  # fmt: skip
        return np.concatenate(chunks) if chunks else np.zeros((0, len(self.genes)))

    def expression_chunks(self, cells, *, chunk_cells: int = 2048, library_size: float = 1.0, sample: bool = False,
                          seed: int = 0):  # fmt: skip
        """``normalized_expression`` ``chunk_cells`` cells at a time: yields (first row, chunk x genes) in
        cell order, one random stream across chunks (``sample``), so memory is O(chunk x genes)."""
        cells = self.prepare(cells)
        data, gen = self._data(cells), self._generator(seed)
        gene_totals = None
        if not self.counts_model and self.spec["transform"] == "pearson_residuals":
            gene_totals = np.asarray(cells.counts.sum(axis=0)).ravel()
        with torch.no_grad():
            for start, b in zip(range(0, cells.n_cells, chunk_cells), data.batches(chunk_cells), strict=True):
                out = self.module.reconstruct(b, sample=sample, generator=gen).cpu().numpy()
                if not self.counts_model:
                    part = cells.counts[start : start + len(out)]
                    out = transforms.to_proportions(out, self.spec["transform"], part, gene_totals=gene_totals)
                yield start, out if library_size == 1 else out * library_size

    def posterior_predictive(self, cells, *, chunk_cells: int = 2048, seed: int = 0):
        """One replicate of every cell (z ~ q(z | x), counts from the likelihood; see the module's
        ``posterior_predictive``), ``chunk_cells`` cells at a time: yields (first row, replicate counts as a
        cells x genes array) in cell order. Count models only."""
        cells = self.prepare(cells)
        if not self.counts_model:
            raise ValueError(f"model '{self.name}' models transformed values, not counts: no replicates to draw")
        data, gen = self._data(cells), self._generator(seed)
        torch.manual_seed(int(seed))
        with torch.no_grad():
            for start, b in zip(range(0, cells.n_cells, chunk_cells), data.batches(chunk_cells), strict=True):
                yield start, self.module.posterior_predictive(b, generator=gen).cpu().numpy()

    def latent(self, cells, *, batch_size: int = 1024) -> np.ndarray:
        """Posterior means of z (cells x n_latent)."""
        data = self._data(self.prepare(cells))
        with torch.no_grad():
            return np.concatenate([self.module.latent(b).cpu().numpy() for b in data.batches(batch_size)])

    def _wide(self):
        """The module in float64, for per-cell likelihood sums."""
        if self._module64 is None:
            self._module64 = copy.deepcopy(self.module).double().eval()
        return self._module64

    def heldout_likelihood(self, cells, *, n_samples: int = 100, seed: int = 0, batch_size: int = 256) -> pd.DataFrame:
        """Per cell (nats; one row per cell, in order): ``recon_nll``, the reconstruction NLL at the posterior
        mean (as in training's validation); ``elbo``, a Monte Carlo ELBO; ``marginal_ll``, the importance-sampled
        log p(x) from ``n_samples`` draws of q. Computed in float64.

        Count models only: a Gaussian model's densities are over transformed values, not counts, so its rows are
        NaN rather than numbers that look comparable."""
        cells = self.prepare(cells)
        if not self.counts_model:
            return pd.DataFrame({"recon_nll": np.full(cells.n_cells, np.nan), "elbo": np.nan, "marginal_ll": np.nan})
        data, gen, module = self._data(cells), self._generator(seed), self._wide()
        parts = []
        with torch.no_grad():
            for b in data.batches(batch_size, dtype=torch.float64):
                log_w = module.log_importance_weights(b, n_samples, generator=gen)
                parts.append(torch.stack([module(b)["recon"], log_w.mean(0),
                                          torch.logsumexp(log_w, 0) - np.log(n_samples)], 1).cpu().numpy())  # fmt: skip
        return pd.DataFrame(np.concatenate(parts), columns=["recon_nll", "elbo", "marginal_ll"])

    def zero_probability(self, cells, *, batch_size: int = 1024) -> np.ndarray:
        """Per gene, the model's mean probability of a zero count over the cells (NaN for a Gaussian model)."""
        cells = self.prepare(cells)
        if not self.counts_model:
            return np.full(cells.counts.shape[1], np.nan)
        data = self._data(cells)
        total = torch.zeros(cells.counts.shape[1], dtype=torch.float64, device=self.device)
        with torch.no_grad():
            for b in data.batches(batch_size):
                total += self.module.zero_probability(b).double().sum(0)
        return (total / max(cells.n_cells, 1)).cpu().numpy()

    def _label_vocab(self, label_key: str) -> list[str]:
        if label_key not in self.categories:
            raise ValueError(f"model '{self.name}' is not conditioned on '{label_key}' "
                             f"(conditions: {list(self.categories)})")  # fmt: skip
        return self.categories[label_key]

    def generate(self, obs: pd.DataFrame, label_key: str, n_per_label: int, *, seed: int = 0, mode: str = "prior",
                 cells=None, batch_size: int = 1024) -> tuple[sp.csr_matrix, np.ndarray]:  # fmt: skip
        """``n_per_label`` synthetic cells (counts, labels) for each ``label_key`` category the model was trained on.

        For each label, ``n_per_label`` training cells of that label are drawn with replacement from ``obs``; each
        synthetic cell takes the model's other conditions (donor, batch, dataset, ...) from its drawn cell, so it
        has a combination that occurred there. ``mode`` (``GENERATION_MODES``) says where z comes from:

        - ``prior``: p(z);
        - ``aggregate``: a Gaussian fitted to the label's aggregate posterior: the mean of its training cells'
          posterior means, and their covariance plus the mean posterior variance (the moments of the mixture of
          the cells' q(z | x));
        - ``posterior``: q(z | x) of the drawn cell itself (the posterior predictive).

        With ``cells`` (the training cells of ``obs``, prepared) each synthetic cell has the library size of its
        drawn cell (or, in ``posterior`` mode with a latent library, a draw of that cell's q(log l | x)), so
        libraries follow each label and condition as the training cells show them; without ``cells`` (``prior``
        only) the library comes from the model's log-normal prior for every label. Counts are drawn from the
        model's likelihood."""
        if mode not in GENERATION_MODES:
            raise ValueError(f"generation mode {mode!r} is not one of {GENERATION_MODES}")
        if cells is None and mode != "prior":
            raise ValueError(f"generation mode {mode!r} needs the training cells (cells=...)")
        vocab = self._label_vocab(label_key)
        torch.manual_seed(int(seed))
        gen, rng = self._generator(seed), np.random.default_rng(seed)
        labels = obs[label_key].astype(str).to_numpy()
        if cells is not None:
            cells = self.prepare(cells)
            if cells.n_cells != len(obs):
                raise ValueError(f"cells has {cells.n_cells} cells but obs {len(obs)}: pass the cells of obs")
            library = np.asarray(cells.counts.sum(axis=1), dtype=np.float64).ravel()
        blocks, out_labels = [], []
        for label in vocab:
            members = np.flatnonzero(labels == label)
            rows = np.sort(rng.choice(members, size=n_per_label, replace=True))
            if mode == "posterior":
                picked = self._data(Cells(cells.counts[rows], obs.iloc[rows], 1.0, f"{label} cells"))
                with torch.no_grad():
                    parts = [self.module.posterior_predictive(b, generator=gen) for b in picked.batches(batch_size)]
                blocks.append(sp.csr_matrix(torch.cat(parts).cpu().numpy()))
            else:
                codes = torch.as_tensor(encode(obs.iloc[rows], self.categories), device=self.device)
                z = None
                if mode == "aggregate":
                    z = self._aggregate_draws(Cells(cells.counts[members], obs.iloc[members], 1.0, label),
                                              n_per_label, rng, batch_size)  # fmt: skip
                lib = None if cells is None or not self.counts_model else library[rows]
                blocks.append(sp.csr_matrix(self.module.generate(n_per_label, codes=codes, library=lib,
                                                                 z=z).cpu().numpy()))  # fmt: skip
            out_labels += [label] * n_per_label
        return sp.vstack(blocks).tocsr(), np.asarray(out_labels)

    def _aggregate_draws(self, cells: Cells, n: int, rng: np.random.Generator, batch_size: int) -> np.ndarray:
        """``n`` draws of z from a Gaussian with the moments of the cells' aggregate posterior."""
        means, variances = [], []
        with torch.no_grad():
            for b in self._data(cells).batches(batch_size):
                m, v = self.module.posterior(b)
                means.append(m.double().cpu().numpy())
                variances.append(v.double().cpu().numpy())
        mean, var = np.concatenate(means), np.concatenate(variances)
        cov = (np.cov(mean, rowvar=False, bias=True) if len(mean) > 1 else np.zeros((mean.shape[1],) * 2)) + np.diag(
            var.mean(0))  # fmt: skip
        return rng.multivariate_normal(mean.mean(0), cov, size=n).astype(np.float32)

    def loadings(self) -> pd.DataFrame:
        """Gene x latent weights (columns z0, z1, ...) of a linear decoder (LDVAE)."""
        if not self.linear:
            raise ValueError(f"model '{self.name}' ({self.architecture}) has no linear decoder, so no gene loadings")
        weights = self.module.loadings().cpu().numpy()
        return pd.DataFrame(weights, index=self.genes, columns=[f"z{i}" for i in range(weights.shape[1])])

    def save(self, path) -> None:
        save_checkpoint(path, self.module, architecture=self.architecture, model_kwargs=self.model_kwargs,
                        genes=self.genes, meta=self.meta)  # fmt: skip


def latent_adata(z: np.ndarray, obs: pd.DataFrame, *, model: TrainedModel, umap: np.ndarray | None = None):
    """The latent of some cells as an AnnData: no X (0 genes), ``obsm["X_scmix"]`` the posterior means,
    ``obsm["X_umap"]`` when given, obs the cells' labels, ``uns["scmix"]`` which model made it."""
    import anndata as ad

    out = ad.AnnData(np.zeros((z.shape[0], 0), dtype=np.float32), obs=obs)
    out.obsm["X_scmix"] = np.asarray(z, dtype=np.float32)
    if umap is not None:
        out.obsm["X_umap"] = np.asarray(umap, dtype=np.float32)
    out.uns["scmix"] = {"model": model.name, "architecture": model.architecture, "mix": str(model.meta.get("mix")),
                        "seed": int(model.meta.get("seed", 0))}  # fmt: skip
    return out


def loadings_adata(model: TrainedModel):
    """A linear decoder's loadings as an AnnData with no cells: var the model's genes, ``varm["loadings"]``."""
    import anndata as ad

    table = model.loadings()
    out = ad.AnnData(np.zeros((0, len(table)), dtype=np.float32), var=pd.DataFrame(index=table.index))
    out.var["gene_key"] = list(model.gene_keys)
    out.varm["loadings"] = table.to_numpy(dtype=np.float32)
    out.uns["scmix"] = {"model": model.name, "architecture": model.architecture, "latent": list(table.columns)}
    return out
