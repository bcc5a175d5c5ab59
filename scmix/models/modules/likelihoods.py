"""Log-likelihoods of the count models (NB, ZINB, Poisson) and of the Gaussian baseline, and the observation
models a VAE decodes into (``NB``, ``ZINB``, ``Poisson``, ``Gaussian``: each holds its own parameters and gives
the per-cell log-likelihood, P(x = 0) and samples).

Two forms of each log-likelihood:
* ``*_log_prob(x, ...)``: elementwise on dense tensors, the reference formula (tests hold it against
  ``torch.distributions``);
* ``*_cell_log_lik(counts, log_mu, ...)``: summed per cell, with ``counts`` as sparse rows. Every term that
  vanishes at a zero count (``lgamma(x + theta) - lgamma(theta) - lgamma(x + 1)``, ``x * log mu``) is
  computed only where the count is non-zero; the rest is one dense pass over cells x genes.

``NB`` with a per-gene dispersion (the LDVAE's) computes its per-cell log-likelihood from the decoder's logits in
one autograd function with an analytic backward (``nb_cell_log_lik_logits``): the fewest passes over cells x
genes, which take most of a training step on CPU.

``mu`` is the mean count (library size x decoder proportions), ``theta`` the inverse dispersion, ``pi`` the
zero-inflation probability given as logits.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from scmix.models.modules.counts import Batch, SparseRows


def nb_log_prob(x: torch.Tensor, mu: torch.Tensor, theta: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """log NB(x; mu, theta) = lgamma(x + theta) - lgamma(theta) - lgamma(x + 1)
    + theta * log(theta / (theta + mu)) + x * log(mu / (theta + mu))"""
    log_theta_mu = torch.log(theta + mu + eps)
    return (
        torch.lgamma(x + theta)
        - torch.lgamma(theta)
        - torch.lgamma(x + 1.0)
        + theta * (torch.log(theta + eps) - log_theta_mu)
        + x * (torch.log(mu + eps) - log_theta_mu)
    )


def zinb_log_prob(x, mu, theta, pi_logits, eps: float = 1e-8) -> torch.Tensor:
    """log[pi * 1(x = 0) + (1 - pi) * NB(x; mu, theta)], with pi = sigmoid(pi_logits)."""
    log_nb = nb_log_prob(x, mu, theta, eps)
    log_pi, log_not_pi = F.logsigmoid(pi_logits), F.logsigmoid(-pi_logits)
    zero = torch.logaddexp(log_pi, log_not_pi + log_nb)
    return torch.where(x < 0.5, zero, log_not_pi + log_nb)


def poisson_log_prob(x, mu, eps: float = 1e-8) -> torch.Tensor:
    return x * torch.log(mu + eps) - mu - torch.lgamma(x + 1.0)


def gaussian_log_prob(x, mean, log_var) -> torch.Tensor:
    return -0.5 * (math.log(2 * math.pi) + log_var + (x - mean) ** 2 * torch.exp(-log_var))


def _scatter_sum(index: torch.Tensor, values: torch.Tensor, n: int) -> torch.Tensor:
    """(n,) sums of ``values`` per ``index`` (e.g. the gene of each stored count): ``bincount`` on CPU (a serial
    loop, so the order of each sum does not depend on the thread count), ``index_add`` elsewhere."""
    if values.device.type == "cpu":
        return torch.bincount(index, weights=values, minlength=n).to(values.dtype)
    return torch.zeros(n, dtype=values.dtype, device=values.device).index_add_(0, index, values)


class _GeneGather(torch.autograd.Function):
    """``values[col]`` for a per-gene vector, whose backward sums the gradient per gene with ``bincount``: a
    serial loop on CPU, so the sum's order (and a seeded training) does not depend on the thread count, and
    ~80x faster there than the sorted backward of an embedding lookup (which did the same, deterministically,
    at a third of an LDVAE's epoch). The backward of advanced indexing (``values[col]``) accumulates the
    repeats in a thread-dependent order on CPU: two trainings with one seed differed."""

    @staticmethod
    def forward(ctx, values, col):
        ctx.save_for_backward(col)
        ctx.n = values.shape[0]
        return values.index_select(0, col)

    @staticmethod
    def backward(ctx, grad):
        (col,) = ctx.saved_tensors
        return _scatter_sum(col, grad, ctx.n), None


def _at_counts(values: torch.Tensor, counts: SparseRows) -> torch.Tensor:
    """The entries of a per-gene (G,) or per-cell-and-gene (cells, G) tensor where counts are stored."""
    if values.dim() == 1:
        return _GeneGather.apply(values, counts.col)
    return values.reshape(-1)[counts.flat_index]  # each (cell, gene) at most once: no repeats to accumulate


def digamma_above_one(y: torch.Tensor) -> torch.Tensor:
    """psi(y) for y >= 1: psi(y) = psi(y + 2) - 1/y - 1/(y + 1), with the asymptotic series at w = y + 2 >= 3
    to the w^-12 term (error below 2e-8). About 3x faster than ``torch.digamma`` on CPU (single-threaded
    there); used for lgamma(x + theta) at non-zero counts, where x >= 1."""
    w = y + 2.0
    inv2 = torch.reciprocal(w * w)
    series = inv2 * (
        1 / 12 - inv2 * (1 / 120 - inv2 * (1 / 252 - inv2 * (1 / 240 - inv2 * (1 / 132 - inv2 * 691 / 32760))))
    )
    return torch.log(w) - 0.5 / w - series - torch.reciprocal(y) - torch.reciprocal(y + 1.0)


class _LgammaAboveOne(torch.autograd.Function):
    """lgamma(y) for y >= 1 with the fast digamma above as its derivative."""

    @staticmethod
    def forward(ctx, y):
        ctx.save_for_backward(y)
        return torch.lgamma(y)

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        return grad * digamma_above_one(y)


def _nb_nonzero(counts: SparseRows, log_mu_nz, theta, log_theta):
    """Per stored count: lgamma(x + theta) - lgamma(theta) - lgamma(x + 1) + x * log(mu / (theta + mu)),
    and log(theta + mu) there (everything on non-zeros only)."""
    x = counts.val
    log_th = _at_counts(log_theta, counts)
    th = torch.exp(log_th)
    log_theta_mu = torch.logaddexp(log_th, log_mu_nz)
    lg_theta = _at_counts(torch.lgamma(theta), counts)  # lgamma of G values (not nnz) when theta is per gene
    value = _LgammaAboveOne.apply(x + th) - lg_theta + x * (log_mu_nz - log_theta_mu)
    return value, log_th - log_theta_mu


def nb_cell_log_lik(counts: SparseRows, log_mu: torch.Tensor, log_theta: torch.Tensor) -> torch.Tensor:
    """Per-cell sum over genes of log NB; ``log_theta`` per gene (G,) or per cell and gene (cells, G).

    The dense part is sum_g theta_g * log(theta_g / (theta_g + mu_cg)), one pass over cells x genes (a
    matrix-vector product when theta is per gene); the rest is computed where counts are non-zero."""
    theta = torch.exp(log_theta)
    log_theta_mu = torch.log(theta + torch.exp(log_mu))
    if theta.dim() == 1:
        dense = (theta * log_theta).sum() - log_theta_mu @ theta
    else:
        dense = (theta * (log_theta - log_theta_mu)).sum(1)
    nonzero, _ = _nb_nonzero(counts, _at_counts(log_mu, counts), theta, log_theta)
    return dense + counts.segment_sum(nonzero) - counts.row_log_factorial()


class _NBFromLogits(torch.autograd.Function):
    """Per-cell log NB of sparse counts from the decoder's logits, with a per-gene inverse dispersion and an
    analytic backward: mu = l * softmax(logits) and log(theta + mu) are computed once over cells x genes, and
    the backward reuses them (no log_softmax, exp and log nodes, each with its own pass and buffer).

    With t = theta + mu and w the upstream gradient per cell:
    * d ll / d log mu = theta * (x - mu) / t, hence d ll / d logits = that - softmax * (its row sum) and
      d ll / d log l = its row sum;
    * d ll / d log theta = theta * [log theta + 1 - log t - (theta + x) / t] + at stored counts
      theta * [digamma(x + theta) - digamma(theta)].
    Every sum is independent of the thread count on CPU: per cell over stored counts a segment sum, per gene over
    stored counts a ``bincount``, over cells x genes row and column sums."""

    @staticmethod
    def forward(ctx, logits, log_l, log_theta, counts):
        n_rows, n_genes = logits.shape
        theta = torch.exp(log_theta)
        # e = exp(logits - shift) in place in one buffer (on CPU a pass into a fresh cells x genes buffer costs more
        # than one in place), t = theta + mu = theta + e * l / sum(e) in one pass
        shift = logits.amax(1, keepdim=True)
        e = torch.sub(logits, shift).exp_()
        log_scale = log_l - torch.log(e.sum(1, keepdim=True))  # log(l / sum_g exp(logit - shift)): mu = e * scale
        t = torch.addcmul(theta, e, torch.exp(log_scale))
        log_t = torch.log(t)
        # at stored counts: lgamma(x + theta) - lgamma(theta) + x * (log mu - log t), with
        # sum x * log mu = sum x * logit + (log_scale - shift) * sum x per cell
        col, x = counts.col, counts.val.to(logits.dtype)
        # a fixed-shape batch's padding row (counts 0 at gene 0) adds nothing: its values read the last cell's
        row = counts.row.clamp(max=n_rows - 1) if counts.padded else counts.row
        flat = counts.flat_index  # position in the row-major cells x genes arrays
        th = theta.index_select(0, col)
        xth = x + th
        log_t_nz = torch.take(log_t, flat)
        at_counts = (torch.lgamma(xth) - torch.lgamma(theta).index_select(0, col)
                     + x * (torch.take(logits, flat) - log_t_nz))  # fmt: skip
        sums, library = counts.segment_sum(at_counts), counts.segment_sum(x)
        # theta * log t, in place; its row sums (not a matrix-vector product: MKL's gemv sums in a different order
        # on one thread than on two)
        theta_log_t = log_t.mul_(theta)
        per_cell = sums + (log_scale - shift)[:, 0] * library + (theta * log_theta).sum() - theta_log_t.sum(1)
        ctx.save_for_backward(log_l, log_theta)
        ctx.dense = theta, e, t, theta_log_t
        ctx.log_scale = log_scale
        ctx.stored = row, col, x, flat, th, xth, log_t_nz
        ctx.real = counts.row < n_rows if counts.padded else None
        return per_cell - counts.row_log_factorial()[:n_rows]

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, w):
        log_l, log_theta = ctx.saved_tensors
        if ctx.dense is None:
            raise RuntimeError("the fused NB likelihood's backward runs once (it reuses its buffers in place)")
        (theta, e, t, theta_log_t), (row, col, x, flat, th, xth, log_t_nz) = ctx.dense, ctx.stored
        ctx.dense = None  # t and theta_log_t are reused in place below
        w = w.contiguous()
        # a training loss is a mean over cells: the same upstream gradient w0 for every cell, folded into the
        # coefficients (two passes over cells x genes fewer); any other w per cell
        w0 = float(w[0]) if w.device.type == "cpu" and bool((w == w[0]).all()) else None
        scale = 1.0 if w0 is None else w0
        w_col = w[:, None]
        grad_logits = grad_log_l = grad_log_theta = None
        x_over_t = x * torch.exp(-log_t_nz)  # x / (theta + mu) at stored counts
        # scale * (-theta * mu / t), the zero-count part of d ll / d log mu
        g = torch.addcmul(-scale * theta, t.reciprocal_(), scale * theta * theta, out=t)
        if ctx.needs_input_grad[2]:
            # d / d log theta = theta log theta sum(w) - sum_c w (theta log t + g) + at stored counts
            # theta (digamma(x + theta) - digamma(theta) - x / t); the sums over cells are column sums (thread-count
            # independent, unlike MKL's gemv)
            at_counts = digamma_above_one(xth) - torch.digamma(theta).index_select(0, col) - x_over_t
            if w0 is None:
                w_nz = w.index_select(0, row)
                if ctx.real is not None:  # the padding row's stored zero gets no weight
                    w_nz = torch.where(ctx.real, w_nz, 0.0)
                at_genes = _scatter_sum(col, w_nz * at_counts, theta.numel())
                over_cells = theta_log_t.add_(g).mul_(w_col).sum(0)
            else:
                if ctx.real is not None:
                    at_counts = torch.where(ctx.real, at_counts, 0.0)
                at_genes = w0 * _scatter_sum(col, at_counts, theta.numel())
                over_cells = w0 * theta_log_t.sum(0) + g.sum(0)
            grad_log_theta = theta * (log_theta * w.sum() + at_genes) - over_cells
        if ctx.needs_input_grad[0] or ctx.needs_input_grad[1]:
            at_counts = x_over_t * th if w0 is None else (x_over_t * th).mul_(w0)
            g.reshape(-1).index_add_(0, flat, at_counts)  # + scale * x * theta / t at stored counts (each once)
            row_sum = g.sum(1, keepdim=True)
            w_row_sum = row_sum if w0 is not None else w_col * row_sum  # w * the row sum of d ll / d log mu
            if ctx.needs_input_grad[1]:
                grad_log_l = w_row_sum
            if ctx.needs_input_grad[0]:
                # softmax = e * scale / l: subtract softmax * row sum, scaled by the upstream gradient
                g = g if w0 is not None else g.mul_(w_col)
                grad_logits = g.addcmul_(e, -w_row_sum * torch.exp(ctx.log_scale - log_l))
        return grad_logits, grad_log_l, grad_log_theta, None


def nb_cell_log_lik_logits(counts: SparseRows, logits: torch.Tensor, log_l: torch.Tensor,
                           log_theta: torch.Tensor) -> torch.Tensor:  # fmt: skip
    """``nb_cell_log_lik(counts, log_l + log_softmax(logits), log_theta)``, fused (``_NBFromLogits``) when theta is
    per gene; ``log_l`` is (cells, 1)."""
    if log_theta.dim() != 1:
        return nb_cell_log_lik(counts, log_l + torch.log_softmax(logits, dim=1), log_theta)
    return _NBFromLogits.apply(logits, log_l.to(logits.dtype), log_theta, counts)


def zinb_cell_log_lik(counts: SparseRows, log_mu, log_theta, pi_logits) -> torch.Tensor:
    """Per-cell sum of log ZINB: the zero case over all genes, corrected where counts are non-zero."""
    theta = torch.exp(log_theta)
    log_nb_zero = nb_log_zero(log_mu, log_theta, theta)
    log_zero = torch.logaddexp(F.logsigmoid(pi_logits), F.logsigmoid(-pi_logits) + log_nb_zero)
    nb_nz, log_ratio = _nb_nonzero(counts, _at_counts(log_mu, counts), theta, log_theta)
    nb_nz = nb_nz - torch.lgamma(counts.val + 1.0)
    th = _at_counts(theta, counts)
    pi_nz = _at_counts(pi_logits, counts)
    log_nb = nb_nz + th * log_ratio
    nonzero = F.logsigmoid(-pi_nz) + log_nb - _at_counts(log_zero, counts)
    return log_zero.sum(1) + counts.segment_sum(nonzero)


def poisson_cell_log_lik(counts: SparseRows, log_mu) -> torch.Tensor:
    x = counts.val
    sparse = x * _at_counts(log_mu, counts)
    return counts.segment_sum(sparse) - counts.row_log_factorial() - torch.exp(log_mu).sum(1)


def gaussian_cell_log_lik(target: torch.Tensor, mean: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    return gaussian_log_prob(target, mean, log_var).sum(1)


# -- observation models ---------------------------------------------------------------------------------------
def nb_log_zero(log_mu: torch.Tensor, log_theta: torch.Tensor, theta: torch.Tensor | None = None) -> torch.Tensor:
    """log NB(0; mu, theta) = theta * log(theta / (theta + mu)), elementwise (``theta``: exp(log_theta), if the
    caller has it)."""
    theta = torch.exp(log_theta) if theta is None else theta
    return theta * (log_theta - torch.log(theta + torch.exp(log_mu)))


class Likelihood(nn.Module):
    """A decoder's observation model: its own parameters, the per-cell log-likelihood of a batch, P(x = 0) and
    sampling. ``out`` is the decoder's output: ``logits`` (log proportions up to a constant for count models,
    the mean for the Gaussian) plus the per-cell parameters of ``heads``; ``log_l`` the log library size
    (count models; ``None`` otherwise)."""

    counts = True  # a model of raw counts, with a library size

    def __init__(self, n_genes: int, n_hidden: int, dispersion_rows: int = 1, dispersion_col: int | None = None):
        super().__init__()

    def heads(self, h: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-cell parameters read off the decoder's last hidden layer beside the logits."""
        return {}

    def cell_log_lik(self, batch: Batch, out: dict, log_l) -> torch.Tensor:
        raise NotImplementedError

    def zero_probability(self, batch: Batch, out: dict, log_l) -> torch.Tensor:
        raise NotImplementedError

    def sample(self, batch: Batch | None, out: dict, log_l) -> torch.Tensor:
        raise NotImplementedError

    @staticmethod
    def log_mean(out: dict, log_l: torch.Tensor) -> torch.Tensor:
        """log mu = log library + log softmax(logits), per cell and gene."""
        return log_l + torch.log_softmax(out["logits"], dim=1)


