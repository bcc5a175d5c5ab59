# Stage 3: a held-out eval set per dataset, disjoint from the cells any mix may train on.


rule split:
    input:
        h5ad="results/qc/{dataset}.h5ad",
        code=script_code("split.py"),
    output:
        train="results/split/{dataset}/train.h5ad",
        eval="results/split/{dataset}/eval.h5ad",
    log:
        "logs/split/{dataset}.log",
    benchmark:
        "results/benchmarks/split/{dataset}.tsv"
    conda:
        "../envs/data.yaml"
    params:
        split=split_params,
        stratify_required=stratify_named,
    script:
        "../scripts/split.py"
