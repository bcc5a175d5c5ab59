"""The evaluation stage (rules evaluate, synthetic, composition): ``metrics`` (reconstruction accuracy as the
datamix study computes it, per-gene fit, likelihood summaries), ``ppc`` (posterior-predictive checks),
``latent`` (silhouettes and UMAP of the latent space), ``synthetic`` (synthetic cells judged by XGBoost),
``effects`` (composition effects of sweep points, with intervals over seeds and cells) and ``effect_table`` (the
columns and verdicts of that table, without imports, for the figures).

May import: the core modules at the top of ``scmix`` and ``scmix.data``. Never ``scmix.models`` (metrics take a
model's outputs, or a trained model handed in by the rule script) or ``scmix.plots``. No imports here.
"""
