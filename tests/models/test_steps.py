"""The training step's two forms and several models sharing a device (scmix.models.steps, fit_many).

On the CPU: fixed-shape batches (what a CUDA graph replays) give the same cells, losses and gradients as batches
cut to their own size, for every model variant; a whole training on fixed-shape batches ends where the eager one
does; ``fit_many`` ends each model exactly where ``fit`` alone does. Where a CUDA GPU is visible, the captured
step is held against the eager one and the models sharing the GPU against each alone.
"""

import copy
import logging

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from scmix.models.modules import CellData, build_model
from scmix.models.steps import EagerStep, FixedStep
from scmix.models.train import TrainConfig, _Run, build_and_fit, build_and_fit_many, fit

COVARIATES = {"cell_type": 4, "donor": 3}
VARIANTS = {
    "ldvae-nb": ("ldvae", {}),
    "vae-zinb-latent-library": ("vae", {"likelihood": "zinb", "library": "latent"}),
    "vae-poisson": ("vae", {"likelihood": "poisson"}),
    "vae-nb-gene-batch": ("vae", {"dispersion": "gene-batch", "dispersion_key": "donor"}),
    "vae-gaussian": ("vae", {"likelihood": "gaussian"}),
    "cvae": ("cvae", {"conditions": ["cell_type", "donor"], "condition_dropout": 0.2}),
    "gmvae": ("gmvae", {"n_components": 4}),
}


@pytest.fixture(scope="module")
def pbmc_cells(pbmc3k):
    """600 real PBMC 3k cells on their 400 most variable genes, with cell-type and pseudo-donor codes."""
    from scmix.data.expression import log1p_cp10k
    from scmix.evaluation.metrics import top_variable_genes

    rng = np.random.default_rng(0)
    cells = np.sort(rng.choice(pbmc3k.n_obs, 600, replace=False))
    X = sp.csr_matrix(pbmc3k.X[cells], dtype=np.float32)
    X = X[:, top_variable_genes(log1p_cp10k(X), 400)]
    types = pbmc3k.obs["cell_type"].astype("category").cat.codes.to_numpy()[cells] % 4 + 1
    codes = np.stack([types, rng.integers(1, 4, len(cells))], axis=1)
    return sp.csr_matrix(X), codes


def _data(X, codes, model):
    target = None if model.counts_model else np.log1p(X.toarray())
    return CellData(X, codes=codes, target=target)


def _model(name, n_genes):
    arch, extra = VARIANTS[name]
    torch.manual_seed(0)
    return build_model(arch, n_genes=n_genes, n_latent=6, hidden=[32], covariates=COVARIATES, **extra)


def test_a_fixed_shape_batch_holds_the_same_cells_as_one_cut_to_size(pbmc_cells):
    X, codes = pbmc_cells
    data = CellData(X, codes=codes)
    idx = torch.as_tensor(np.random.default_rng(1).permutation(X.shape[0])[:128])
    capacity = data.capacity(torch.arange(X.shape[0]), 128)
    lengths = np.diff(X.indptr)
    assert capacity == np.sort(lengths)[-128:].sum() > len(data.batch(idx).counts.val)
    cut, fixed = data.batch(idx), data.fixed_batch(idx, capacity)
    assert fixed.counts.val.numel() == capacity and fixed.n_rows == cut.n_rows == 128
    assert torch.equal(fixed.counts.dense(), cut.counts.dense())
    assert torch.equal(fixed.log1p_counts(), cut.log1p_counts())
    assert torch.equal(fixed.counts.row_sums(), cut.counts.row_sums())
    assert torch.equal(fixed.counts.row_log_factorial(), cut.counts.row_log_factorial())
    assert torch.equal(fixed.codes, cut.codes)


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_a_step_on_a_fixed_shape_batch_has_the_losses_and_gradients_of_the_eager_one(pbmc_cells, name):
    X, codes = pbmc_cells
    model = _model(name, X.shape[1])
    data = _data(X, codes, model)
    idx = torch.as_tensor(np.random.default_rng(2).permutation(X.shape[0])[:100])
    grads, outs = [], []
    for batch in (data.batch(idx), data.fixed_batch(idx, data.capacity(torch.arange(X.shape[0]), 100))):
        m = copy.deepcopy(model).train()
        torch.manual_seed(5)  # the same reparameterisation and dropout draws for both
        out = m(batch)
        (out["recon"] + 0.5 * out["kl"]).mean().backward()
        outs.append(out)
        grads.append({k: p.grad for k, p in m.named_parameters() if p.grad is not None})
    for key in ("recon", "kl"):
        torch.testing.assert_close(outs[1][key], outs[0][key], rtol=1e-5, atol=1e-3)
    assert grads[0].keys() == grads[1].keys()
    for k in grads[0]:
        torch.testing.assert_close(grads[1][k], grads[0][k], rtol=1e-4, atol=1e-5, msg=f"{name}: gradient of {k}")


