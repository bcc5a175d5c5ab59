# Stage 5: train one model per model x mix x seed; GPU-tagged, runs on CPU when no GPU is visible.


rule train:
    input:
        h5ad="results/mixes/{mix}/seed{seed}.h5ad",
        code=script_code("train.py"),
    output:
        model="results/models/{model}/{mix}/seed{seed}/model.pt",
        history="results/models/{model}/{mix}/seed{seed}/history.tsv",
    log:
        "logs/train/{model}/{mix}/seed{seed}.log",
    benchmark:
        "results/benchmarks/train/{model}/{mix}/seed{seed}.tsv"
    conda:
        model_env
    # scheduling (threads, GPUs, device) as threads and resources: they do not make a trained model out of date
    threads: lambda wc: MODEL_SPECS[wc.model]["threads"]
    resources:
        gpu=lambda wc: MODEL_SPECS[wc.model]["gpu"],
        device=lambda wc: MODEL_SPECS[wc.model]["device"],
    params:
        spec=lambda wc: modelspec.training_spec(MODEL_SPECS[wc.model]),
    script:
        "../scripts/train.py"


# One training run's loss curves, drawn apart from training so that an edit to plotting code does not retrain.
rule plot_loss:
    input:
        history="results/models/{model}/{mix}/seed{seed}/history.tsv",
        code=script_code("plot_loss.py"),
    output:
        png=report(
            "results/models/{model}/{mix}/seed{seed}/loss.png",
            caption="../report/loss_curve.rst",
            category="Training",
            subcategory="{model}",
            labels={"model": "{model}", "mix": "{mix}", "seed": "{seed}"},
        ),
    log:
        "logs/plot_loss/{model}/{mix}/seed{seed}.log",
    conda:
        "../envs/plot.yaml"
    script:
        "../scripts/plot_loss.py"


# The gene x latent loadings of a linear-decoder model (LDVAE, LinearSCVI): a TSV, and varm of an h5ad.
rule loadings:
    input:
        model="results/models/{model}/{mix}/seed{seed}/model.pt",
        code=script_code("loadings.py"),
    output:
        tsv=f"results/models/{{model,{LINEAR_MODEL_PATTERN}}}/{{mix}}/seed{{seed}}/loadings.tsv",
        h5ad=f"results/models/{{model,{LINEAR_MODEL_PATTERN}}}/{{mix}}/seed{{seed}}/loadings.h5ad",
    log:
        "logs/loadings/{model}/{mix}/seed{seed}.log",
    conda:
        model_env
    params:
        architecture=model_architecture,
    script:
        "../scripts/loadings.py"
