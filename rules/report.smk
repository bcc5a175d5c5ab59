# Stage 7: summary tables and figures, registered for `snakemake --report`.


rule summarize:
    input:
        tables=expand(
            "results/eval/{model}/{mix}/seed{seed}/{eval_set}.summary.tsv",
            model=MODELS,
            mix=MIXES,
            seed=SEEDS,
            eval_set=EVAL_SETS,
        ),
    output:
        tsv=report(
            "results/summary/reconstruction_accuracy.tsv",
            caption="../report/reconstruction_table.rst",
            category="Reconstruction accuracy",
        ),
    log:
        "logs/summary/reconstruction_accuracy.log",
    conda:
        "../envs/plot.yaml"
    script:
        "../scripts/summarize.py"


rule plot_reconstruction:
    input:
        tsv="results/summary/reconstruction_accuracy.tsv",
        code=package_sources("plots.py"),
    output:
        png=report(
            "results/summary/reconstruction_accuracy.png",
            caption="../report/reconstruction_heatmap.rst",
            category="Reconstruction accuracy",
        ),
    log:
        "logs/summary/reconstruction_accuracy_plot.log",
    conda:
        "../envs/plot.yaml"
    script:
        "../scripts/plot_summary.py"
