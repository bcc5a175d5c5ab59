# Stage 2: per-dataset QC with scanpy metrics; thresholds from config with per-dataset overrides.


rule qc:
    input:
        h5ad="results/raw/{dataset}.h5ad",
        code=script_code("qc.py"),
    output:
        h5ad="results/qc/{dataset}.h5ad",
        report="results/qc/{dataset}.qc.tsv",
        metrics="results/qc/{dataset}.metrics.tsv",
    log:
        "logs/qc/{dataset}.log",
    benchmark:
        "results/benchmarks/qc/{dataset}.tsv"
    conda:
        "../envs/data.yaml"
    params:
        qc=qc_params,
    script:
        "../scripts/qc.py"


# The QC figure, a rule of its own so that an edit to plotting code redraws it without rerunning QC.
rule plot_qc:
    input:
        metrics="results/qc/{dataset}.metrics.tsv",
        report="results/qc/{dataset}.qc.tsv",
        code=script_code("plot_qc.py"),
    output:
        png=report(
            "results/qc/{dataset}.qc.png",
            caption="../report/qc.rst",
            category="QC",
            labels={"dataset": "{dataset}"},
        ),
    log:
        "logs/plot_qc/{dataset}.log",
    conda:
        "../envs/data.yaml"
    params:
        qc=qc_params,
    script:
        "../scripts/plot_qc.py"
