# Stage 6: each trained model on the held-out cells. Rule evaluate, one job per model, mix and seed over every eval
# set (one interpreter and model load): reconstruction, likelihood, per-gene fit and posterior-predictive checks
# (a set of tables per eval set),
# and the latent space of all eval sets together (posterior means, silhouettes, the UMAP of the first seed).
# Rule synthetic: synthetic-data utility (conditional models, per eval set).


EVAL_PREFIX = "results/eval/{model}/{mix}/seed{seed}/{eval_set}"
EVAL_TABLES = ["cells", "summary", "likelihood", "genes", "gene_summary", "ppc"]


rule evaluate:
    input:
        model="results/models/{model}/{mix}/seed{seed}/model.pt",
        eval=expand("results/split/{eval_set}/eval.h5ad", eval_set=EVAL_SETS),
        code=script_code("evaluate.py"),
    output:
        **{
            table: expand(
                f"{EVAL_PREFIX}.{table}.tsv", eval_set=EVAL_SETS, allow_missing=True
            )
            for table in EVAL_TABLES
        },
        latent="results/latent/{model}/{mix}/seed{seed}/latent.h5ad",
        latent_scores="results/latent/{model}/{mix}/seed{seed}/scores.tsv",
    log:
        "logs/evaluate/{model}/{mix}/seed{seed}.log",
    benchmark:
        "results/benchmarks/evaluate/{model}/{mix}/seed{seed}.tsv"
    conda:
        model_env
    threads: 1
    resources:
        device=EVALUATION["device"],
    params:
        architecture=model_architecture,
        eval_sets=EVAL_SETS,
        reconstruction=EVALUATION["reconstruction"],
        reconstruction_genes=EVALUATION["reconstruction_genes"],
        n_top_genes=EVALUATION["n_top_genes"],
        likelihood_samples=EVALUATION["likelihood_samples"],
        ppc_genes=EVALUATION["ppc_genes"],
        min_gene_overlap=EVALUATION["min_gene_overlap"],
        chunk_cells=EVALUATION["chunk_cells"],
        latent_keys=EVALUATION["latent"]["keys"],
        # the UMAP (obsm X_umap) of the seed the UMAP figures are drawn for
        umap=lambda wc: int(wc.seed) == UMAP_SEED,
    script:
        "../scripts/evaluate.py"


rule synthetic:
    input:
        unpack(label_map_input),
        model="results/models/{model}/{mix}/seed{seed}/model.pt",
        mix="results/mixes/{mix}/seed{seed}.h5ad",
        eval="results/split/{eval_set}/eval.h5ad",
        code=script_code("synthetic.py"),
    output:
        tsv=f"results/synthetic/{{model,{SYNTHETIC_MODEL_PATTERN}}}/{{mix}}/seed{{seed}}/{{eval_set}}.tsv",
    log:
        "logs/synthetic/{model}/{mix}/seed{seed}/{eval_set}.log",
    benchmark:
        "results/benchmarks/synthetic/{model}/{mix}/seed{seed}/{eval_set}.tsv"
    conda:
        model_env
    # XGBoost's threads; the demo's classifiers gain little from a second one, and two jobs share two cores better
    # (more: snakemake --set-threads synthetic=N)
    threads: 1
    resources:
        device=EVALUATION["device"],
    params:
        architecture=model_architecture,
        # the synthetic block less eval_sets (which jobs exist) and label_map (an input)
        label_key=SYNTHETIC["label_key"],
        generation=SYNTHETIC["generation"],
        cells_per_label=SYNTHETIC["cells_per_label"],
        n_features=SYNTHETIC["n_features"],
        max_train_cells=SYNTHETIC["max_train_cells"],
        min_gene_overlap=EVALUATION["min_gene_overlap"],
    script:
        "../scripts/synthetic.py"
