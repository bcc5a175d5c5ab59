"""Rule synthetic: a conditional model's synthetic cells judged by XGBoost against real cells of one eval set."""

import torch

from scmix import rulecall
from scmix.errors import ScmixInputError
from scmix.evaluation import synthetic as syn
from scmix.io import read_h5ad, read_label_map, write_table
from scmix.models.loading import load_for_config
from scmix.models.train import resolve_device


def labels_of(adata, key, path, **where):
    if key not in adata.obs:
        raise ScmixInputError(f"synthetic utility needs obs column '{key}' (has {list(adata.obs.columns)})",
                              path=path, **where)  # fmt: skip
    return adata.obs[key].astype(str).to_numpy()


def main(smk):
    w = smk.wildcards
    torch.set_num_threads(smk.threads)
    p = smk.params
    seed, key = int(w.seed), p.label_key
    device = resolve_device(smk.resources.device, setting="evaluation.device")
    xgb_device = "cuda" if device.type == "cuda" else "cpu"
    model = load_for_config(smk.input.model, model=w.model, architecture=p.architecture, device=device)
    train = read_h5ad(smk.input.mix, mix=w.mix)
    held = read_h5ad(smk.input.eval, dataset=w.eval_set)
    X_held = model.prepare(held, min_overlap=p.min_gene_overlap, name=w.eval_set, path=smk.input.eval).counts
    y_train = labels_of(train, key, smk.input.mix, mix=w.mix)
    y_held = labels_of(held, key, smk.input.eval, dataset=w.eval_set)

    train_cells = model.prepare(train, min_overlap=1.0, name=w.mix, kind="mix", path=smk.input.mix)
    label_map = read_label_map(smk.input.label_map) if smk.input.get("label_map") else None
    table = syn.judge(model, train_cells, y_train, X_held, y_held, label_key=key, cells_per_label=p.cells_per_label,
                      n_features=p.n_features, max_train_cells=p.max_train_cells, generation=p.generation, seed=seed,
                      label_map=label_map, label_map_path=smk.input.get("label_map"), device=xgb_device,
                      n_jobs=smk.threads, names={"model": w.model, "mix": w.mix, "dataset": w.eval_set})  # fmt: skip
    for i, (k, v) in enumerate((("model", w.model), ("mix", w.mix), ("seed", seed), ("eval_set", w.eval_set))):
        table.insert(i, k, v)
    write_table(table, smk.output.tsv)


rulecall.run(main, snakemake)  # noqa: F821
