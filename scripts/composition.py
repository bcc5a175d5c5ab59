"""Rule composition: every sweep point's effect against its reference with an interval over seeds and eval cells, a
test and a verdict (composition_effects.tsv), seen against unseen cell types on each mix of the sweeps
(seen_unseen.tsv), and the datamix study's three checks as sentences (composition_claims.tsv)."""

import logging

import pandas as pd

from scmix import rulecall
from scmix.evaluation import effects
from scmix.io import read_label_map, write_table

COLUMNS = ["model", "mix", "seed", "eval_set", "cell_id", "cell_type", *effects.METRICS]


def training_types(paths) -> dict:
    """(mix, seed) -> the cell types of that mix's training cells, from its manifest."""
    out = {}
    for path in paths:
        m = pd.read_csv(path, sep="\t")
        types = m.loc[m["n_cells"] > 0, "cell_type"] if "cell_type" in m else pd.Series([], dtype=str)
        out[(str(m["mix"].iloc[0]), int(m["seed"].iloc[0]))] = set(types.astype(str))
    return out


def main(smk):
    p = smk.params
    cells = pd.concat([pd.read_csv(f, sep="\t", usecols=lambda c: c in COLUMNS, dtype={"cell_type": str})
                       for f in smk.input.cells], ignore_index=True)  # fmt: skip
    logging.info("%d per-cell rows of %d tables", len(cells), len(smk.input.cells))
    label_map = read_label_map(smk.input.label_map) if smk.input.get("label_map") else None
    table = effects.composition_effects(cells, p.points, confidence=p.confidence,
                                        min_cells_per_type=p.min_cells_per_type)  # fmt: skip
    mixes = sorted({q["mix"] for q in p.points})
    unseen = effects.seen_unseen(cells, training_types(smk.input.manifests), mixes, label_map=label_map,
                                 min_cells=p.min_cells_per_type, confidence=p.confidence)  # fmt: skip
    claims = effects.claims(table, unseen, p.points, confidence=p.confidence)
    for sentence in claims["sentence"]:
        logging.info("%s", sentence)
    write_table(table, smk.output.effects)
    write_table(unseen, smk.output.seen_unseen)
    write_table(claims, smk.output.claims)


rulecall.run(main, snakemake)  # noqa: F821
