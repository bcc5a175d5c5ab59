"""The evaluation on real PBMC 3k (2,000 most variable genes): an unseen cell type is reconstructed worst,
and a cell-type-conditioned model's synthetic cells train a classifier nearly as well as real cells.
Skipped without ../shared."""

import anndata as ad
import numpy as np

from scmix.evaluate import log1p_cp10k, reconstruction_accuracy, summarise, top_variable_genes
from scmix.modeldata import prepare
from scmix.modelspec import module_kwargs, resolve
from scmix.predict import generate_cells, heldout_likelihood, reconstructed_proportions
from scmix.split import split_heldout
from scmix.synthetic import coarse_labels, discriminator_auc, utility
from scmix.train import TrainConfig, build_and_fit

CFG = TrainConfig(epochs=40, batch_size=128, lr=5e-3, kl_warmup_epochs=5, patience=8, seed=0)
COARSE = {"Naive CD4 T": "T", "Memory CD4 T": "T", "CD8 T": "T", "B": "B", "NK": "NK", "CD14+ Mono": "myeloid",
          "FCGR3A+ Mono": "myeloid", "DC": "myeloid", "Platelet": "platelet"}  # fmt: skip


def _fit(train, **spec):
    spec = resolve("m", {"hidden": [128, 128], "n_latent": 10, **spec})
    data, vocab = prepare(train, spec, name="pbmc3k train")
    model, _ = build_and_fit(spec["architecture"], module_kwargs(spec, train.n_vars, vocab), data, CFG)
    return model, {"spec": spec, "categories": vocab, "model": "m"}


def test_heldout_cell_type_is_reconstructed_worst_and_synthetic_cells_are_useful(pbmc3k_split):
    # B cells held out of training entirely, as split.holdout_cell_types does in the workflow
    both = ad.concat(list(pbmc3k_split))
    train, held = split_heldout(both, 0.2, seed=0, holdout_cell_types=["B"])
    assert "B" not in set(train.obs["cell_type"].astype(str))

    model, meta = _fit(train, architecture="cvae", conditions=["cell_type"])
    rho = reconstructed_proportions(model, meta, held.X, held.obs)
    per_cell = reconstruction_accuracy(held.X, rho, n_top_genes=1000)
    per_cell["cell_type"] = held.obs["cell_type"].astype(str).to_numpy()
    per_cell["model"] = "cvae"
    by_type = summarise(per_cell, ["model"]).set_index("cell_type")
    seen = by_type.drop(index=["B", "all"])
    seen = seen[seen["n_cells"] >= 20]  # DC and platelets have a handful of held-out cells
    print("PBMC 3k held-out Pearson r by cell type (B unseen):", by_type["pearson_mean"].round(3).to_dict())
    assert by_type.loc["B", "pearson_mean"] < seen["pearson_mean"].min()

    like = heldout_likelihood(model, meta, held.X, held.obs, n_samples=20)
    assert (like["marginal_ll"] >= like["elbo"]).all()

    # synthetic utility on the cell types the model saw
    synth, y_synth = generate_cells(model, meta, train.obs, "cell_type", 150, seed=0)
    features = top_variable_genes(log1p_cp10k(train.X), 1000)
    X_tr, X_te, X_sy = (log1p_cp10k(m)[:, features] for m in (train.X, held.X, synth))
    y_tr, y_te = train.obs["cell_type"].astype(str).to_numpy(), held.obs["cell_type"].astype(str).to_numpy()
    macro = {}
    for level, labels in (("fine", (y_tr, y_te, y_synth)), ("coarse", [coarse_labels(y, COARSE) for y in
                                                                       (y_tr, y_te, y_synth)])):  # fmt: skip
        scores = utility(X_tr, labels[0], X_te, labels[1], X_sy, labels[2], n_estimators=100)
        macro[level] = scores.query("`class` == 'macro' and metric == 'f1'").set_index("setting")["value"].to_dict()
    auc = discriminator_auc(X_te[np.isin(y_te, y_synth)], X_sy, n_estimators=100)
    print("PBMC 3k synthetic utility, macro F1:", {k: {s: round(v, 3) for s, v in d.items()} for k, d in
                                                   macro.items()}, f"discriminator AUC {auc:.3f}")  # fmt: skip
    coarse = macro["coarse"]
    assert coarse["synthetic_to_real"] >= 0.8 * coarse["real_to_real"]
    assert macro["fine"]["real_to_real"] > 0.5 and 0.5 <= auc <= 1.0
