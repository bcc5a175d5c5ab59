"""The config schema: a wrong key or type fails at start-up with a message naming the key."""

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

REPO = Path(__file__).resolve().parents[2]
SCHEMA = REPO / "schemas" / "config.schema.yaml"


@pytest.fixture
def config():
    return yaml.safe_load((REPO / "config.yaml").read_text())


def test_shipped_configs_validate_and_get_defaults(config):
    validate(config, str(SCHEMA))
    assert "dropout" not in config["models"]["ldvae"]  # model defaults live in scmix/models/modelspec.py
    assert config["split"]["eval_fraction"] == 0.2
    validate(yaml.safe_load((REPO / "tests/configs/tiny.yaml").read_text()), str(SCHEMA))


@pytest.mark.parametrize(
    "edit, key",
    [
        (lambda c: c.update(seedz=[0]), "seedz"),
        (lambda c: c.update(seeds="0"), "seeds"),
        (lambda c: c["models"]["ldvae"].update(n_latnt=3), "n_latnt"),
        (lambda c: c["models"]["ldvae"].update(epochs="many"), "epochs"),
        (lambda c: c["datasets"]["blood_base"].update(source="ftp"), "source"),
        (lambda c: c["mixes"]["base+blood2"].pop("datasets"), "datasets"),
        (lambda c: c["qc"].update(max_pct_mito=150), "max_pct_mito"),
        (lambda c: c["datasets"].update(bulk={"source": "csv", "url": "file:///x/counts.tsv"}), "counts"),
        (lambda c: c["datasets"].update(pb={"source": "tenx", "url": "ftp://x/y.tar.gz"}), "ftp://"),
        (lambda c: c["datasets"].update(pb={"source": "tenx", "url": "https://x/y", "labls": {}}), "labls"),
        # an scvi-tools model takes scvi-tools' keys, and scmix's models not theirs
        (lambda c: c["models"].update(s={"architecture": "scvi_linear", "hidden": [64]}), "hidden"),
        (lambda c: c["models"].update(s={"architecture": "scvi", "gene_likelihood": "gaussian"}), "gaussian"),
        (lambda c: c["models"]["ldvae"].update(n_layers=2), "n_layers"),
        (lambda c: c["models"]["ldvae"].update(seeds_together="yes"), "seeds_together"),
        # an R data object: its own keys only, and a file to fetch
        (lambda c: c["datasets"].update(r={"source": "rdata", "url": "file:x.rds", "assays": "counts"}), "assays"),
        (lambda c: c["datasets"].update(r={"source": "rdata", "object": "sce"}), "url"),
    ],
)
def test_wrong_key_or_type_names_the_key(config, edit, key):
    bad = copy.deepcopy(config)
    edit(bad)
    with pytest.raises(WorkflowError, match=key):
        validate(bad, str(SCHEMA))


def test_the_readmes_rdata_example_validates(config):
    import re

    block = re.search(r"```yaml\n(  lab_sce:.*?)```", (REPO / "README.md").read_text(), re.S).group(1)
    config["datasets"].update(yaml.safe_load("datasets:\n" + block)["datasets"])
    validate(config, str(SCHEMA))
    keys = {"file": "sce.rda", "object": "sce", "assay": "counts", "obs_object": "meta", "gene_id_column": "ID",
            "gene_symbol_column": "Symbol"}  # fmt: skip
    config["datasets"]["lab_sce"].update(keys)
    validate(config, str(SCHEMA))


def test_snakemake_refuses_to_start_on_a_bad_key_or_an_unknown_dataset(tmp_path, config):
    def dry_run(cfg):
        path = tmp_path / "config.yaml"
        path.write_text(yaml.safe_dump(cfg))
        return subprocess.run(
            [sys.executable, "-m", "snakemake", "-n", "-s", str(REPO / "Snakefile"), "--directory", str(tmp_path),
             "--configfile", str(path)],
            capture_output=True, text=True,
        )  # fmt: skip

    bad = copy.deepcopy(config)
    bad["models"]["ldvae"]["hiden"] = [64]
    res = dry_run(bad)
    assert res.returncode != 0 and "hiden" in res.stderr + res.stdout
    bad = copy.deepcopy(config)
    bad["mixes"]["base+blood2"]["datasets"] = {"blood_bsae": 1.0}
    res = dry_run(bad)
    assert res.returncode != 0 and "mixes.base+blood2.datasets names 'blood_bsae'" in res.stderr + res.stdout
    bad = copy.deepcopy(config)
    bad["mixes"]["base+blood2"].pop("total_cells")
    res = dry_run(bad)
    said = res.stderr + res.stdout
    assert res.returncode != 0 and "mixes.base+blood2 gives fractions and so needs total_cells" in said
    assert not (tmp_path / "results").exists()


