# Stage 5: train one model per model x mix x seed; GPU-tagged, runs on CPU when no GPU is visible. A model with
# seeds_together trains every seed of a mix in one job (rule train_seeds) and rule train never makes its files.


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
    wildcard_constraints:
        model=SEED_BY_SEED_MODEL_PATTERN,
    conda:
        model_env
    # scheduling (threads, GPUs, device) as threads and resources: they do not make a trained model out of date
    threads: model_threads
    resources:
        gpu=model_gpus,
        device=model_device,
    params:
        spec=model_training_spec,
    script:
        "../scripts/train.py"


# Every seed of one model (models.NAME.seeds_together) on one mix in one job, side by side on one device: each seed
# reads its own mix file and gets the files rule train would write for it. A changed training setting or an added
# seed reruns the whole job.
rule train_seeds:
    input:
        h5ad=expand("results/mixes/{{mix}}/seed{seed}.h5ad", seed=SEEDS),
        code=script_code("train_seeds.py"),
    output:
        model=expand("results/models/{{model}}/{{mix}}/seed{seed}/model.pt", seed=SEEDS),
        history=expand(
            "results/models/{{model}}/{{mix}}/seed{seed}/history.tsv", seed=SEEDS
        ),
    log:
        "logs/train_seeds/{model}/{mix}.log",
    benchmark:
        "results/benchmarks/train_seeds/{model}/{mix}.tsv"
    wildcard_constraints:
        model=SEEDS_TOGETHER_MODEL_PATTERN,
    conda:
        "../envs/torch.yaml"
    threads: model_threads
    resources:
        gpu=model_gpus,
        device=model_device,
    params:
        spec=model_training_spec,
        seeds=SEEDS,
    script:
        "../scripts/train_seeds.py"


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
