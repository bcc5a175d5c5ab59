"""Source type -> module under scmix.sources defining parse(name, spec, raw_dir).

Kept free of imports so the Snakefile can read it to make each parse job depend on its own module only.
"""

SOURCES = {
    "simulated": "simulated",
    "tenx": "tenx",
    "perturbseq": "perturbseq",
    "cca": "cca",
    "h5ad": "tables",
    "csv": "tables",
    "geo": "geo",
    "recount3": "recount3",
}

# modules a source module builds on (their edits rerun its parse jobs too)
USES = {"perturbseq": ["tenx"]}