def _dry_run_in_repo(*args):
    res = subprocess.run([sys.executable, "-m", "snakemake", "-n", *args], cwd=REPO, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr + res.stdout
    return res.stdout


def test_a_configfile_replaces_the_demo_config_instead_of_merging():
    out = _dry_run_in_repo("--configfile", "tests/configs/tiny.yaml")
    assert "results/raw/blood.h5ad" in out and "blood_base" not in out and "tumour_alone" not in out


def test_seeds_can_be_overridden_on_the_command_line():
    out = _dry_run_in_repo("--config", "seeds=[0,5]")
    assert "results/mixes/base-s0/seed5.h5ad" in out and "seed1.h5ad" not in out


@pytest.mark.parametrize("path", sorted(str(p.relative_to(REPO)) for p in (REPO / "config").glob("*.yaml")))
def test_shipped_configs_dry_run(path):
    out = _dry_run_in_repo("--configfile", path)
    cfg = yaml.safe_load((REPO / path).read_text())
    for url in (d.get("url") for d in cfg["datasets"].values()):
        assert url is None or url.startswith(("https://", "http://"))  # real URLs, not local files
    assert "rule train" in out


@pytest.mark.parametrize("path", sorted(str(p.relative_to(REPO)) for p in (REPO / "config/shared_data").glob("*.yaml")))
def test_shared_data_configs_name_files_beside_the_checkout_and_dry_run(path, shared_data):
    cfg = yaml.safe_load((REPO / path).read_text())
    for url in (d.get("url") for d in cfg["datasets"].values()):
        assert url.startswith("file:../shared/data/") and (REPO / url.removeprefix("file:")).exists()
    out = _dry_run_in_repo("--configfile", path)
    assert "rule train" in out and "rule evaluate" in out
    if any(m.get("conditions") for m in cfg["models"].values()):
        assert "rule synthetic" in out


def test_dataset_overrides_do_not_bring_back_defaults(config):
    config["qc"]["max_pct_mito"] = 10
    config["split"]["method"] = "group"
    config["datasets"]["tumour"]["qc"] = {"min_genes": 100}
    config["datasets"]["tumour"]["split"] = {"holdout_cell_types": ["T"]}
    validate(config, str(SCHEMA))
    assert config["datasets"]["tumour"]["qc"] == {"min_genes": 100}
    assert config["datasets"]["tumour"]["split"] == {"holdout_cell_types": ["T"]}


def test_the_schemas_reconstruction_genes_are_the_packages():
    import yaml

    from scmix.evaluation.metrics import RECONSTRUCTION_GENES

    schema = yaml.safe_load((Path(__file__).resolve().parents[2] / "schemas/config.schema.yaml").read_text())
    entry = schema["properties"]["evaluation"]["properties"]["reconstruction_genes"]
    assert tuple(entry["enum"]) == RECONSTRUCTION_GENES and entry["default"] == RECONSTRUCTION_GENES[0]


def test_the_schemas_architectures_and_scvi_keys_are_the_packages():
    from scmix.models import modelspec

    schema = yaml.safe_load(SCHEMA.read_text())["definitions"]
    assert tuple(schema["model"]["properties"]["architecture"]["enum"]) == (
        modelspec.ARCHITECTURES + modelspec.SCVI_ARCHITECTURES
    )
    assert set(schema["scvi_settings"]["properties"]) == set(modelspec.SCVI_DEFAULTS) | {"architecture"}
    spec = modelspec.resolve("s", {"architecture": "scvi_linear"})
    assert spec["use_observed_lib_size"] is False and spec["likelihood"] == "nb"  # scvi-tools' LinearSCVI default
    assert modelspec.resolve("s", {"architecture": "scvi"})["use_observed_lib_size"] is True
    with pytest.raises(ValueError, match="gene-batch needs batch_key"):
        modelspec.resolve("s", {"architecture": "scvi", "dispersion": "gene-batch"})


def _schema_defaults(node, path=""):
    """Every default the schema states, by dotted key ('*' for any name), nested sections excluded."""
    out = {}
    if isinstance(node, dict):
        for key, entry in (node.get("properties") or {}).items():
            if isinstance(entry, dict) and "default" in entry and not isinstance(entry["default"], dict):
                out[f"{path}{key}"] = entry["default"]
            out.update(_schema_defaults(entry, f"{path}{key}."))
        for key in ("additionalProperties", "items", "then", "else"):
            out.update(_schema_defaults(node.get(key), f"{path}*."))
        for key in ("oneOf", "anyOf", "allOf"):
            for sub in node.get(key) or []:
                out.update(_schema_defaults(sub, path))
    return out


def _plain(value):
    return list(value) if isinstance(value, tuple) else value


# parameter names that mean something else in the package than the schema key of that name
NOT_SETTINGS = {"seed", "device", "genes", "keys", "method"}


def test_every_default_has_one_home():
    """qc, split and model settings: defaults in the package (scmix.settings, scmix.models.modelspec) and none in the
    schema; the trainer's are the model spec's; every other default is the schema's, and a package function
    that offers a default for a setting of that name offers the schema's value."""
    import importlib
    import inspect
    import pkgutil
    from dataclasses import fields

    import scmix
    from scmix import settings
    from scmix.models import modelspec
    from scmix.models.train import TrainConfig

    schema = yaml.safe_load(SCHEMA.read_text())
    definitions = schema["definitions"]
    for definition, defaults in [("qc", settings.QC_DEFAULTS), ("split", settings.SPLIT_DEFAULTS),
                                 ("model_settings", modelspec.DEFAULTS),
                                 ("scvi_settings", modelspec.SCVI_DEFAULTS)]:  # fmt: skip
        props = definitions[definition]["properties"]
        assert set(props) - {"architecture"} == set(defaults), definition
        for key, entry in props.items():
            assert "default" not in entry, f"{definition}.{key}: its default is the package's"
            assert "default" not in entry.get("description", ""), f"{definition}.{key} states a default"
    for f in fields(TrainConfig):
        if f.name in modelspec.DEFAULTS:
            assert f.default == modelspec.DEFAULTS[f.name], f.name
    assert settings.resolve_qc({}) == settings.QC_DEFAULTS and settings.resolve_split(None) == settings.SPLIT_DEFAULTS

    stated = {}
    for key, value in _schema_defaults(schema).items():
        stated.setdefault(key.rsplit(".", 1)[-1], {})[key] = value
    stated.update({k: {f"split.{k}": v} for k, v in settings.SPLIT_DEFAULTS.items()})
    checked = 0
    for info in pkgutil.walk_packages(scmix.__path__, "scmix."):
        if info.name == "scmix.models.scvi_models":
            continue  # scvi-tools' own defaults
        module = importlib.import_module(info.name)
        functions = [f for _, f in inspect.getmembers(module, inspect.isfunction) if f.__module__ == info.name]
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ == info.name:
                functions += [f for _, f in inspect.getmembers(cls, inspect.isfunction)]
        for function in functions:
            for param in inspect.signature(function).parameters.values():
                if param.name in NOT_SETTINGS or param.name not in stated or param.default in (inspect._empty, None):
                    continue
                assert _plain(param.default) in [_plain(v) for v in stated[param.name].values()], (
                    f"{info.name}.{function.__qualname__}({param.name}={param.default!r}) but the schema says "
                    f"{stated[param.name]}"
                )
                checked += 1
    assert checked >= 10  # the scan reaches the package's functions


def test_every_allowed_value_is_the_packages():
    from scmix import settings
    from scmix.models import modelspec
    from scmix.models.trained import GENERATION_MODES

    schema = yaml.safe_load(SCHEMA.read_text())
    model = schema["definitions"]["model_settings"]["properties"]
    sweep = schema["properties"]["sweeps"]["additionalProperties"]["properties"]
    pairs = {
        "architecture": (model["architecture"]["enum"], modelspec.ARCHITECTURES),
        "likelihood": (model["likelihood"]["enum"], modelspec.LIKELIHOODS),
        "transform": (model["transform"]["enum"], modelspec.TRANSFORMS),
        "dispersion": (model["dispersion"]["enum"], modelspec.DISPERSIONS),
        "library": (model["library"]["enum"], modelspec.LIBRARIES),
        "norm": (model["norm"]["enum"], modelspec.NORMS),
        "inject": (model["inject"]["enum"], modelspec.INJECTS),
        "kl_schedule": (model["kl_schedule"]["enum"], modelspec.KL_SCHEDULES),
        "sweeps.architecture": (sweep["architecture"]["enum"], modelspec.ARCHITECTURES),
        "sweeps.likelihoods": (sweep["likelihoods"]["items"]["enum"], modelspec.LIKELIHOODS),
        "sweeps.transforms": (sweep["transforms"]["items"]["enum"], modelspec.TRANSFORMS),
        "qc.mode": (schema["definitions"]["qc"]["properties"]["mode"]["enum"], settings.QC_MODES),
        "split.method": (schema["definitions"]["split"]["properties"]["method"]["enum"], settings.SPLIT_METHODS),
        "synthetic.generation": (
            schema["properties"]["evaluation"]["properties"]["synthetic"]["properties"]["generation"]["enum"],
            GENERATION_MODES,
        ),
    }
    for key, (allowed, package) in pairs.items():
        assert tuple(allowed) == tuple(package), key


def test_an_scvi_model_without_scvi_tools_fails_at_start_up_with_the_install_command(config, monkeypatch):
    import importlib.util

    from scmix import study

    config["models"]["reference"] = {"architecture": "scvi_linear", "n_layers": 2}
    validate(config, str(SCHEMA))
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "scvi" else real(name, *a))
    with pytest.raises(study.ConfigError, match=r"models\.reference .*scvi_linear.*pip install -e '\.\[scvi\]'"):
        study.check_config(config, study.model_specs(config))


