"""One optimiser step on a minibatch, two ways: eagerly, or captured once as a CUDA graph and replayed.

``EagerStep`` cuts each batch to its own size (CSR rows of any length) and runs forward, loss, backward and Adam
op by op: the CPU path, and the fallback on a GPU. ``GraphedStep`` (CUDA only) cuts batches of fixed shape
(``CellData.fixed_batch``: a set number of stored values, the rest padding) from counts resident on the device,
so the whole step can be captured as a CUDA graph and replayed with only the batch's cell indices copied in: one
launch a step instead of hundreds, no read back to the host inside an epoch. An epoch has at most two batch
shapes (full batches and the last, smaller one), each captured after a few eager steps (``WARMUP``) on a side
stream; the eager steps are training steps like any other. Each keeps its losses on the device (``totals``),
read once an epoch by the trainer.

A model's random draws (the reparameterisation, dropout) come from its own CUDA generator state (``rng``), set
before each of its steps, so several models stepping in turn on one device (``scmix.models.train.fit_many``)
draw exactly what each would draw alone.

Nothing here reads or writes files.
"""

from __future__ import annotations

import contextlib

import torch

WARMUP = 3  # eager steps of a batch shape before it is captured (CUDA's lazy initialisation happens in them)


def _optimise(model, opt, batch, beta, totals: torch.Tensor, *, set_to_none: bool) -> None:
    """Forward, the mean negative ELBO with KL weight ``beta``, backward and Adam on one batch; the batch's summed
    reconstruction and KL added to ``totals`` on the device."""
    out = model(batch)
    loss = (out["recon"] + beta * out["kl"]).mean()
    opt.zero_grad(set_to_none=set_to_none)
    loss.backward()
    opt.step()
    totals += torch.stack([out["recon"].detach().sum(), out["kl"].detach().sum()])


class EagerStep:
    """Forward, loss, backward and Adam op by op on a batch of its own size."""

    graphed = False

    def __init__(self, model, opt, data, device):
        self.model, self.opt, self.data = model, opt, data
        self.totals = torch.zeros(2, device=device)
        self.beta = 1.0

    def begin_epoch(self, beta: float) -> None:
        self.beta = beta
        self.totals.zero_()

    def __call__(self, idx: torch.Tensor) -> None:
        _optimise(self.model, self.opt, self.data.batch(idx), self.beta, self.totals, set_to_none=True)


class _Shape:
    """One batch size's static index buffer, its padded capacity, its eager steps so far and its graph."""

    def __init__(self, n: int, capacity: int, device):
        self.idx = torch.zeros(n, dtype=torch.long, device=device)
        self.capacity = capacity
        self.calls = 0
        self.graph: torch.cuda.CUDAGraph | None = None


class FixedStep:
    """The step on fixed-shape batches (``CellData.fixed_batch``), op by op: what ``GraphedStep`` captures, on
    any device. Gradients live in buffers allocated at the first step and are zeroed in place, and the KL weight
    is a tensor on the device, so the step holds no Python value that changes between steps."""

    graphed = False

    def __init__(self, model, opt, data, device, train_idx: torch.Tensor, batch_size: int, rng=None):
        self.model, self.opt, self.data, self.device, self.rng = model, opt, data, device, rng
        self.totals = torch.zeros(2, device=device)
        self.beta = torch.ones((), device=device)
        sizes = {min(batch_size, len(train_idx)), len(train_idx) % batch_size}
        self.shapes = {n: _Shape(n, data.capacity(train_idx, n), device) for n in sizes if n >= 2}

    def begin_epoch(self, beta: float) -> None:
        self.beta.fill_(beta)
        self.totals.zero_()

    def _compute(self, shape: _Shape) -> None:
        """The step on the cells in ``shape.idx``: every op a graph can capture, and no read back to the host."""
        batch = self.data.fixed_batch(shape.idx, shape.capacity)
        _optimise(self.model, self.opt, batch, self.beta, self.totals, set_to_none=False)

    def _next(self, idx: torch.Tensor) -> _Shape:
        """``idx`` copied into the static index buffer of its shape."""
        shape = self.shapes[idx.numel()]
        shape.idx.copy_(idx)
        return shape

    @contextlib.contextmanager
    def own_rng(self):
        """The model's own CUDA generator state made current for its step (where it has one), and the state that
        was current put back after it, so that another model's seeding never reseeds this one's draws."""
        if self.rng is None:
            yield
            return
        generator = torch.cuda.default_generators[self.device.index or 0]
        previous = generator.graphsafe_get_state()
        generator.graphsafe_set_state(self.rng)
        try:
            yield
        finally:
            generator.graphsafe_set_state(previous)

    def __call__(self, idx: torch.Tensor) -> None:
        shape = self._next(idx)
        with self.own_rng():
            self._run(shape)

    def _run(self, shape: _Shape) -> None:
        self._compute(shape)


class GraphedStep(FixedStep):
    """``FixedStep`` captured per batch shape as a CUDA graph and replayed.

    The graphs of the two shapes share one memory pool; the gradients they write and Adam's state (``capturable``:
    its step count on the device) were allocated before any capture, so neither graph hands out the other's
    memory."""

    graphed = True

    def __init__(self, model, opt, data, device, train_idx: torch.Tensor, batch_size: int, rng=None, log=None):
        super().__init__(model, opt, data, device, train_idx, batch_size, rng)
        self.log = log
        self.failed = ""  # why capturing failed, if it did: the steps then run eagerly
        self.pool = None
        self.side = torch.cuda.Stream(device=device)

    def _run(self, shape: _Shape) -> None:
        """A few steps op by op on a side stream, then the step captured, then replayed."""
        if shape.graph is not None:
            shape.graph.replay()
            return
        if shape.calls < WARMUP or self.failed:
            shape.calls += 1
            self.side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(self.side):
                self._compute(shape)
            torch.cuda.current_stream(self.device).wait_stream(self.side)
            return
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph, pool=self.pool):
                self._compute(shape)  # recorded, not run: the replay below runs it
        except RuntimeError as err:
            self.failed = " ".join(str(err).split())[:300]
            if self.log is not None:
                self.log.warning("the training step could not be captured as a CUDA graph; it runs op by op on "
                                 "fixed-shape batches: %s", self.failed)  # fmt: skip
            torch.cuda.synchronize(self.device)
            self._compute(shape)
            return
        self.pool = graph.pool()
        shape.graph = graph
        graph.replay()


def graph_rng(device: torch.device, seed: int):
    """A CUDA generator state of its own for one model, seeded with its seed (see the module's docstring)."""
    return torch.cuda.default_generators[device.index or 0].clone_state().manual_seed(int(seed))


def make_step(model, opt, data, device: torch.device, train_idx: torch.Tensor, batch_size: int, *,
              graphs: bool, seed: int, log=None):  # fmt: skip
    """A ``GraphedStep`` on a CUDA device when ``graphs`` is on, else an ``EagerStep`` (with a log line saying
    why, where graphs were asked for)."""
    if not graphs or device.type != "cuda":
        return EagerStep(model, opt, data, device)
    try:
        return GraphedStep(model, opt, data, device, train_idx, batch_size, rng=graph_rng(device, seed), log=log)
    except (RuntimeError, AttributeError) as err:  # an older torch without graph-safe generator states
        if log is not None:
            log.info("training eagerly, not as a CUDA graph: %s", " ".join(str(err).split())[:300])
        return EagerStep(model, opt, data, device)
