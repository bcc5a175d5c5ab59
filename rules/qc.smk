# Stage 2: per-dataset QC with scanpy metrics; thresholds from config with per-dataset overrides.


rule qc:
    input:
        h5ad="results/raw/{dataset}.h5ad",
        # not plots.py (the QC figure is drawn with it): an edit to plotting code would rerun QC and so
        # every split, mix and model downstream; like the loss curves of train, the QC figures are not redrawn
        code=package_sources("qc.py"),
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
