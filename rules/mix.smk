# Stage 4: one training mix per recipe and seed, drawn from the datasets' training parts.


rule mix:
    input:
        **gene_list_input(),
        train=lambda wc: expand(
            "results/split/{dataset}/train.h5ad", dataset=mix_datasets(wc)
        ),
        eval=expand("results/split/{dataset}/eval.h5ad", dataset=EVAL_SETS),
        universe=expand(
            "results/split/{dataset}/train.h5ad",
            dataset=GENE_UNIVERSE_DATASETS,
        ),
        code=script_code("mix.py"),
    output:
        h5ad="results/mixes/{mix}/seed{seed}.h5ad",
        manifest="results/mixes/{mix}/seed{seed}.manifest.tsv",
        summary="results/mixes/{mix}/seed{seed}.manifest.json",
        genes="results/mixes/{mix}/seed{seed}.genes.tsv",
    log:
        "logs/mix/{mix}/seed{seed}.log",
    benchmark:
        "results/benchmarks/mix/{mix}/seed{seed}.tsv"
    conda:
        "../envs/data.yaml"
    params:
        recipe=lambda wc: MIX_RECIPES[wc.mix],
        datasets=mix_datasets,
        universe=GENE_UNIVERSE_DATASETS,
        eval_sets=EVAL_SETS,
        genes=config["genes"],
        # split.drop_cross_source_duplicates of each dataset of the mix
        drop_duplicates=lambda wc: {
            d: dataset_split_settings(d)["drop_cross_source_duplicates"]
            for d in mix_datasets(wc)
        },
    script:
        "../scripts/mix.py"
