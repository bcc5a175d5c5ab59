"""Source type -> module under scmix.data.sources defining parse(name, spec, raw_dir).

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

# sources whose parsers choose the cells of obs_filter/max_cells before any counts are read (and record
# uns["selection"] themselves); scmix.data.sources.parse_dataset chooses for every other source after parsing
SELECTS_BEFORE_READING = frozenset({"h5ad", "census"})

# uns key a parser may set to the file it read (a str), for messages; parse_dataset takes it out (default: raw_dir)
SOURCE_FILE = "scmix_source_file"
