# Config validation, the wildcard universe and helpers shared by the rules.

import re
from pathlib import Path

from snakemake.utils import validate

validate(config, Path(workflow.basedir) / "schemas" / "config.schema.yaml")

DATASETS = list(config["datasets"])
MIXES = list(config["mixes"])


def _load_package_file(relpath):
    """Run one dependency-free package file: the DAG is built without importing scmix (or torch)."""
    path = Path(workflow.basedir) / "scmix" / relpath
    namespace = {"__name__": f"scmix_{path.stem}"}
    exec(compile(path.read_text(), str(path), "exec"), namespace)
    return namespace


# every model: the models section plus one per point of each sweep's grid, defaults filled in
MODEL_SPECS = _load_package_file("modelspec.py")["expand"](
    config["models"], config.get("sweeps")
)
MODELS = list(MODEL_SPECS)
LINEAR_MODELS = [m for m, s in MODEL_SPECS.items() if s["architecture"] == "ldvae"]
SEEDS = [int(s) for s in config["seeds"]]
EVAL_SETS = list(config["evaluation"].get("eval_sets") or DATASETS)
# genes.universe "all": every mix is cut to the genes of all datasets' training cells (one gene space)
GENE_UNIVERSE_DATASETS = DATASETS if config["genes"]["universe"] == "all" else []
EVALUATION = config["evaluation"]
SYNTHETIC = EVALUATION["synthetic"]
# the synthetic-data utility is measured for models conditioned on the label, with a count likelihood
SYNTHETIC_MODELS = [
    m
    for m, s in MODEL_SPECS.items()
    if SYNTHETIC["label_key"] in (s.get("conditions") or [])
    and s["likelihood"] != "gaussian"
]
SYNTHETIC_EVAL_SETS = list(SYNTHETIC.get("eval_sets") or EVAL_SETS)
UMAP_SEED = SEEDS[
    0
]  # UMAPs are drawn for one seed; silhouette scores are computed for every seed


def _check_names():
    """Cross-references the JSON schema cannot express, each failing with the key that is wrong."""
    for mix, recipe in config["mixes"].items():
        for d in recipe["datasets"]:
            if d not in config["datasets"]:
                raise ValueError(
                    f"config: mixes.{mix}.datasets names '{d}', which is not under datasets"
                )
        uses_fractions = any(
            not isinstance(v, dict) or "fraction" in v
            for v in recipe["datasets"].values()
        )
        if uses_fractions and "total_cells" not in recipe:
            raise ValueError(
                f"config: mixes.{mix} gives fractions and so needs total_cells"
            )
    for d in EVAL_SETS:
        if d not in config["datasets"]:
            raise ValueError(
                f"config: evaluation.eval_sets names '{d}', which is not under datasets"
            )
    for d in SYNTHETIC_EVAL_SETS:
        if d not in EVAL_SETS:
            raise ValueError(
                f"config: evaluation.synthetic.eval_sets names '{d}', which is not an eval set"
            )


_check_names()


def _alternatives(names):
    return "|".join(re.escape(n) for n in names)


wildcard_constraints:
    dataset=_alternatives(DATASETS),
    eval_set=_alternatives(DATASETS),
    mix=_alternatives(MIXES),
    model=_alternatives(MODELS),
    seed=r"\d+",


LINEAR_MODEL_PATTERN = _alternatives(LINEAR_MODELS) if LINEAR_MODELS else "(?!)"
SYNTHETIC_MODEL_PATTERN = (
    _alternatives(SYNTHETIC_MODELS) if SYNTHETIC_MODELS else "(?!)"
)


def label_map_input(wildcards):
    """The label-mapping file (fine -> coarse labels) as an input of the synthetic rule, when configured."""
    path = SYNTHETIC.get("label_map")
    return {"label_map": path} if path else {}


def package_sources(*modules):
    """Package files a rule's result depends on, as inputs: editing them reruns the rule."""
    root = Path(workflow.basedir) / "scmix"
    files = []
    for m in modules:
        path = root / m
        files += (
            sorted(str(p) for p in path.rglob("*.py")) if path.is_dir() else [str(path)]
        )
    return files


def raw_dir_of(sources, negate=False):
    """The raw folder pattern, constrained to datasets of these source types (or of all others)."""
    names = [
        d
        for d, spec in config["datasets"].items()
        if (spec["source"] in sources) != negate
    ]
    pattern = _alternatives(names) if names else "(?!)"
    return f"resources/raw/{{dataset,{pattern}}}"


def recount3_param(key):
    """One parameter of the recount3 R script for a dataset, as a params function."""
    return lambda wildcards: _recount3_params(wildcards)[key]


def _recount3_params(wildcards):
    spec = config["datasets"][wildcards.dataset]
    f = spec["gene_filter"]
    return {
        "mirror": spec["mirror"],
        "project": spec["project"],
        "organism": spec["organism"],
        "source": spec["data_source"],
        "annotation": spec["annotation"],
        "filter": f["method"],
        "min_count": f["min_count"],
        "min_samples": f["min_samples"],
        "group": f.get("group"),
    }


def gene_list_input():
    """The fixed gene list as an input of the mix rule, when one is configured."""
    path = config["genes"].get("gene_list")
    return {"gene_list": path} if path else {}


def mix_datasets(wildcards):
    return list(config["mixes"][wildcards.mix]["datasets"])


_registry = _load_package_file("sources/registry.py")
SOURCE_MODULES, SOURCE_USES = _registry["SOURCES"], _registry["USES"]


def parse_code(wildcards):
    """The package files one dataset's parse depends on: its source module, what that builds on, I/O."""
    source_module = SOURCE_MODULES[config["datasets"][wildcards.dataset]["source"]]
    modules = [source_module, *SOURCE_USES.get(source_module, [])]
    return package_sources(
        "sources/__init__.py",
        "sources/registry.py",
        "io.py",
        *(f"sources/{m}.py" for m in modules),
    )


def dataset_spec(wildcards):
    return config["datasets"][wildcards.dataset]


def split_params(wildcards):
    """The global split settings with the dataset's overrides (schema defaults filled in)."""
    spec = config["datasets"][wildcards.dataset]
    return {**config["split"], **spec.get("split", {})}


def qc_params(wildcards):
    spec = config["datasets"][wildcards.dataset]
    return {**config["qc"], **spec.get("qc", {})}


def per_job(pattern, models=None, seeds=None, eval_sets=None):
    """Every per-job file of a pattern over the study's models, mixes, seeds (and eval sets)."""
    return expand(
        pattern,
        model=MODELS if models is None else models,
        mix=MIXES,
        seed=SEEDS if seeds is None else seeds,
        eval_set=EVAL_SETS if eval_sets is None else eval_sets,
    )