def test_the_readmes_own_data_example_runs_on_real_files(shared_data, pbmc3k, tmp_path):
    """The README's "Your own data" config, word for word, with an h5ad made from real PBMC 3k (its labels under
    other column names) and the real Kang 2018 10x folder: it plans the whole study and builds both mixes."""
    import re
    import shutil

    import anndata as ad
    from snakerun import snakemake

    block = re.search(r"```yaml\n(# my_study\.yaml\n.*?)```", (REPO / "README.md").read_text(), re.S).group(1)
    data = tmp_path / "data"
    data.mkdir()
    atlas = ad.AnnData(pbmc3k.X.copy(), obs=pbmc3k.obs[[]].copy(), var=pbmc3k.var.copy())
    atlas.obs["cell_label"] = pbmc3k.obs["cell_type"].to_numpy()
    atlas.obs["donor_id"] = "d1"
    atlas.write_h5ad(data / "atlas.h5ad")
    shutil.copytree(shared_data / "kang2018", data / "filtered_feature_bc_matrix")
    shutil.copy(shared_data / "kang2018" / "cell_metadata.csv", data / "cell_types.csv")
    config = tmp_path / "my_study.yaml"
    config.write_text(block)
    plan = snakemake(tmp_path, "-n", config=config)
    assert plan.returncode == 0, plan.stdout + plan.stderr
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", plan.stdout, re.M))
    assert counts["mix"] == "6" and counts["train"] == "6" and counts["split"] == "2", plan.stdout
    targets = [f"results/mixes/{m}/seed0.h5ad" for m in ("atlas", "atlas+mine")]
    run = snakemake(tmp_path, "--cores", "2", *targets, config=config)
    assert run.returncode == 0, run.stdout + run.stderr
    mix = ad.read_h5ad(tmp_path / targets[1])
    assert mix.n_obs == 1000 and mix.obs["dataset"].value_counts().to_dict() == {"atlas": 500, "mine": 500}
    assert {"Memory CD4 T", "CD14+ Monocytes"} <= set(mix.obs["cell_type"].astype(str))
    assert set(mix.obs.loc[mix.obs["dataset"] == "atlas", "donor"].astype(str)) == {"d1"}
