"""Source type -> module under scmix.sources defining parse(name, spec, raw_dir).

Kept free of imports: the workflow reads it while building the DAG, so that each parse job depends on its own
source module (and what that imports) only.
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
    "census": "census",
    "rdata": "rdata",
}