class Poisson(Likelihood):
    def cell_log_lik(self, batch, out, log_l):
        return poisson_cell_log_lik(batch.counts, self.log_mean(out, log_l))

    def zero_probability(self, batch, out, log_l):
        return torch.exp(-torch.exp(self.log_mean(out, log_l)))

    def sample(self, batch, out, log_l):
        return torch.poisson(torch.exp(self.log_mean(out, log_l)))


class NB(Likelihood):
    """Negative binomial with inverse dispersion theta per gene, or per gene and batch (``dispersion_col``: the
    batch's column among a Batch's codes; rows 1..K of ``log_theta`` are the known batches, an unseen batch
    (code 0) gets their mean)."""

    def __init__(self, n_genes: int, n_hidden: int, dispersion_rows: int = 1, dispersion_col: int | None = None):
        super().__init__(n_genes, n_hidden)
        self.log_theta = nn.Parameter(torch.zeros(dispersion_rows, n_genes))
        self.dispersion_col = dispersion_col

    def log_theta_of(self, batch: Batch | None) -> torch.Tensor:
        """log theta per gene (G,), or per cell and gene (cells, G) for a per-batch dispersion."""
        if self.dispersion_col is None:
            return self.log_theta[0]
        table = torch.cat([self.log_theta.mean(0, keepdim=True), self.log_theta], dim=0)
        # an embedding lookup, not table[codes]: the backward of advanced indexing accumulates into the table
        # rows in a thread-dependent order on CPU, so two runs with the same seed trained different models
        return nn.functional.embedding(batch.codes[:, self.dispersion_col], table)

    def cell_log_lik(self, batch, out, log_l):
        return nb_cell_log_lik_logits(batch.counts, out["logits"], log_l, self.log_theta_of(batch))

    def zero_probability(self, batch, out, log_l):
        return torch.exp(nb_log_zero(self.log_mean(out, log_l), self.log_theta_of(batch)))

    def sample(self, batch, out, log_l):
        """Gamma-Poisson draws: rate ~ Gamma(theta, theta / mu), counts ~ Poisson(rate)."""
        mu = torch.exp(self.log_mean(out, log_l))
        theta = torch.exp(self.log_theta_of(batch))
        return torch.poisson(torch.distributions.Gamma(theta, theta / mu.clamp(min=1e-8)).sample())


