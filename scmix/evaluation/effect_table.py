"""The vocabulary of ``composition_effects.tsv``: its columns, metrics and verdicts. Its own module, without imports,
so that the figures that read the table (``scmix.plots``) depend on these names and not on how the effects are
computed (``scmix.evaluation.effects``)."""

# per-cell metrics of the evaluate rule's cells tables, both better when higher
METRICS = {"pearson": "mean per-cell Pearson r", "marginal_ll": "held-out log p(x) per cell"}
ALL_CELLS = "all"
HELPS, HURTS, NO_EFFECT, NOT_TESTED, REFERENCE = "helps", "hurts", "no detectable effect", "not tested", "reference"
# eval-cell labels that are no cell type (a dataset without labels, a label a mix's manifest writes as missing)
UNLABELLED = {"unknown", "NA", "nan", ""}
# the columns of composition_effects.tsv
COLUMNS = ["model", "eval_set", "cell_type", "metric", "sweep", "kind", "added", "share", "total_cells", "mix",
           "reference", "n_seeds", "n_cells", "mean", "seed_sd", "reference_mean", "delta", "ci_low", "ci_high",
           "p_value", "verdict", "seeds_needed"]  # fmt: skip
