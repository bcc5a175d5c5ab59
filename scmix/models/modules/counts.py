"""Minibatches of raw counts that stay sparse until the device, and the cells they are cut from.

A count likelihood only needs its ``lgamma`` and ``x * log(mu)`` terms where a count is non-zero, so the
counts travel as compressed sparse rows (CSR) and each batch is a vectorised gather of rows; nothing here
reads files or knows about AnnData.

Training runs in float32. Evaluation may cut its batches in float64 (``CellData.batches(dtype=torch.float64)``
with the module in float64): a deep cell's log-likelihood is a sum of terms of size ~1e7 (its ``lgamma(x + 1)``
alone), where float32's spacing is 0.5 to 1 nat, so per-cell sums in float32 come out quantised.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch


@dataclass
class SparseRows:
    """A few cells' counts as CSR tensors, plus the row index of every stored value.

    A fixed-shape batch (``CellData.fixed_batch``, for a training step captured once and replayed) holds a set
    number of stored values: its CSR has one more row than cells (``padded``), a padding row of zeros at col 0
    that every per-cell sum and dense view leaves out.
    """

    crow: torch.Tensor  # (n_rows + 1 [+ 1 padding row],) int64
    col: torch.Tensor  # (nnz,) int64
    val: torch.Tensor  # (nnz,) float32 (float64 at evaluation)
    n_genes: int
    log_factorial: torch.Tensor | None = None  # (n_rows,) sum of lgamma(x + 1) per cell, if precomputed
    padded: bool = False  # the last CSR row is padding, not a cell
    row: torch.Tensor | None = None  # (nnz,) the CSR row of each stored value, if the caller has it

    def __post_init__(self):
        if self.row is None:
            lengths = self.crow[1:] - self.crow[:-1]
            self.row = torch.repeat_interleave(
                torch.arange(len(lengths), device=self.crow.device), lengths, output_size=self.val.numel()
            )

    @property
    def n_slots(self) -> int:
        """CSR rows, the padding row included."""
        return self.crow.numel() - 1

    @property
    def n_rows(self) -> int:
        """Cells."""
        return self.n_slots - int(self.padded)

    def row_log_factorial(self) -> torch.Tensor:
        """Per cell, sum of lgamma(x + 1) over its counts: the data-only term of count likelihoods."""
        if self.log_factorial is None:
            self.log_factorial = self.segment_sum(torch.lgamma(self.val + 1.0))
        return self.log_factorial

    @property
    def flat_index(self) -> torch.Tensor:
        """Position of each stored value in the row-major dense (cells x genes) matrix, for gathering from it;
        padding reads the last cell's entry (a finite value that no per-cell sum keeps)."""
        if self.padded:
            return self.row.clamp(max=self.n_rows - 1) * self.n_genes + self.col
        return self.row * self.n_genes + self.col

    def dense(self, values: torch.Tensor | None = None) -> torch.Tensor:
        """The dense matrix of the stored values (or of ``values``, one per stored count, e.g. log1p)."""
        out = torch.zeros(self.n_slots * self.n_genes, dtype=self.val.dtype, device=self.val.device)
        out[self.row * self.n_genes + self.col] = self.val if values is None else values
        return out.view(self.n_slots, self.n_genes)[: self.n_rows]

    def row_sums(self) -> torch.Tensor:
        return self.segment_sum(self.val)

    def segment_sum(self, values: torch.Tensor) -> torch.Tensor:
        """Sum per cell of one value per stored count. On the CPU a segment sum per CSR row, each row summed in
        storage order (the same with any thread count, and ~4x faster there than ``index_add``); elsewhere
        ``index_add`` by row (which a CUDA graph captures)."""
        if values.device.type == "cpu":
            out = torch.segment_reduce(values, "sum", offsets=self.crow)
        else:
            out = torch.zeros(self.n_slots, dtype=values.dtype, device=values.device).index_add(0, self.row, values)
        return out[: self.n_rows] if self.padded else out

    @classmethod
    def from_dense(cls, x: torch.Tensor) -> SparseRows:
        rows, cols = torch.nonzero(x, as_tuple=True)
        crow = torch.zeros(x.shape[0] + 1, dtype=torch.long, device=x.device)
        crow[1:] = torch.cumsum(torch.bincount(rows, minlength=x.shape[0]), 0)
        return cls(crow, cols, x[rows, cols].to(torch.float32), x.shape[1])


@dataclass
class Batch:
    """What a model sees of a minibatch: counts (sparse), codes of its conditions, a transformed input."""

    counts: SparseRows
    codes: torch.Tensor | None = None  # (n_rows, n_conditions) int64; 0 means unknown
    target: torch.Tensor | None = None  # (n_rows, n_genes) float32, for models of transformed data

    @property
    def n_rows(self) -> int:
        return self.counts.n_rows

    def dense_counts(self) -> torch.Tensor:
        if not hasattr(self, "_dense"):
            self._dense = self.counts.dense()
        return self._dense

    def log1p_counts(self) -> torch.Tensor:
        """Dense log1p(counts), with log1p taken on the stored values only."""
        if hasattr(self, "_dense"):
            return torch.log1p(self._dense)
        return self.counts.dense(torch.log1p(self.counts.val))

    @classmethod
    def from_dense(cls, x: torch.Tensor, codes=None, target=None) -> Batch:
        b = cls(SparseRows.from_dense(x), codes, target)
        b._dense = x.to(torch.float32)
        return b


