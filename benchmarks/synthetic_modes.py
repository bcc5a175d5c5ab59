"""Synthetic cells of every generation mode, judged as the rule synthetic judges them, on the models of a finished run.

For each conditional model x mix x seed of the run, on the eval set of each dataset the mix draws from (every eval
set with --all-pairs), ``scmix.evaluation.synthetic.judge`` scores the model's cells generated in each mode of
``scmix.models.trained.GENERATION_MODES`` and in ``before`` (z from the prior, every label's library from the
model's one log-normal prior: the generator before per-label libraries): macro F1 of real->real and synthetic->real
at the fine and coarse level, the discriminator's AUC and its most informative genes. Prints the mean (min-max) over
seeds per mode and eval set, with the load average; writes every row with --tsv.

    python benchmarks/synthetic_modes.py --configfile config/shared_data/synthetic_modes.yaml --tsv modes.tsv

Run it in the run's working directory (where results/ is), after `snakemake --configfile ...` has trained the
models.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def fail(message: str) -> None:
    print(f"synthetic_modes: {message}", file=sys.stderr)
    sys.exit(2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--configfile", required=True, help="the run's config")
    ap.add_argument("--tsv", help="write every judged row here")
    ap.add_argument("--all-pairs", action="store_true", help="every eval set, not only the mix's own datasets'")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="XGBoost threads")
    args = ap.parse_args()

    import torch

    from scmix import study
    from scmix.evaluation import synthetic as syn
    from scmix.io import read_h5ad, read_label_map
    from scmix.models.loading import load
    from scmix.models.trained import GENERATION_MODES

    config = yaml.safe_load(Path(args.configfile).read_text())
    settings = {"label_key": "cell_type", "cells_per_label": 200, "n_features": 1000, "max_train_cells": 50000,
                **(config.get("evaluation", {}).get("synthetic") or {})}  # fmt: skip
    key = settings["label_key"]
    if settings.get("label_map") and not Path(settings["label_map"]).is_file():
        fail(f"the label map {settings['label_map']} is not here: run this in the run's working directory")
    label_map = read_label_map(settings["label_map"]) if settings.get("label_map") else None
    specs = study.model_specs(config)
    models = [m for m, s in specs.items() if key in (s.get("conditions") or [])]
    if not models:
        fail(f"the config has no model conditioned on '{key}'")
    torch.set_num_threads(1)
    variants = [(mode, mode, True) for mode in GENERATION_MODES] + [("before", "prior", False)]
    rows = []
    start = time.time()
    load_before = os.getloadavg()
    for model_name in models:
        for mix, recipe in study.mixes(config).items():
            evals = study.eval_sets(config) if args.all_pairs else [d for d in recipe["datasets"]]
            for seed in config["seeds"]:
                path = Path(f"results/models/{model_name}/{mix}/seed{seed}/model.pt")
                if not path.exists():
                    fail(f"{path} is missing: run snakemake --configfile {args.configfile} first")
                model = load(path)
                train = read_h5ad(f"results/mixes/{mix}/seed{seed}.h5ad", mix=mix)
                cells = model.prepare(train, min_overlap=1.0, name=mix, kind="mix")
                y_train = train.obs[key].astype(str).to_numpy()
                for eval_set in evals:
                    held = read_h5ad(f"results/split/{eval_set}/eval.h5ad", dataset=eval_set)
                    held_counts = model.prepare(held, min_overlap=0.8, name=eval_set).counts
                    y_held = held.obs[key].astype(str).to_numpy()
                    for name, mode, per_label in variants:
                        t = time.time()
                        table = syn.judge(model, cells, y_train, held_counts, y_held, label_key=key,
                                          cells_per_label=settings["cells_per_label"],
                                          n_features=settings["n_features"],
                                          max_train_cells=settings["max_train_cells"], generation=mode, seed=int(seed),
                                          label_map=label_map, n_jobs=args.threads, per_label_library=per_label,
                                          names={"model": model_name, "mix": mix, "dataset": eval_set})  # fmt: skip
                        f1 = table.query("`class` == 'macro' and metric == 'f1'")
                        row = {"model": model_name, "mix": mix, "seed": seed, "eval_set": eval_set, "mode": name,
                               "auc": table.query("metric == 'auc'")["value"].iloc[0],
                               "top_genes": ", ".join(table.query("metric == 'importance'")["class"].head(5)),
                               "seconds": time.time() - t}  # fmt: skip
                        for r in f1.itertuples():
                            row[f"{r.level}_{r.setting}"] = r.value
                        rows.append(row)
                        print(f"{model_name} {mix} seed {seed} on {eval_set}, {name}: AUC {row['auc']:.3f}, coarse "
                              f"synthetic->real / real->real {row.get('coarse_synthetic_to_real', float('nan')):.3f}"
                              f" / {row.get('coarse_real_to_real', float('nan')):.3f}", flush=True)  # fmt: skip
    out = pd.DataFrame(rows)
    if args.tsv:
        out.to_csv(args.tsv, sep="\t", index=False)
    level = "coarse" if label_map is not None else "fine"
    out["ratio"] = out[f"{level}_synthetic_to_real"] / out[f"{level}_real_to_real"]
    summary = out.groupby(["eval_set", "mode"], sort=False).agg(
        auc=("auc", "mean"), auc_min=("auc", "min"), auc_max=("auc", "max"), ratio=("ratio", "mean"),
        ratio_min=("ratio", "min"), ratio_max=("ratio", "max"), seeds=("seed", "nunique"))  # fmt: skip
    print(f"\nload average before {load_before[0]:.2f}, after {os.getloadavg()[0]:.2f}; {time.time() - start:.0f} s")
    print(f"discriminator AUC and {level} macro F1 synthetic->real / real->real, mean (min-max) over seeds:")
    for (eval_set, mode), r in summary.iterrows():
        print(f"  {eval_set:10s} {mode:10s} AUC {r.auc:.3f} ({r.auc_min:.3f}-{r.auc_max:.3f})  F1 ratio "
              f"{r.ratio:.3f} ({r.ratio_min:.3f}-{r.ratio_max:.3f})  {r.seeds} seeds")  # fmt: skip


if __name__ == "__main__":
    main()
