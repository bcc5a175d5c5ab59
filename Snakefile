# scmix: how the composition of training data shapes deep generative models of gene expression.
# The DAG: download -> qc -> split -> mix (per seed) -> train (per model x mix x seed)
#          -> evaluate (per model x mix x seed x eval set), synthetic utility, latent space
#          -> summary tables and figures (all registered for the report); with mix_sweeps, the effects of each sweep
#          point against its reference (rules/composition.smk). Every figure has a rule of its own
#          (plot_*), so that an edit to plotting code redraws figures and reruns nothing else.

from snakemake.utils import min_version

min_version("8.0")


# The demo config is the default; a --configfile replaces it instead of being merged into it
# (Snakemake would otherwise mix the demo's datasets and mixes into every other study).
if not workflow.overwrite_configfiles:

    configfile: "config.yaml"


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/download.smk"
include: "rules/qc.smk"
include: "rules/split.smk"
include: "rules/mix.smk"
include: "rules/train.smk"
include: "rules/evaluate.smk"
include: "rules/report.smk"
include: "rules/composition.smk"


rule all:
    default_target: True
    input:
        expand("results/summary/{table}.tsv", table=SUMMARY_TABLES),
        SUMMARY_FIGURES,
        COMPOSITION_TABLES.values() if SWEEP_POINTS else [],
        COMPOSITION_FIGURES,
        expand("results/qc/{dataset}.qc.png", dataset=DATASETS),
        expand(
            "results/models/{model}/{mix}/seed{seed}/loss.png",
            model=MODELS,
            mix=MIXES,
            seed=SEEDS,
        ),
        expand(
            "results/models/{model}/{mix}/seed{seed}/loadings.tsv",
            model=LINEAR_MODELS,
            mix=MIXES,
            seed=SEEDS,
        ),