def _row_log_factorial64(crow: torch.Tensor, val: torch.Tensor, chunk: int = 1 << 24) -> torch.Tensor:
    """Per cell, sum of lgamma(x + 1) accumulated in float64 (a deep cell's float32 sum is off by a nat or
    more), a chunk of stored values at a time so that no float64 copy of all counts is made."""
    n_rows = crow.numel() - 1
    lengths = crow[1:] - crow[:-1]
    row = torch.repeat_interleave(torch.arange(n_rows, device=val.device), lengths, output_size=val.numel())
    out = torch.zeros(n_rows, dtype=torch.float64, device=val.device)
    for start in range(0, val.numel(), chunk):
        part = slice(start, start + chunk)
        out.index_add_(0, row[part], torch.lgamma(val[part].double() + 1.0))
    return out


class CellData:
    """All cells of a training or evaluation matrix, resident on one device; ``batch(idx)`` cuts a Batch."""

    def __init__(self, X, *, codes=None, target=None, device="cpu"):
        X = sp.csr_matrix(X)
        X.sort_indices()
        device = torch.device(device)
        self.n_cells, self.n_genes = X.shape
        self.device = device
        self.crow = torch.as_tensor(X.indptr.astype(np.int64), device=device)
        self.col = torch.as_tensor(X.indices.astype(np.int64), device=device)
        self.val = torch.as_tensor(X.data.astype(np.float32), device=device)
        self._val64 = None
        self.codes = None if codes is None else torch.as_tensor(np.asarray(codes, dtype=np.int64), device=device)
        if self.codes is not None and self.codes.ndim == 1:
            self.codes = self.codes[:, None]
        self.target = None if target is None else torch.as_tensor(np.asarray(target, dtype=np.float32), device=device)
        self.log_factorial64 = _row_log_factorial64(self.crow, self.val)
        self.log_factorial = self.log_factorial64.float()

    def __len__(self) -> int:
        return self.n_cells

    def batch(self, idx, dtype: torch.dtype = torch.float32) -> Batch:
        """The cells ``idx`` as a Batch; ``dtype`` float64 gives counts, log factorials and a transformed
        input in float64 (for a module in float64)."""
        idx = torch.as_tensor(idx, dtype=torch.long, device=self.device)
        wide = dtype == torch.float64
        if wide and self._val64 is None:
            self._val64 = self.val.double()
        starts, ends = self.crow[idx], self.crow[idx + 1]
        lengths = ends - starts
        crow = torch.zeros(len(idx) + 1, dtype=torch.long, device=self.device)
        torch.cumsum(lengths, 0, out=crow[1:])
        total = int(crow[-1])
        pos = torch.arange(total, device=self.device) + torch.repeat_interleave(
            starts - crow[:-1], lengths, output_size=total
        )
        val, log_factorial = (self._val64, self.log_factorial64) if wide else (self.val, self.log_factorial)
        rows = SparseRows(crow, self.col[pos], val[pos], self.n_genes, log_factorial[idx])
        target = None if self.target is None else self.target[idx].to(dtype)
        return Batch(rows, None if self.codes is None else self.codes[idx], target)

    def capacity(self, idx, batch_size: int) -> int:
        """Stored values a fixed-shape batch of ``batch_size`` of the cells ``idx`` needs: the sum of the
        ``batch_size`` longest of their rows (one host read, before training)."""
        idx = torch.as_tensor(idx, dtype=torch.long, device=self.device)
        lengths = self.crow[idx + 1] - self.crow[idx]
        return max(int(torch.topk(lengths, min(batch_size, len(idx))).values.sum()), 1)

    def fixed_batch(self, idx: torch.Tensor, capacity: int) -> Batch:
        """The cells ``idx`` as a Batch of fixed shape: ``capacity`` stored values (``capacity()``), the unused
        ones padding. Shapes depend only on ``len(idx)`` and ``capacity`` and nothing is read back to the host,
        so a training step built on it can be captured once and replayed (a CUDA graph)."""
        n = idx.numel()
        starts = self.crow[idx]
        lengths = self.crow[idx + 1] - starts
        lengths = torch.cat([lengths, (capacity - lengths.sum()).reshape(1)])  # the padding row's share
        crow = torch.zeros(n + 2, dtype=torch.long, device=self.device)
        torch.cumsum(lengths, 0, out=crow[1:])
        row = torch.repeat_interleave(torch.arange(n + 1, device=self.device), lengths, output_size=capacity)
        real = row < n
        starts = torch.cat([starts, starts.new_zeros(1)])
        pos = (starts[row] + torch.arange(capacity, device=self.device) - crow[row]).clamp(max=self.val.numel() - 1)
        val = torch.where(real, self.val[pos], 0.0)
        col = torch.where(real, self.col[pos], 0)
        rows = SparseRows(crow, col, val, self.n_genes, self.log_factorial[idx], padded=True, row=row)
        target = None if self.target is None else self.target[idx]
        return Batch(rows, None if self.codes is None else self.codes[idx], target)

    def batches(self, batch_size: int, dtype: torch.dtype = torch.float32):
        """All cells in order, in batches (for evaluation)."""
        for start in range(0, self.n_cells, batch_size):
            yield self.batch(torch.arange(start, min(start + batch_size, self.n_cells)), dtype=dtype)
