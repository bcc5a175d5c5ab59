"""A FLOP-based lower bound on the seconds of one training epoch of a count VAE (the LDVAE of
``train_speed.py``), from the model's shape and two rates measured on this machine.

The arithmetic one minibatch step must do, counted as it has to be computed at best:

* matrix products, in floating-point operations (2 per multiply-add):
  - the first encoder layer on log1p(counts), computed on the stored counts only: 2 x nnz x H forward and
    2 x nnz x H for the weight gradient (the input gets no gradient);
  - every other dense layer (in -> out) over B cells: 3 x 2 x B x in x out (forward, input gradient, weight
    gradient), the z mean and log-variance heads and the decoder (latent -> genes) included;
* elementwise work, in element operations (one op = one pass of one elementwise function over one element):
  - per cell x gene (B x G of them) the decoder's and the NB likelihood's passes: forward 5 (exp of the
    logits, the normalisation to mu, log(theta + mu), the sum with theta, the decoder bias), backward 7 (1 / t,
    the gradient theta (x - mu) / t, its row sum, the softmax correction, the column sums for theta and for the
    decoder bias);
  - per stored count 14 (log1p of the input, lgamma(x + theta), x log mu and x log t, the gathers at the
    stored positions forward; digamma(x + theta), x / t, the scatter of the gradient backward);
  - per hidden unit and cell 15 (bias, batch norm, ReLU and dropout forward and backward);
  - per parameter 4 for Adam (the two moment updates, the step and the parameter update).

Matrix FLOPs are divided by a GEMM rate and element operations by an elementwise rate, both measured in the
same process on the same threads (``measure_rates``): the rate of ``torch.mm`` on the first layer's dense shape
(cells x genes by genes x hidden, near the machine's peak) and the rate of ``torch.exp`` / ``torch.log`` over a
cells x genes tensor. Transcendental functions, sparse gathers and reductions are counted at the rate of an
``exp`` pass and every FLOP at a large GEMM's rate, so the figure is a bound the code can approach, not reach:
it leaves out what a step costs beyond arithmetic (Python and dispatch per op, OpenMP wake-ups, the batch's
gather from the full matrix, memory allocation).
"""

from __future__ import annotations

import math
import time

import torch


def step_work(genes: int, hidden: list[int], latent: int, batch: int, nnz_per_cell: float,
              likelihood: str = "nb") -> dict[str, float]:  # fmt: skip
    """Matrix FLOPs and elementwise operations of one training step (forward, backward, Adam) of an LDVAE
    (MLP encoder ``hidden``, linear decoder) on ``batch`` cells with ``nnz_per_cell`` stored counts each."""
    if likelihood != "nb":
        raise ValueError(f"the estimate counts the NB likelihood only, not {likelihood!r}")
    nnz = batch * nnz_per_cell
    sizes = [int(h) for h in hidden]
    flops = 2 * nnz * sizes[0] * 2  # first layer on stored counts: forward and weight gradient
    for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True):
        flops += 3 * 2 * batch * n_in * n_out
    flops += 3 * 2 * batch * sizes[-1] * 2 * latent  # z mean and log variance
    flops += 3 * 2 * batch * latent * genes  # linear decoder
    params = genes * sizes[0] + sizes[0]  # first layer
    params += sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:], strict=True))
    params += 2 * sum(sizes)  # batch norm scale and shift
    params += 2 * (sizes[-1] * latent + latent) + latent * genes + genes + genes  # heads, decoder, log theta
    elementwise = (
        12 * batch * genes  # decoder + NB over cells x genes, forward 5 and backward 7
        + 14 * nnz  # at stored counts
        + 15 * batch * sum(sizes)  # hidden layers
        + 4 * params  # Adam
    )
    return {"matmul_flops": float(flops), "elementwise_ops": float(elementwise), "params": float(params)}


def epoch_seconds(*, genes: int, hidden: list[int], latent: int, batch: int, cells: int, nnz_per_cell: float,
                  gemm_flops_per_s: float, elementwise_per_s: float, likelihood: str = "nb") -> dict:  # fmt: skip
    """Lower bound on the seconds of one epoch over ``cells`` training cells in batches of ``batch``: the
    arithmetic of ``step_work`` per step at the measured rates."""
    work = step_work(genes, hidden, latent, batch, nnz_per_cell, likelihood)
    steps = math.ceil(cells / batch)
    matmul = steps * work["matmul_flops"] / gemm_flops_per_s
    elementwise = steps * work["elementwise_ops"] / elementwise_per_s
    return {"seconds": matmul + elementwise, "matmul_seconds": matmul, "elementwise_seconds": elementwise,
            "steps": steps, **work}  # fmt: skip


def _best_seconds(fn, repeats: int = 7, inner: int = 10, sync=lambda: None) -> float:
    fn()
    sync()
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        sync()
        best = min(best, (time.perf_counter() - t0) / inner)
    return best


def measure_rates(genes: int, hidden: int, batch: int, dtype: torch.dtype = torch.float32,
                  device: str = "cpu") -> dict[str, float]:  # fmt: skip
    """The GEMM rate (FLOP/s of ``torch.mm``, cells x genes by genes x hidden) and the elementwise rate
    (elements/s of ``torch.exp`` and ``torch.log`` into a preallocated cells x genes tensor, their mean time), on
    the threads torch has now, or on a CUDA ``device`` (timed to its synchronisation); the best of a few repeats."""
    g = torch.Generator().manual_seed(0)
    a = torch.rand(batch, genes, generator=g, dtype=dtype).to(device)
    b = torch.rand(genes, hidden, generator=g, dtype=dtype).to(device)
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
    gemm = 2 * batch * genes * hidden / _best_seconds(lambda: torch.mm(a, b), sync=sync)
    out = torch.empty_like(a)
    seconds = 0.5 * (_best_seconds(lambda: torch.exp(a, out=out), sync=sync)
                     + _best_seconds(lambda: torch.log(a, out=out), sync=sync))  # fmt: skip
    return {"gemm_flops_per_s": gemm, "elementwise_per_s": a.numel() / seconds, "threads": torch.get_num_threads()}
