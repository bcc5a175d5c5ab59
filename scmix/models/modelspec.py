"""Model specs from config: defaults, cross-key checks, sweep expansion and the model's constructor args.

The JSON schema types each key; what it cannot say (a Gaussian model needs an input transform, a cVAE
needs conditions, a sweep's grid names one model per point) is checked here, with the key that is wrong.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

# The vocabulary of model specs. This module imports nothing heavy (no torch, no anndata): the workflow
# loads it while building the DAG.
ARCHITECTURES = ("vae", "ldvae", "cvae", "gmvae")
# scvi-tools' models (scmix.models.scvi_models), an optional extra; their keys are scvi-tools' own (SCVI_DEFAULTS)
SCVI_ARCHITECTURES = ("scvi", "scvi_linear")
LINEAR_ARCHITECTURES = ("ldvae", "scvi_linear")
LIKELIHOODS = ("nb", "zinb", "poisson", "gaussian")
COUNT_LIKELIHOODS = ("nb", "zinb", "poisson")
TRANSFORMS = ("log1p_cp10k", "size_factor", "pearson_residuals")
DISPERSIONS = ("gene", "gene-batch")
LIBRARIES = ("observed", "latent")
NORMS = ("batch", "layer", "none")
INJECTS = ("encoder", "decoder", "both")
KL_SCHEDULES = ("linear", "cyclical", "constant")

DEFAULTS = {
    # architecture
    "n_latent": 10,
    "hidden": [128, 128],
    "decoder_hidden": None,
    "likelihood": "nb",
    "transform": None,
    "dispersion": "gene",
    "dispersion_key": "batch",
    "library": "observed",
    "dropout": 0.1,
    "norm": "batch",
    "conditions": [],
    "condition_dim": 8,
    "inject": "both",
    "condition_dropout": None,  # 0.1 when the model has conditions, else 0
    "n_components": 10,
    # training
    "epochs": 50,
    "batch_size": 128,
    "lr": 5e-3,
    "weight_decay": 0.0,
    "kl_schedule": "linear",
    "kl_warmup_epochs": 10,
    "kl_cycle_epochs": 10,
    "kl_cycle_ramp": 0.5,
    "val_fraction": 0.1,
    "patience": 15,
    "device": "auto",
    "cuda_graphs": True,
    # scheduling
    "threads": 2,
    "gpu": 1,
    "seeds_together": False,
}

# scvi-tools' defaults (scvi.model.SCVI / LinearSCVI, and their train()), except where noted
SCVI_DEFAULTS = {
    "n_latent": 10,
    "n_layers": 1,
    "n_hidden": 128,
    "dropout_rate": 0.1,
    "gene_likelihood": "nb",
    "dispersion": "gene",
    "use_observed_lib_size": None,  # None: scvi-tools' default, True for scvi and False (learned) for scvi_linear
    "batch_key": None,  # an obs column of batches (scvi-tools' batch covariate)
    "max_epochs": None,  # None: scvi-tools' own rule, min(round(20000 / n_cells * 400), 400)
    "lr": 1e-3,
    "early_stopping": False,
    "batch_size": 128,
    "train_size": 0.9,
    "threads": 2,
    "gpu": 1,
    "device": "auto",
    "seeds_together": False,  # scmix's models only: true is refused (resolve_scvi)
}
SCVI_OBSERVED_LIB_SIZE = {"scvi": True, "scvi_linear": False}

# keys that say where and how a model is trained, not what is trained: they are left out of what reruns training.
# seeds_together: every seed of the model on a mix in one job (rule train_seeds), each seed's model as its own job's
SCHEDULING_KEYS = ("threads", "gpu", "device", "seeds_together")

# keys that go to the torch module (the rest drive the trainer or the scheduler)
MODULE_KEYS = (
    "n_latent", "hidden", "decoder_hidden", "likelihood", "dispersion", "library", "dropout", "norm",
    "conditions", "condition_dim", "inject", "condition_dropout", "n_components",
)  # fmt: skip


def resolve_scvi(name: str, spec: Mapping) -> dict:
    """An scvi-tools model's full spec: config values over ``SCVI_DEFAULTS``, checked across keys."""
    out = {**copy.deepcopy(SCVI_DEFAULTS), **copy.deepcopy(dict(spec))}
    if out["seeds_together"]:
        raise ValueError(f"config: models.{name}: seeds_together applies to scmix's own architectures "
                         f"({', '.join(ARCHITECTURES)}); scvi-tools' {out['architecture']} trains one seed per job: "
                         "remove seeds_together or set it to false")  # fmt: skip
    if out["use_observed_lib_size"] is None:
        out["use_observed_lib_size"] = SCVI_OBSERVED_LIB_SIZE[out["architecture"]]
    if out["dispersion"] == "gene-batch" and not out["batch_key"]:
        raise ValueError(f"config: models.{name}: dispersion gene-batch needs batch_key (an obs column of batches)")
    # scmix's names for what the rest of the workflow reads of any model
    out["likelihood"], out["transform"], out["conditions"] = out["gene_likelihood"], None, []
    return out