CFG = TrainConfig(epochs=3, batch_size=64, lr=5e-3, kl_warmup_epochs=2, val_fraction=0.1, patience=0, seed=3)


@pytest.mark.parametrize("name", ["ldvae-nb", "cvae", "vae-zinb-latent-library"])
def test_training_on_fixed_shape_batches_ends_where_the_eager_training_does(pbmc_cells, name):
    """The whole fixed-shape step (KL weight as a tensor, gradients zeroed in place, padded batches of the two
    shapes of an epoch) over three epochs, against the eager trainer with the same seed."""
    X, codes = pbmc_cells
    histories, states = [], []
    for fixed in (False, True):
        model = _model(name, X.shape[1])
        run = _Run(model, _data(X, codes, model), CFG)
        assert isinstance(run.step, EagerStep)
        if fixed:
            run.step = FixedStep(model, run.step.opt, run.data, run.device, run.train_idx, CFG.batch_size)
            assert set(run.step.shapes) == {64, run.n_train % 64}
        torch.manual_seed(CFG.seed)
        for _ in run.steps():
            pass
        histories.append(run.history_table())
        states.append(model.state_dict())
    for col in ("train_elbo", "val_elbo", "val_recon"):
        np.testing.assert_allclose(histories[1][col], histories[0][col], rtol=2e-4, err_msg=col)
    for k in states[0]:
        torch.testing.assert_close(states[1][k].float(), states[0][k].float(), rtol=2e-3, atol=2e-4, msg=k)


def test_models_trained_together_end_exactly_as_each_trained_alone(pbmc_cells):
    X, codes = pbmc_cells
    names = ["ldvae-nb", "cvae", "gmvae"]
    archs = [VARIANTS[n][0] for n in names]
    kwargs = [{"n_genes": X.shape[1], "n_latent": 6, "hidden": [32], "covariates": COVARIATES, **VARIANTS[n][1]}
              for n in names]  # fmt: skip
    cfgs = [TrainConfig(**{**CFG.__dict__, "seed": s}) for s in (0, 1, 2)]
    datas = [CellData(X[i::2], codes=codes[i::2]) for i in (0, 1, 0)]  # models of their own cells
    together = build_and_fit_many(archs, kwargs, datas, cfgs)
    for (model, hist), arch, kw, data, cfg in zip(together, archs, kwargs, datas, cfgs, strict=True):
        alone, alone_hist = build_and_fit(arch, kw, data, cfg)
        for k, v in alone.state_dict().items():
            assert torch.equal(model.state_dict()[k], v), (arch, k)
        assert hist.drop(columns=["train_seconds", "seconds"]).equals(
            alone_hist.drop(columns=["train_seconds", "seconds"])
        )


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU visible: the captured step runs there")


