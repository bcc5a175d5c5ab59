# Stage 2: per-dataset QC with scanpy metrics; thresholds from config with per-dataset overrides.


rule qc:
    input:
        h5ad="results/raw/{dataset}.h5ad",
        code=package_sources("qc.py", "plots.py"),
    output:
        h5ad="results/qc/{dataset}.h5ad",
        report="results/qc/{dataset}.qc.tsv",
        plot=report(
            "results/qc/{dataset}.qc.png",
            caption="../report/qc.rst",
            category="QC",
            labels={"dataset": "{dataset}"},
        ),
    log:
        "logs/qc/{dataset}.log",
    conda:
        "../envs/data.yaml"
    params:
        qc=qc_params,
    script:
        "../scripts/qc.py"
