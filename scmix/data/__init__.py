"""The data stages of the DAG, from a URL to a training mix: ``fetch`` (rule download) and ``urls``, ``sources/``
(rule parse: one module per source type, ``registry`` maps a type to its module), ``qc`` (rule qc), ``split``
(rule split), ``genes`` (gene harmonisation across datasets) and ``mix`` (rule mix), ``composition`` (mix sweeps
expanded into named mixes), ``expression`` (log1p(CP10k) and CP10k derived from counts) and ``simulate`` (the
embedded demo's datasets).

May import: the core modules at the top of ``scmix`` (errors, io, settings, names, ...) and each other. Never
``scmix.models``, ``scmix.evaluation`` or ``scmix.plots``: data know nothing of what is trained on them. No imports
here: the workflow imports ``composition`` and ``fetch`` while it builds the DAG, and each rule depends on the
modules its script imports, not on the whole folder.
"""
