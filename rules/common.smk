# Config validation, the wildcard universe and helpers shared by the rules.

import os
import re
import sys
from pathlib import Path

from snakemake.utils import validate

# the package's dependency-free modules are imported while the DAG is built (never torch or anndata)
WORKFLOW_ROOT = Path(workflow.current_basedir).parent
if str(WORKFLOW_ROOT) not in sys.path:
    sys.path.insert(0, str(WORKFLOW_ROOT))

from snakemake.exceptions import WorkflowError

from scmix import configfile, deps, settings, study
from scmix.data import composition
from scmix.models import modelspec
from scmix.threads import wait_briefly

# torch's OpenMP threads in every job (inherited from this process) wait briefly instead of spinning
wait_briefly()


def _config_problem():
    """(model specs, None), or (None, one short message naming the key): the schema (defaults filled in), then
    what it cannot express."""
    import jsonschema

    try:
        validate(config, WORKFLOW_ROOT / "schemas" / "config.schema.yaml")
    except WorkflowError as err:
        # snakemake's message holds the whole schema; the jsonschema error it wraps says what is wrong, and where
        if not isinstance(err.__context__, jsonschema.ValidationError):
            raise
        return None, study.schema_error_message(err.__context__)
    try:
        specs = study.model_specs(config)
        study.check_config(config, specs)
    except ValueError as err:  # study.ConfigError, and modelspec's checks across keys
        return None, str(err)
    return specs, None


# a config file that gives a key twice: Snakemake's YAML reader keeps the later value without a word
for _configfile in workflow.configfiles:
    _problem = configfile.duplicate_key_problem(_configfile)
    if _problem:
        raise WorkflowError(_problem)
# every model: the models section plus one per point of each sweep's grid, defaults filled in
MODEL_SPECS, _problem = _config_problem()
# raised at the top level: Snakemake prints the message without a traceback
if _problem:
    raise WorkflowError(_problem)
# a read-only or full results/ stops the run before any job, not after training
if not workflow.dryrun:
    from scmix.rulecall import unwritable_results

    _problem = unwritable_results()
    if _problem:
        raise WorkflowError(_problem)
DATASETS = list(config["datasets"])
# every mix: the mixes section and the points of mix_sweeps (named as scmix.data.composition derives them)
MIX_RECIPES = study.mixes(config)
MIXES = list(MIX_RECIPES)
SWEEP_POINTS = composition.sweep_points(config["mix_sweeps"])
MODELS = list(MODEL_SPECS)
LINEAR_MODELS = [
    m
    for m, s in MODEL_SPECS.items()
    if s["architecture"] in modelspec.LINEAR_ARCHITECTURES
]
SEEDS = [int(s) for s in config["seeds"]]
# models.NAME.seeds_together: every seed of the model on a mix trained in one job (rule train_seeds), not one per seed
SEEDS_TOGETHER_MODELS = [m for m, s in MODEL_SPECS.items() if s["seeds_together"]]
EVAL_SETS = study.eval_sets(config)
# genes.universe "all": every mix is cut to the genes of all datasets' training cells (one gene space)
GENE_UNIVERSE_DATASETS = DATASETS if config["genes"]["universe"] == "all" else []
EVALUATION = config["evaluation"]
SYNTHETIC = EVALUATION["synthetic"]
# the synthetic-data utility is measured for models conditioned on the label, with a count likelihood
SYNTHETIC_MODELS = study.synthetic_models(config, MODEL_SPECS)
SYNTHETIC_EVAL_SETS = study.synthetic_eval_sets(config)
UMAP_SEED = SEEDS[
    0
]  # UMAPs are drawn for one seed; silhouette scores are computed for every seed


def script_code(script, *modules):
    """The package files a rule script can execute (its scmix imports, followed through the package), as
    inputs: an edit to any of them reruns the rule, and an edit to any other file does not. ``modules`` adds
    modules the script loads by name. Snakemake records the input paths of each job: a package inside the
    working directory (a checkout run where it is) is named relative to it, so the checkout moved or copied with
    its results (cp -a) finds every job's inputs unchanged; one outside it (--directory elsewhere) by its absolute
    path, so a work folder moved alone finds them unchanged too.
    """
    return [
        rel if not (rel := os.path.relpath(f)).startswith("..") else f
        for f in deps.package_files(
            WORKFLOW_ROOT / "scripts" / script, WORKFLOW_ROOT, modules
        )
    ]


def model_architecture(wildcards):
    """The config's architecture of the model a job runs: the rules that load a model file refuse one of
    another architecture (a stale or misplaced checkpoint)."""
    return MODEL_SPECS[wildcards.model]["architecture"]