class ZINB(NB):
    """NB with a per-cell-and-gene zero-inflation probability pi = sigmoid(pi_logits) from the decoder."""

    def __init__(self, n_genes: int, n_hidden: int, dispersion_rows: int = 1, dispersion_col: int | None = None):
        super().__init__(n_genes, n_hidden, dispersion_rows, dispersion_col)
        self.pi = nn.Linear(n_hidden, n_genes)

    def heads(self, h):
        return {"pi_logits": self.pi(h)}

    def cell_log_lik(self, batch, out, log_l):
        log_mu = self.log_mean(out, log_l)
        return zinb_cell_log_lik(batch.counts, log_mu, self.log_theta_of(batch), out["pi_logits"])

    def zero_probability(self, batch, out, log_l):
        pi = torch.sigmoid(out["pi_logits"])
        return pi + (1.0 - pi) * super().zero_probability(batch, out, log_l)

    def sample(self, batch, out, log_l):
        counts = super().sample(batch, out, log_l)
        return counts * (torch.rand_like(counts) >= torch.sigmoid(out["pi_logits"]))


class Gaussian(Likelihood):
    """The baseline on a transformed input (``Batch.target``): mean from the decoder, a variance per gene."""

    counts = False

    def __init__(self, n_genes: int, n_hidden: int, dispersion_rows: int = 1, dispersion_col: int | None = None):
        super().__init__(n_genes, n_hidden)
        self.log_var = nn.Parameter(torch.zeros(n_genes))

    def cell_log_lik(self, batch, out, log_l):
        return gaussian_cell_log_lik(batch.target, out["logits"], self.log_var)

    def zero_probability(self, batch, out, log_l):
        raise ValueError("a Gaussian model has no probability of a zero count")

    def sample(self, batch, out, log_l):
        return out["logits"] + torch.randn_like(out["logits"]) * torch.exp(0.5 * self.log_var)


LIKELIHOOD_CLASSES: dict[str, type[Likelihood]] = {"nb": NB, "zinb": ZINB, "poisson": Poisson, "gaussian": Gaussian}
