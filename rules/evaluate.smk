# Stage 6: reconstruction accuracy of each model on each held-out eval set.


rule evaluate:
    input:
        model="results/models/{model}/{mix}/seed{seed}/model.pt",
        eval="results/split/{eval_set}/eval.h5ad",
        code=package_sources(
            "evaluate.py",
            "checkpoint.py",
            "predict.py",
            "modeldata.py",
            "transforms.py",
        ),
    output:
        cells="results/eval/{model}/{mix}/seed{seed}/{eval_set}.cells.tsv",
        summary="results/eval/{model}/{mix}/seed{seed}/{eval_set}.summary.tsv",
    log:
        "logs/evaluate/{model}/{mix}/seed{seed}/{eval_set}.log",
    benchmark:
        "results/benchmarks/evaluate/{model}/{mix}/seed{seed}/{eval_set}.tsv"
    conda:
        "../envs/torch.yaml"
    threads: 1
    params:
        evaluation=config["evaluation"],
    script:
        "../scripts/evaluate.py"
