"""A study's config: the checks its JSON schema cannot express, schema errors as one short message, and what
the config implies (every model, the eval sets, the models judged by synthetic cells, the labels each dataset
must carry).

Standard library only (jsonschema's error objects are only read): the workflow imports this module while it
builds the DAG, and every message here names the config key that is wrong and what to change.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Mapping

from scmix.data import composition
from scmix.models import modelspec
from scmix.names import NAME, NAME_RULE


class ConfigError(ValueError):
    """A config value that cannot work; the message starts with ``config: <key>``."""


def _bad_name(where: str, name) -> str:
    return (f"config: {where} has the name {name!r}, which is not allowed: a name is {NAME_RULE}, since it becomes "
            "a folder name")  # fmt: skip


def check_name(name: str, where: str) -> str:
    """``name`` if it is a valid name (see scmix.names), else a ConfigError naming the key."""
    if not isinstance(name, str) or not NAME.match(name):
        raise ConfigError(_bad_name(where, name))
    return name


def key_path(path) -> str:
    return ".".join(str(p) for p in path)


def schema_error_message(err) -> str:
    """One message for a jsonschema ValidationError: the key path first, then the decisive reason (the deepest
    error of an anyOf/oneOf), never the schema or the whole instance."""
    while err.context:  # anyOf/oneOf/allOf: the error of the branch that got deepest into the config
        err = max(err.context, key=lambda e: (len(e.absolute_path), -len(e.absolute_schema_path)))
    where = key_path(err.absolute_path) or "(top level)"
    if "propertyNames" in err.absolute_schema_path:
        return _bad_name(where, err.instance)
    message = err.message
    if len(message) > 300:  # e.g. "... is not valid under any of the given schemas" with a long instance
        message = message[:300] + " ..."
    return f"config: {where}: {message}"


def model_specs(config: Mapping) -> dict[str, dict]:
    """Every model of the study, defaults filled in (the models section and each sweep's grid)."""
    return modelspec.expand(config["models"], config.get("sweeps"))


def mixes(config: Mapping) -> dict[str, dict]:
    """Every mix of the study by name: the mixes section, then the points of mix_sweeps (scmix.data.composition)."""
    try:
        return composition.all_mixes(config)
    except composition.SweepError as err:
        raise ConfigError(str(err)) from None


def eval_sets(config: Mapping) -> list[str]:
    """The datasets whose held-out part is evaluated (default: all)."""
    return list((config.get("evaluation") or {}).get("eval_sets") or config["datasets"])


def synthetic_settings(config: Mapping) -> dict:
    return dict((config.get("evaluation") or {}).get("synthetic") or {})


def synthetic_models(config: Mapping, specs: Mapping[str, Mapping]) -> list[str]:
    """The models whose synthetic cells are judged: conditioned on the label, with a count likelihood."""
    key = synthetic_settings(config)["label_key"]
    return [m for m, s in specs.items() if key in (s.get("conditions") or []) and modelspec.is_count_model(s)]


def synthetic_eval_sets(config: Mapping) -> list[str]:
    return list(synthetic_settings(config).get("eval_sets") or eval_sets(config))


def check_config(config: Mapping, specs: Mapping[str, Mapping]) -> None:
    """Names and cross-references; raises ConfigError naming the key that is wrong."""
    for section in ("datasets", "mixes", "models", "sweeps", "mix_sweeps"):
        for name in config.get(section) or {}:
            check_name(name, section)
    for name in specs:
        check_name(name, "models (as expanded from sweeps)")
    scvi_models = [m for m, spec in specs.items() if spec["architecture"] in modelspec.SCVI_ARCHITECTURES]
    if scvi_models and importlib.util.find_spec("scvi") is None:
        arch = specs[scvi_models[0]]["architecture"]
        raise ConfigError(f"config: models.{scvi_models[0]} has architecture {arch}, which needs scvi-tools (not "
                          f"installed); install it with: pip install -e '.[scvi]' (or: make setup)")  # fmt: skip
    datasets = config["datasets"]
    for sweep, spec in (config.get("mix_sweeps") or {}).items():
        named = [("base", spec["base"])] if "base" in spec else []
        named += [("added", d) for d in spec.get("added", [])] + [("datasets", d) for d in spec.get("datasets", {})]
        for key, d in named:
            if d not in datasets:
                raise ConfigError(f"config: mix_sweeps.{sweep}.{key} names '{d}', which is not under datasets")
    all_mixes = mixes(config)
    if not all_mixes:
        raise ConfigError("config: mixes: the study has no mix; add one under mixes or a sweep under mix_sweeps")
    for mix in all_mixes:
        check_name(mix, "mixes (as expanded from mix_sweeps)")
    for mix, recipe in (config.get("mixes") or {}).items():
        for d in recipe["datasets"]:
            if d not in datasets:
                raise ConfigError(f"config: mixes.{mix}.datasets names '{d}', which is not under datasets")
        uses_fractions = any(not isinstance(v, Mapping) or "fraction" in v for v in recipe["datasets"].values())
        if uses_fractions and "total_cells" not in recipe:
            raise ConfigError(f"config: mixes.{mix} gives fractions and so needs total_cells")
    blocks = [("qc", config.get("qc") or {})] + [(f"datasets.{d}.qc", s.get("qc") or {}) for d, s in datasets.items()]
    for where, qc in blocks:
        for pattern in qc.get("drop_features") or ():
            try:
                re.compile(pattern)
            except re.error as err:
                message = f"config: {where}.drop_features: {pattern!r} is not a regular expression ({err})"
                raise ConfigError(message) from None
    for d, spec in datasets.items():
        if "dataset" in (spec.get("obs_keys") or {}):
            raise ConfigError(f"config: datasets.{d}.obs_keys maps 'dataset', which the workflow sets to the "
                              "dataset's name; map the column to another key (e.g. batch)")  # fmt: skip
    for d in eval_sets(config):
        if d not in datasets:
            raise ConfigError(f"config: evaluation.eval_sets names '{d}', which is not under datasets")
    for d in synthetic_eval_sets(config):
        if d not in eval_sets(config):
            raise ConfigError(f"config: evaluation.synthetic.eval_sets names '{d}', which is not an eval set")


def required_obs_columns(config: Mapping) -> dict[str, dict[str, str]]:
    """Per dataset, the obs columns some model or evaluation reads, each with the reason.

    A model's categorical covariates (its conditions and a gene-batch dispersion key) are needed in every dataset
    of every mix it trains on; the synthetic-data label in each synthetic eval set. ``dataset`` is left out: the
    workflow adds it to every cell."""
    specs = model_specs(config)
    need: dict[str, dict[str, str]] = {d: {} for d in config["datasets"]}
    for model, spec in specs.items():
        for column in modelspec.covariates(spec):
            if column == "dataset":
                continue
            for mix, recipe in mixes(config).items():
                for d in recipe["datasets"]:
                    need[d].setdefault(column, f"model '{model}' reads obs column '{column}' and trains on mix "
                                               f"'{mix}', which draws from this dataset")  # fmt: skip
    key = synthetic_settings(config)["label_key"]
    judged = synthetic_models(config, specs)
    if judged and key != "dataset":
        for d in synthetic_eval_sets(config):
            need[d].setdefault(key, f"the synthetic-data utility of model '{judged[0]}' compares with this eval "
                                    f"set's '{key}' labels (evaluation.synthetic.label_key)")  # fmt: skip
    return need


def check_obs_columns(dataset: str, columns, needed: Mapping[str, str]) -> None:
    """Fail, naming the first missing column and who needs it, if ``columns`` lack one of ``needed``."""
    from scmix.errors import ScmixInputError

    for column, reason in needed.items():
        if column not in columns:
            raise ScmixInputError(f"has no obs column '{column}' (it has {sorted(map(str, columns))}), but {reason}; "
                                  "add that label to the dataset (e.g. a labels file) or change the model or mix",
                                  dataset=dataset)  # fmt: skip