def model_threads(wildcards):
    """A training job's threads, GPUs and device: the model's scheduling settings (they do not make a trained model
    out of date)."""
    return MODEL_SPECS[wildcards.model]["threads"]


def model_gpus(wildcards):
    return MODEL_SPECS[wildcards.model]["gpu"]


def model_device(wildcards):
    return MODEL_SPECS[wildcards.model]["device"]


def model_training_spec(wildcards):
    """What a trained model depends on: its spec without the scheduling keys."""
    return modelspec.training_spec(MODEL_SPECS[wildcards.model])


def model_env(wildcards):
    """The conda env of the jobs that run a model; scvi-tools models have their own."""
    scvi = MODEL_SPECS[wildcards.model]["architecture"] in modelspec.SCVI_ARCHITECTURES
    return "../envs/scvi.yaml" if scvi else "../envs/torch.yaml"


def _alternatives(names):
    return "|".join(re.escape(n) for n in names)


wildcard_constraints:
    dataset=_alternatives(DATASETS),
    eval_set=_alternatives(DATASETS),
    mix=_alternatives(MIXES),
    model=_alternatives(MODELS),
    seed=r"\d+",


def one_of_pattern(names):
    """A wildcard constraint matching exactly these names (nothing, if there are none). (No global of this file
    may be named _pattern: Snakemake formats a cluster job's command with these globals, and format()'s first
    argument has that name.)"""
    return _alternatives(names) if names else "(?!)"


LINEAR_MODEL_PATTERN = one_of_pattern(LINEAR_MODELS)
# which models train seed by seed (rule train) and which every seed of a mix together (rule train_seeds), so that
# one rule alone makes each model file
SEED_BY_SEED_MODEL_PATTERN = one_of_pattern(
    [m for m in MODELS if m not in SEEDS_TOGETHER_MODELS]
)
SEEDS_TOGETHER_MODEL_PATTERN = one_of_pattern(SEEDS_TOGETHER_MODELS)
SYNTHETIC_MODEL_PATTERN = one_of_pattern(SYNTHETIC_MODELS)


def label_map_input(wildcards):
    """The label-mapping file (fine -> coarse labels) as an input of the synthetic rule, when configured."""
    path = SYNTHETIC.get("label_map")
    return {"label_map": path} if path else {}


def composition_label_map(wildcards):
    """The label map of the seen/unseen check as an input, when configured."""
    path = EVALUATION["composition"].get("label_map")
    return {"label_map": path} if path else {}


def raw_dir_of(sources, negate=False):
    """The raw folder pattern, constrained to datasets of these source types (or of all others)."""
    names = [
        d
        for d, spec in config["datasets"].items()
        if (spec["source"] in sources) != negate
    ]
    return f"resources/raw/{{dataset,{one_of_pattern(names)}}}"


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
    return list(MIX_RECIPES[wildcards.mix]["datasets"])


def parse_code(wildcards):
    """The package files one dataset's parse can execute: the script's, and its source type's module (loaded by
    name), with what that builds on."""
    from scmix.data.sources.registry import SOURCES

    source = SOURCES[config["datasets"][wildcards.dataset]["source"]]
    return script_code("parse.py", f"scmix.data.sources.{source}")


def parse_env(wildcards):
    """The conda env of a dataset's parse: R data objects are read through rpy2, in an env with R."""
    rdata = config["datasets"][wildcards.dataset]["source"] == "rdata"
    return "../envs/rdata.yaml" if rdata else "../envs/data.yaml"


def dataset_split_settings(dataset):
    """Every split setting of a dataset: the package's defaults, the split section, the dataset's block."""
    return settings.resolve_split(
        config["split"], config["datasets"][dataset].get("split")
    )


def split_params(wildcards):
    return dataset_split_settings(wildcards.dataset)


def stratify_named(wildcards):
    """Whether the config itself names the split's stratify label (then the dataset must have it)."""
    return "stratify" in {
        **config["split"],
        **config["datasets"][wildcards.dataset].get("split", {}),
    }


def qc_params(wildcards):
    """Every QC setting of a dataset: the package's defaults, the qc section, the dataset's block."""
    return settings.resolve_qc(
        config["qc"], config["datasets"][wildcards.dataset].get("qc")
    )


def per_job(pattern, models=None, seeds=None, eval_sets=None):
    """Every per-job file of a pattern over the study's models, mixes, seeds (and eval sets)."""
    return expand(
        pattern,
        model=MODELS if models is None else models,
        mix=MIXES,
        seed=SEEDS if seeds is None else seeds,
        eval_set=EVAL_SETS if eval_sets is None else eval_sets,
    )
