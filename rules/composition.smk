# Stage 8 (with mix_sweeps): each sweep point's effect against its reference, with uncertainty; the datamix study's
# checks as sentences; dose-response, scaling and effects figures. All registered for the report.

COMPOSITION = EVALUATION["composition"]
SWEEP_MIXES = list(dict.fromkeys(p["mix"] for p in SWEEP_POINTS))
SWEEP_KINDS = {p["sweep"]: p["kind"] for p in SWEEP_POINTS}
SHARE_SWEEPS = [s for s, kind in SWEEP_KINDS.items() if kind == composition.SHARE]
COMPOSITION_TABLES = {
    "effects": "results/summary/composition_effects.tsv",
    "seen_unseen": "results/summary/seen_unseen.tsv",
    "claims": "results/summary/composition_claims.tsv",
}
COMPOSITION_FIGURES = [
    *expand("results/summary/composition/{sweep}.png", sweep=SWEEP_KINDS),
    *(
        [f"results/summary/composition/{composition.HEATMAP}.png"]
        if SHARE_SWEEPS
        else []
    ),
]


rule composition_effects:
    input:
        unpack(composition_label_map),
        cells=expand(
            f"{EVAL_PREFIX}.cells.tsv",
            model=MODELS,
            mix=SWEEP_MIXES,
            seed=SEEDS,
            eval_set=EVAL_SETS,
        ),
        manifests=expand(
            "results/mixes/{mix}/seed{seed}.manifest.tsv", mix=SWEEP_MIXES, seed=SEEDS
        ),
        code=script_code("composition.py"),
    output:
        **{
            name: report(
                path,
                caption="../report/composition.rst",
                category="Composition",
                labels={"table": name},
            )
            for name, path in COMPOSITION_TABLES.items()
        },
    log:
        "logs/summary/composition.log",
    conda:
        "../envs/plot.yaml"
    params:
        # each point without its recipe (the mix rule's): a recipe's edit reruns the point's jobs, and so this one
        points=[{k: v for k, v in p.items() if k != "recipe"} for p in SWEEP_POINTS],
        confidence=COMPOSITION["confidence"],
        min_cells_per_type=COMPOSITION["min_cells_per_type"],
    script:
        "../scripts/composition.py"


rule plot_composition:
    input:
        tsv=COMPOSITION_TABLES["effects"],
        code=script_code("plot_composition.py"),
    output:
        png=report(
            "results/summary/composition/{figure}.png",
            caption="../report/composition_figure.rst",
            category="Composition",
            labels={"figure": "{figure}"},
        ),
    log:
        "logs/summary/composition/{figure}.log",
    wildcard_constraints:
        figure=one_of_pattern([*SWEEP_KINDS, composition.HEATMAP]),
    conda:
        "../envs/plot.yaml"
    params:
        kind=lambda wc: SWEEP_KINDS.get(wc.figure, "heatmap"),
    script:
        "../scripts/plot_composition.py"
