"""Every rule declares a conda env, and each env pins versions of everything its rules' scripts import —
directly or through the scmix modules they use (conda cannot run here, so this is checked statically)."""

import re
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from scmix import deps

REPO = Path(__file__).resolve().parents[2]

# import name -> the names a conda/pip package providing it may have
PROVIDERS = {
    "sklearn": {"scikit-learn"},
    "skmisc": {"scikit-misc"},
    "yaml": {"pyyaml"},
    "xgboost": {"py-xgboost-cpu", "py-xgboost", "xgboost", "xgboost-cpu"},
    "umap": {"umap-learn"},
    "GEOparse": {"geoparse"},
    "scvi": {"scvi-tools"},
    "cellxgene_census": {"cellxgene-census"},
    "tiledbsoma": {"tiledbsoma", "tiledbsoma-py"},
}


# rules whose env is common.smk's model_env: the torch env, or for scvi-tools' models the scvi env
MODEL_ENVS = ("../envs/torch.yaml", "../envs/scvi.yaml")
# what only scvi-tools' models import (scmix.models.scvi_models, loaded when such a model is trained or loaded)
SCVI_ONLY = {"scvi", "lightning"}
# what only a Census query imports (scmix.data.sources.census, reached from parse.py through scmix.data.fetch); the
# parse of a census dataset runs in the data env, which has them
CENSUS_ONLY = {"cellxgene_census", "tiledbsoma"}
# rule parse's env is common.smk's parse_env: the data env, or for R data objects (source rdata) the rdata env
PARSE_ENVS = ("../envs/data.yaml", "../envs/rdata.yaml")
FUNCTION_ENVS = {"model_env": MODEL_ENVS, "parse_env": PARSE_ENVS}


def rules() -> dict[str, dict]:
    """rule name -> {file, conda (a list of env paths), script} from rules/*.smk."""
    out = {}
    for smk in sorted((REPO / "rules").glob("*.smk")):
        blocks = re.split(r"^rule (\w+):\n", smk.read_text(), flags=re.M)
        for name, body in zip(blocks[1::2], blocks[2::2], strict=True):
            body = re.split(r"^\S", body, maxsplit=1, flags=re.M)[0]  # up to the next top-level statement
            conda = re.search(r"^\s+conda:\s*\n\s+(\"[^\"]+\"|model_env|parse_env)$", body, flags=re.M)
            envs = None if not conda else list(FUNCTION_ENVS.get(conda[1], [conda[1].strip('"')]))
            script = re.search(r"^\s+script:\s*\n\s+\"([^\"]+)\"", body, flags=re.M)
            out[name] = {"file": smk.name, "conda": envs, "script": script and script[1]}
    return out


def third_party_imports(script: Path) -> set[str]:
    """Top-level third-party packages a script needs, following the scmix modules it imports (the workflow's own
    walk, which also makes each rule depend on those modules)."""
    return deps.third_party_imports(script, REPO)


def env_packages(path: Path) -> dict[str, str | None]:
    """Package name (lower case) -> pinned version (None when unpinned), conda and pip entries together."""
    out = {}
    for dep in yaml.safe_load(path.read_text())["dependencies"]:
        items = dep["pip"] if isinstance(dep, dict) else [dep]
        for item in items:
            m = re.match(r"^([A-Za-z0-9_.\-]+)\s*(?:==?\s*([\w.*]+))?", str(item))
            out[m[1].lower().replace("_", "-")] = m[2]
    return out


RULES = rules()


def test_every_rule_with_a_script_has_a_conda_env_that_exists():
    assert len(RULES) >= 15
    for name, r in RULES.items():
        if name == "all":
            continue
        assert r["conda"], f"rule {name} ({r['file']}) has no conda: directive"
        for env in r["conda"]:
            assert (REPO / "rules" / env).resolve().is_file(), f"rule {name}: {env} does not exist"


@pytest.mark.parametrize("env", sorted(p.name for p in (REPO / "envs").glob("*.yaml")))
def test_every_env_pins_every_package(env):
    packages = env_packages(REPO / "envs" / env)
    unpinned = sorted(p for p, v in packages.items() if v is None and p != "pip")
    assert not unpinned, f"envs/{env} leaves unpinned: {unpinned}"


@pytest.mark.parametrize("name", sorted(n for n, r in RULES.items() if r["script"] and r["script"].endswith(".py")))
def test_env_provides_what_the_rule_script_imports(name):
    r = RULES[name]
    script = (REPO / "rules" / r["script"]).resolve()
    for env in r["conda"]:
        packages = env_packages((REPO / "rules" / env).resolve())
        needed = third_party_imports(script)
        if env != "../envs/scvi.yaml":
            needed -= SCVI_ONLY
        if env == "../envs/rdata.yaml":  # the parse of an rdata dataset never queries the Census
            needed -= CENSUS_ONLY
        missing = []
        for module in sorted(needed):
            providers = PROVIDERS.get(module, {module.lower().replace("_", "-")})
            if not providers & set(packages):
                missing.append(module)
        assert not missing, f"rule {name}: {env} lacks {missing}, which {r['script']} needs"


