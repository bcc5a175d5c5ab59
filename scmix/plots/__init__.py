"""Figures (matplotlib, Agg backend), one module per stage of the DAG: ``data`` (QC), ``training`` (loss curves),
``evaluation`` (heatmaps, cell types, UMAP, synthetic cells, zero calibration, posterior-predictive checks),
``composition`` (composition effects); ``style`` holds what they share (one colour per category name in every
figure of a run, sizes, saving). Plotting code only: no modelling, no metrics, no file reading. Every function
takes tidy pandas tables and an output path and writes one PNG; rows with NaN values are skipped; with one seed
there is no spread.

May import: the core modules at the top of ``scmix`` and ``scmix.evaluation.effect_table`` (the names of the
effects table). Nothing that trains or computes a metric. Only the backend is set here (before any module draws),
so that each plot rule depends on its own stage's module alone.
"""

import matplotlib

matplotlib.use("Agg")
