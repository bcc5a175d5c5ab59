# Stage 1: acquire each dataset as raw integer counts (simulated sources are generated here).


rule download:
    input:
        code=package_sources("sources.py", "simulate.py", "io.py"),
    output:
        h5ad="results/raw/{dataset}.h5ad",
    log:
        "logs/download/{dataset}.log",
    conda:
        "../envs/data.yaml"
    params:
        spec=dataset_spec,
        simulation=config["simulation"],
    script:
        "../scripts/download.py"