def resolve(name: str, spec: Mapping) -> dict:
    """A model's full spec: config values over the defaults, checked across keys."""
    if spec.get("architecture") in SCVI_ARCHITECTURES:
        return resolve_scvi(name, spec)
    out = {**copy.deepcopy(DEFAULTS), **copy.deepcopy(dict(spec))}
    where = f"config: models.{name}"
    arch, lik = out["architecture"], out["likelihood"]
    if lik == "gaussian":
        if out["transform"] not in TRANSFORMS:
            raise ValueError(f"{where}: a gaussian likelihood needs transform, one of {list(TRANSFORMS)}")
        if out["library"] != "observed" or out["dispersion"] != "gene":
            raise ValueError(f"{where}: the gaussian baseline has no library or dispersion settings")
    elif out["transform"] is not None:
        raise ValueError(f"{where}: transform '{out['transform']}' applies to the gaussian likelihood only; "
                         f"{lik} models raw counts")  # fmt: skip
    if arch == "cvae" and not out["conditions"]:
        raise ValueError(f"{where}: architecture cvae needs conditions (e.g. [cell_type])")
    if out["condition_dropout"] is None:
        out["condition_dropout"] = 0.1 if out["conditions"] else 0.0
    if out["dispersion"] == "gene-batch" and lik not in ("nb", "zinb"):
        raise ValueError(f"{where}: dispersion gene-batch applies to nb and zinb only")
    return out


def training_spec(spec: Mapping) -> dict:
    """A model's spec without its scheduling keys: what a trained model depends on."""
    return {k: copy.deepcopy(v) for k, v in spec.items() if k not in SCHEDULING_KEYS}


def covariates(spec: Mapping) -> list[str]:
    """The obs columns a model reads as categories: its conditions, then the dispersion key if any (an scvi-tools
    model: its batch key)."""
    if spec.get("architecture") in SCVI_ARCHITECTURES:
        return [spec["batch_key"]] if spec.get("batch_key") else []
    names = list(spec.get("conditions") or [])
    if spec.get("dispersion") == "gene-batch" and spec["dispersion_key"] not in names:
        names.append(spec["dispersion_key"])
    return names


def module_kwargs(spec: Mapping, n_genes: int, categories: Mapping[str, list]) -> dict:
    """Constructor arguments of ``scmix.models.modules.VAE`` (recorded in the checkpoint)."""
    kwargs = {k: copy.deepcopy(spec[k]) for k in MODULE_KEYS}
    kwargs["n_genes"] = int(n_genes)
    kwargs["covariates"] = {c: len(categories[c]) for c in covariates(spec)}
    kwargs["dispersion_key"] = spec["dispersion_key"] if spec["dispersion"] == "gene-batch" else None
    return kwargs


def sweep_name(sweep: str, network: Mapping, likelihood: str, transform: str | None) -> str:
    hidden = "-".join(str(h) for h in network["hidden"])
    name = f"{sweep}_{hidden}_z{network['n_latent']}_{likelihood}"
    return f"{name}-{transform}" if transform else name


def expand(models: Mapping, sweeps: Mapping | None) -> dict[str, dict]:
    """Every model of the study: the ``models`` section plus one per point of each sweep's grid
    (networks x likelihoods, and x transforms for the Gaussian likelihood), all resolved."""
    out = {name: resolve(name, spec) for name, spec in models.items()}
    for sweep, grid in (sweeps or {}).items():
        # the schema fills in the grid's defaults (architecture, transforms)
        settings = {"architecture": grid["architecture"], **grid.get("settings", {})}
        for network in grid["networks"]:
            for lik in grid["likelihoods"]:
                transforms = grid["transforms"] if lik == "gaussian" else [None]
                for transform in transforms:
                    name = sweep_name(sweep, network, lik, transform)
                    if name in out:
                        raise ValueError(f"config: sweeps.{sweep} makes model '{name}', which already exists")
                    spec = {**settings, "hidden": list(network["hidden"]), "n_latent": network["n_latent"],
                            "likelihood": lik, "transform": transform}  # fmt: skip
                    out[name] = resolve(name, spec)
    return out


def is_count_model(spec: Mapping) -> bool:
    return spec["likelihood"] in COUNT_LIKELIHOODS