def test_each_parse_env_provides_what_its_source_modules_import():
    """parse.py loads a dataset's source module by name (scmix.data.sources.registry), which the scan of the script
    cannot follow: each source module's imports must be in the env parse_env gives its datasets, rdata's in
    envs/rdata.yaml (rpy2 with R) and every other one's in envs/data.yaml."""
    from scmix.data.sources.registry import SOURCES

    assert "rdata" in SOURCES
    for source, module in sorted(SOURCES.items()):
        env = PARSE_ENVS[1] if source == "rdata" else PARSE_ENVS[0]
        packages = env_packages((REPO / "rules" / env).resolve())
        needed = third_party_imports(REPO / "scmix" / "data" / "sources" / f"{module}.py")
        needed |= third_party_imports(REPO / "scripts" / "parse.py")
        if source != "census":
            needed -= CENSUS_ONLY
        missing = sorted(m for m in needed if not PROVIDERS.get(m, {m.lower().replace("_", "-")}) & set(packages))
        assert not missing, f"source {source}: {env} lacks {missing}, which scmix.data.sources.{module} needs"
    assert "rpy2" not in env_packages(REPO / "envs" / "data.yaml")


def test_the_rdata_env_pins_what_it_shares_with_the_data_env_alike():
    data, rdata = env_packages(REPO / "envs" / "data.yaml"), env_packages(REPO / "envs" / "rdata.yaml")
    shared = set(data) & set(rdata)
    assert {"python", "numpy", "anndata"} <= shared
    assert {p: rdata[p] for p in shared} == {p: data[p] for p in shared}
    extra = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["rdata"]
    pins = dict(item.split("==") for item in extra)  # the rdata extra that make setup installs where R is
    assert {p: rdata[p] for p in rdata if p.startswith("rpy2")} == pins


def test_the_import_scan_sees_through_the_package():
    """The scan itself: scripts/train.py reaches torch through scmix.models and scanpy through scmix.models.transforms,
    and no plotting library (rule plot_loss draws the curves)."""
    needed = third_party_imports(REPO / "scripts" / "train.py")
    assert {"torch", "numpy", "pandas", "scanpy"} <= needed and "matplotlib" not in needed
    assert not needed & {"os", "sys", "scmix", "logging"}


# What a rule's Python sees under --sdm conda: Snakemake runs a copy of the script from .snakemake/scripts
# in the env's Python, drops PYTHONPATH, and appends only the script's own folder (scripts/) and its own
# search path to sys.path. scmix is not installed in the envs; it is reached through scripts/scmix, a
# symlink to the package. Here the venv's editable install is hidden to stand in for an env without it.
CONDA_JOB = """
import sys
sys.meta_path = [f for f in sys.meta_path if "editable" not in getattr(f, "__name__", type(f).__name__).lower()]
sys.path = [p for p in sys.path if p not in ("", {repo!r})]
{extend}
import importlib
for name in {modules!r}:
    importlib.import_module(name)
import scmix
print(scmix.__file__)
"""


def conda_job_imports(modules, search_path):
    import subprocess

    extend = f"sys.path.extend({[str(p) for p in search_path]!r})" if search_path else ""
    code = CONDA_JOB.format(repo=str(REPO), extend=extend, modules=sorted(modules))
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/")


def test_the_package_is_reachable_from_every_rule_script_as_under_sdm_conda():
    """One Python for all scripts (they share scripts/ as their folder): every scmix module any of them imports."""
    scripts = {
        (REPO / "rules" / r["script"]).resolve() for r in RULES.values() if r["script"] and r["script"].endswith(".py")
    }
    assert {s.parent for s in scripts} == {REPO / "scripts"}
    modules = set()
    for script in scripts:
        mine = {m for m in deps.imported_modules(script) if m.split(".")[0] == "scmix" and deps.module_file(m, REPO)}
        assert mine, f"{script.name} imports nothing from scmix"
        modules |= mine
    res = conda_job_imports(modules, [REPO / "scripts"])
    assert res.returncode == 0, res.stderr[-2000:]
    assert Path(res.stdout.strip()).resolve() == (REPO / "scmix" / "__init__.py").resolve()


def test_without_the_scripts_folder_on_the_path_the_package_is_not_found():
    """The control: the stand-in really hides the installed package, so the symlink is what the test sees."""
    res = conda_job_imports({"scmix.io"}, [])
    assert res.returncode != 0 and "No module named 'scmix'" in res.stderr
