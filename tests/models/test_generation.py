"""Synthetic cells that follow the data: each label's library sizes, z from the prior, the label's aggregate
posterior or a cell's own posterior, and posterior-predictive replicates. On real PBMC 3k (2,000 most variable
genes); skipped without ../shared."""

import numpy as np
import pytest
import torch

from scmix.models.modeldata import prepare
from scmix.models.modelspec import module_kwargs, resolve
from scmix.models.train import TrainConfig, build_and_fit
from scmix.models.trained import GENERATION_MODES, TrainedModel

CFG = TrainConfig(epochs=25, batch_size=128, lr=5e-3, kl_warmup_epochs=5, patience=8, seed=0)


@pytest.fixture(scope="module")
def cvae(pbmc3k_split):
    train, held = pbmc3k_split
    spec = resolve("m", {"architecture": "cvae", "conditions": ["cell_type"], "hidden": [128], "n_latent": 10})
    data, vocab = prepare(train, spec, name="pbmc3k train")
    module, _ = build_and_fit("cvae", module_kwargs(spec, train.n_vars, vocab), data, CFG)
    model = TrainedModel.from_module(module, spec=spec, genes=train.var_names, categories=vocab, name="m")
    return model, train, held


def _library_by_label(counts, labels):
    totals = np.asarray(counts.sum(axis=1)).ravel()
    return {lab: totals[labels == lab].mean() for lab in np.unique(labels)}


def test_each_label_keeps_its_library_sizes_in_every_mode(cvae):
    model, train, _ = cvae
    labels = train.obs["cell_type"].astype(str).to_numpy()
    real = _library_by_label(train.X, labels)
    errors = {}
    for mode in GENERATION_MODES:
        counts, y = model.generate(train.obs, "cell_type", 300, seed=1, mode=mode, cells=train)
        synth = _library_by_label(counts, y)
        errors[mode] = {lab: abs(synth[lab] / real[lab] - 1) for lab in real}
        assert max(errors[mode].values()) < 0.12, (mode, errors[mode])
    # one log-normal prior for every label (no training cells given) misses labels with small or large libraries
    counts, y = model.generate(train.obs, "cell_type", 300, seed=1)
    prior = {lab: abs(v / real[lab] - 1) for lab, v in _library_by_label(counts, y).items()}
    print("library error by label:", {k: {lab: round(e, 3) for lab, e in v.items()} for k, v in errors.items()},
          "one prior:", {lab: round(e, 3) for lab, e in prior.items()})  # fmt: skip
    assert max(prior.values()) > 2 * max(max(e.values()) for e in errors.values())


def test_generation_is_seeded_and_needs_the_training_cells(cvae):
    model, train, _ = cvae
    a, _ = model.generate(train.obs, "cell_type", 20, seed=4, mode="aggregate", cells=train)
    b, _ = model.generate(train.obs, "cell_type", 20, seed=4, mode="aggregate", cells=train)
    c, _ = model.generate(train.obs, "cell_type", 20, seed=5, mode="aggregate", cells=train)
    assert (a != b).nnz == 0 and (a != c).nnz > 0
    with pytest.raises(ValueError, match="needs the training cells"):
        model.generate(train.obs, "cell_type", 5, mode="posterior")
    with pytest.raises(ValueError, match="not one of"):
        model.generate(train.obs, "cell_type", 5, mode="likelihood", cells=train)


def test_posterior_predictive_equals_the_reconstruction_in_expectation(cvae):
    # E[x_rep | x] = l * E_q[rho(z)]: the mean of many replicates against the decoder's mean over as many z ~ q
    model, _, held = cvae
    cells = model.prepare(held[:40])
    reps = 250
    many = model.prepare(held[np.repeat(np.arange(40), reps)])
    replicated = np.concatenate([x for _, x in model.posterior_predictive(many, seed=3, chunk_cells=2000)])
    library = np.asarray(cells.counts.sum(axis=1), dtype=float)
    expected = np.zeros_like(replicated[:40], dtype=float)
    gen = torch.Generator().manual_seed(11)
    for _ in range(reps):
        rho = model.normalized_expression(cells, library_size=1, sample=True, seed=int(gen.seed()) % 2**31)
        expected += library * rho / reps
    got = replicated.reshape(40, reps, -1).mean(1)
    per_gene_got, per_gene_expected = got.sum(0), expected.sum(0)
    enough = per_gene_expected * reps > 300  # genes with at least ~300 expected counts over all replicates
    rel = np.abs(per_gene_got[enough] / per_gene_expected[enough] - 1)
    assert enough.sum() > 100 and np.median(rel) < 0.05 and np.quantile(rel, 0.95) < 0.2, np.quantile(rel, [0.5, 0.95])
    assert np.corrcoef(np.log1p(got.ravel()), np.log1p(expected.ravel()))[0, 1] > 0.95
    again = np.concatenate([x for _, x in model.posterior_predictive(many, seed=3, chunk_cells=2000)])
    assert np.array_equal(again, replicated)  # seeded


def test_discriminator_matches_labels_so_proportions_alone_do_not_tell_cells_apart():
    from scmix.evaluation.synthetic import discriminator, matched_rows

    rng = np.random.default_rng(0)

    def cells(n_a, n_b):  # one generator for both sets: label A around 0, label B around 3
        y = np.array(["A"] * n_a + ["B"] * n_b)
        return rng.normal(np.where(y == "A", 0.0, 3.0)[:, None], 1.0, (len(y), 5)), y

    real, y_real = cells(360, 40)  # the eval set's proportions
    synth, y_synth = cells(200, 200)  # cells_per_label of each
    rows_real, rows_synth = matched_rows(y_real, y_synth, np.random.default_rng(1))
    assert (np.unique(y_real[rows_real], return_counts=True)[1] == [200, 40]).all()
    assert (np.unique(y_synth[rows_synth], return_counts=True)[1] == [200, 40]).all()
    unmatched, _ = discriminator(real, synth, n_estimators=30)
    matched, importance = discriminator(real, synth, y_real=y_real, y_synth=y_synth, n_estimators=30)
    assert unmatched > 0.65  # B-like cells are mostly synthetic: proportions alone give them away
    assert abs(matched - 0.5) < 0.08 and importance.shape == (5,) and np.isclose(importance.sum(), 1.0)
