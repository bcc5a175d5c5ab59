# Stage 7: summary tables and figures, every one registered for `snakemake --report`.


SUMMARY_TABLES = {
    "reconstruction_accuracy": per_job(f"{EVAL_PREFIX}.summary.tsv"),
    "heldout_likelihood": per_job(f"{EVAL_PREFIX}.likelihood.tsv"),
    "gene_fit": per_job(f"{EVAL_PREFIX}.gene_summary.tsv"),
    "posterior_checks": per_job(f"{EVAL_PREFIX}.ppc.tsv"),
    "latent_scores": per_job("results/latent/{model}/{mix}/seed{seed}/scores.tsv"),
}
if SYNTHETIC_MODELS:
    SUMMARY_TABLES["synthetic_utility"] = per_job(
        "results/synthetic/{model}/{mix}/seed{seed}/{eval_set}.tsv",
        models=SYNTHETIC_MODELS,
        eval_sets=SYNTHETIC_EVAL_SETS,
    )
SUMMARY_CAPTIONS = {
    "reconstruction_accuracy": "Reconstruction accuracy",
    "heldout_likelihood": "Held-out likelihood",
    "gene_fit": "Per-gene fit and zero calibration",
    "posterior_checks": "Posterior-predictive checks",
    "latent_scores": "Latent space",
    "synthetic_utility": "Synthetic-data utility",
}

SUMMARY_FIGURES = [
    "results/summary/reconstruction_accuracy.png",
    "results/summary/heldout_likelihood.png",
    "results/summary/training_curves.png",
    "results/summary/zero_calibration.png",
    "results/summary/posterior_checks.png",
    *expand("results/summary/celltype_accuracy/{model}.png", model=MODELS),
    *expand(
        "results/latent/{model}/{mix}/seed{seed}/umap.png",
        model=MODELS,
        mix=MIXES,
        seed=UMAP_SEED,
    ),
    *(["results/summary/synthetic_utility.png"] if SYNTHETIC_MODELS else []),
]


rule summarize:
    input:
        tables=lambda wc: SUMMARY_TABLES[wc.table],
        code=script_code("gather.py"),
    output:
        tsv=report(
            "results/summary/{table}.tsv",
            caption="../report/summary_table.rst",
            category=lambda wc: SUMMARY_CAPTIONS[wc.table],
        ),
    log:
        "logs/summary/{table}.log",
    wildcard_constraints:
        table="|".join(SUMMARY_TABLES),
    conda:
        "../envs/plot.yaml"
    script:
        "../scripts/gather.py"


rule plot_heatmap:
    input:
        tsv="results/summary/{table}.tsv",
        code=script_code("plot_heatmap.py"),
    output:
        png=report(
            "results/summary/{table}.png",
            caption="../report/summary_heatmap.rst",
            category=lambda wc: SUMMARY_CAPTIONS[wc.table],
        ),
    log:
        "logs/summary/{table}_plot.log",
    wildcard_constraints:
        table="reconstruction_accuracy|heldout_likelihood",
    conda:
        "../envs/plot.yaml"
    params:
        value=lambda wc: {
            "reconstruction_accuracy": "pearson_mean",
            "heldout_likelihood": "marginal_ll",
        }[wc.table],
    script:
        "../scripts/plot_heatmap.py"


rule plot_celltypes:
    input:
        cells=expand(
            f"{EVAL_PREFIX}.cells.tsv",
            mix=MIXES,
            seed=SEEDS,
            eval_set=EVAL_SETS,
            allow_missing=True,
        ),
        code=script_code("plot_celltypes.py"),
    output:
        png=report(
            "results/summary/celltype_accuracy/{model}.png",
            caption="../report/celltype_accuracy.rst",
            category="Reconstruction accuracy",
            subcategory="per cell type",
            labels={"model": "{model}"},
        ),
    log:
        "logs/summary/celltype_accuracy/{model}.log",
    conda:
        "../envs/plot.yaml"
    script:
        "../scripts/plot_celltypes.py"


rule plot_training:
    input:
        histories=expand(
            "results/models/{model}/{mix}/seed{seed}/history.tsv",
            model=MODELS,
            mix=MIXES,
            seed=SEEDS,
        ),
        code=script_code("plot_training.py"),
    output:
        png=report(
            "results/summary/training_curves.png",
            caption="../report/training_curves.rst",
            category="Training",
            subcategory="all runs",
        ),
    log:
        "logs/summary/training_curves.log",
    conda:
        "../envs/plot.yaml"
    script:
        "../scripts/plot_training.py"


rule plot_zero_calibration:
    input:
        genes=per_job(f"{EVAL_PREFIX}.genes.tsv", seeds=[UMAP_SEED]),
        code=script_code("plot_zero_calibration.py"),
    output:
        png=report(
            "results/summary/zero_calibration.png",
            caption="../report/zero_calibration.rst",
            category="Per-gene fit and zero calibration",
        ),
    log:
        "logs/summary/zero_calibration.log",
    conda:
        "../envs/plot.yaml"
    script:
        "../scripts/plot_zero_calibration.py"


rule plot_posterior_checks:
    input:
        tsv="results/summary/posterior_checks.tsv",
        code=script_code("plot_posterior_checks.py"),
    output:
        png=report(
            "results/summary/posterior_checks.png",
            caption="../report/posterior_checks.rst",
            category="Posterior-predictive checks",
        ),
    log:
        "logs/summary/posterior_checks_plot.log",
    conda:
        "../envs/plot.yaml"
    script:
        "../scripts/plot_posterior_checks.py"


rule plot_synthetic:
    input:
        tsv="results/summary/synthetic_utility.tsv",
        code=script_code("plot_synthetic.py"),
    output:
        png=report(
            "results/summary/synthetic_utility.png",
            caption="../report/synthetic_utility.rst",
            category="Synthetic-data utility",
        ),
    log:
        "logs/summary/synthetic_utility_plot.log",
    conda:
        "../envs/plot.yaml"
    script:
        "../scripts/plot_synthetic.py"


rule plot_umap:
    input:
        latent="results/latent/{model}/{mix}/seed{seed}/latent.h5ad",
        code=script_code("plot_umap.py"),
    output:
        png=report(
            "results/latent/{model}/{mix}/seed{seed}/umap.png",
            caption="../report/umap.rst",
            category="Latent space",
            subcategory="{model}",
            labels={"model": "{model}", "mix": "{mix}", "seed": "{seed}"},
        ),
    log:
        "logs/latent/{model}/{mix}/seed{seed}.umap.log",
    conda:
        "../envs/plot.yaml"
    params:
        label_keys=EVALUATION["latent"]["keys"],
    script:
        "../scripts/plot_umap.py"