@cuda
@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_on_a_gpu_the_captured_step_trains_as_the_fixed_shape_step_run_op_by_op(pbmc_cells, name, caplog):
    """CUDA graphs against the same fixed-shape step op by op, same seed, same generator state."""
    from scmix.models.steps import GraphedStep, graph_rng

    X, codes = pbmc_cells
    cfg = TrainConfig(**{**CFG.__dict__, "epochs": 4, "device": "cuda"})
    histories = []
    for graphed in (True, False):
        model = _model(name, X.shape[1])
        with caplog.at_level(logging.INFO, logger="scmix.models.train"):
            run = _Run(model, _data(X, codes, model), cfg)
        assert isinstance(run.step, GraphedStep), caplog.text
        if not graphed:
            run.step = FixedStep(model, run.step.opt, run.data, run.device, run.train_idx, cfg.batch_size,
                                 rng=graph_rng(run.device, cfg.seed))  # fmt: skip
        for _ in run.steps():
            pass
        if graphed:
            assert not run.step.failed and all(s.graph is not None for s in run.step.shapes.values())
        histories.append(run.history_table())
    for col in ("train_elbo", "val_elbo"):
        np.testing.assert_allclose(histories[0][col], histories[1][col], rtol=1e-3, err_msg=col)


@cuda
def test_on_a_gpu_models_sharing_it_train_as_each_alone(pbmc_cells):
    X, codes = pbmc_cells
    kwargs = {"n_genes": X.shape[1], "n_latent": 6, "hidden": [32]}
    cfgs = [TrainConfig(**{**CFG.__dict__, "seed": s, "device": "cuda"}) for s in range(4)]
    datas = [CellData(X, device="cuda") for _ in cfgs]
    together = build_and_fit_many(["ldvae"] * 4, [kwargs] * 4, datas, cfgs)
    for (model, hist), data, cfg in zip(together, datas, cfgs, strict=True):
        alone, alone_hist = build_and_fit("ldvae", kwargs, data, cfg)
        np.testing.assert_allclose(hist["val_elbo"], alone_hist["val_elbo"], rtol=1e-4)
        for k, v in alone.state_dict().items():
            torch.testing.assert_close(model.state_dict()[k].float(), v.float(), rtol=1e-3, atol=1e-4)


def test_fit_on_the_cpu_is_unchanged_by_the_step_machinery(pbmc_cells):
    """``fit`` is the stepping run driven to its end: the same history as stepping it by hand."""
    X, codes = pbmc_cells
    a, b = _model("ldvae-nb", X.shape[1]), _model("ldvae-nb", X.shape[1])
    hist = fit(a, CellData(X), CFG)
    run = _Run(b, CellData(X), CFG)
    n = sum(1 for _ in run.steps())
    assert n == CFG.epochs * -(-run.n_train // CFG.batch_size) - CFG.epochs * (run.n_train % CFG.batch_size == 1)
    assert hist.drop(columns=["train_seconds", "seconds"]).equals(
        run.history_table().drop(columns=["train_seconds", "seconds"])
    )


@cuda
def test_on_a_gpu_an_epoch_of_captured_steps_never_waits_on_the_host(pbmc_cells):
    """After the first epoch (warm-up and capture of both batch shapes), a whole epoch of steps runs with torch's
    sync debug mode set to raise on any operation that makes the host wait for the GPU."""
    from scmix.models.steps import GraphedStep

    X, codes = pbmc_cells
    model = _model("ldvae-nb", X.shape[1])
    run = _Run(model, _data(X, codes, model), TrainConfig(**{**CFG.__dict__, "device": "cuda"}))
    assert isinstance(run.step, GraphedStep)
    batches = [run.train_idx[start : start + CFG.batch_size] for start in range(0, run.n_train, CFG.batch_size)]
    batches = [b for b in batches if len(b) >= 2]
    for _ in range(4):  # WARMUP eager steps of each shape, then its capture
        run.step.begin_epoch(1.0)
        for idx in batches:
            run.step(idx)
    assert all(s.graph is not None for s in run.step.shapes.values()) and not run.step.failed
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        run.step.begin_epoch(0.5)
        for idx in batches:
            run.step(idx)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert torch.isfinite(run.step.totals).all()
