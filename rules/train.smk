# Stage 5: train one model per model x mix x seed; GPU-tagged, runs on CPU when no GPU is visible.


rule train:
    input:
        h5ad="results/mixes/{mix}/seed{seed}.h5ad",
        code=package_sources(
            "models",
            "train.py",
            "checkpoint.py",
            "modeldata.py",
            "modelspec.py",
            "transforms.py",
        ),
    output:
        model="results/models/{model}/{mix}/seed{seed}/model.pt",
        history="results/models/{model}/{mix}/seed{seed}/history.tsv",
        curve=report(
            "results/models/{model}/{mix}/seed{seed}/loss.png",
            caption="../report/loss_curve.rst",
            category="Training",
            subcategory="{model}",
            labels={"model": "{model}", "mix": "{mix}", "seed": "{seed}"},
        ),
    log:
        "logs/train/{model}/{mix}/seed{seed}.log",
    benchmark:
        "results/benchmarks/train/{model}/{mix}/seed{seed}.tsv"
    conda:
        "../envs/torch.yaml"
    threads: lambda wc: MODEL_SPECS[wc.model]["threads"]
    resources:
        gpu=lambda wc: MODEL_SPECS[wc.model]["gpu"],
    params:
        spec=lambda wc: MODEL_SPECS[wc.model],
    script:
        "../scripts/train.py"


# The gene x latent loadings of a linear-decoder model (LDVAE).
rule loadings:
    input:
        model="results/models/{model}/{mix}/seed{seed}/model.pt",
    output:
        tsv=f"results/models/{{model,{LINEAR_MODEL_PATTERN}}}/{{mix}}/seed{{seed}}/loadings.tsv",
    log:
        "logs/loadings/{model}/{mix}/seed{seed}.log",
    conda:
        "../envs/torch.yaml"
    script:
        "../scripts/loadings.py"
