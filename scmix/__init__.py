"""scmix: how the composition of training data shapes deep generative models of gene expression.

The package holds the logic; the Snakemake rules and their scripts only wire files to it.
"""

__version__ = "0.1.0"
