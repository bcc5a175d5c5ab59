"""How torch's OpenMP threads wait between parallel regions: briefly, so that a job sharing its cores with other
work does not stall.

GNU OpenMP (``libgomp``, what torch's Linux wheels use) spins a waiting thread for 300,000 iterations before
it sleeps. On a machine whose cores are busy with other jobs, the spinning threads take the cores the working
thread needs: an LDVAE batch (128 cells x 5,000 genes, 2 threads, two busy-looping processes beside it) took
310 ms with the default and 58 ms with ``GOMP_SPINCOUNT=3000``. On a quiet machine the short wait costs more
(each op's parallel region wakes a sleeping thread): an LDVAE epoch of 30,000 x 5,000 took 2.10 s with 3,000
and 1.63 s with the default, against 4.78 s and 8.28 s beside two busy loops (``docs/benchmarks.md``). The
workflow sets it for its jobs unless the environment already does; it has to be in the environment before torch
is imported, so this module imports nothing heavy.
"""

from __future__ import annotations

import os

WAITING = {"GOMP_SPINCOUNT": "3000"}


def wait_briefly(environ=os.environ) -> dict[str, str]:
    """Put ``WAITING`` into ``environ`` where it has no value yet; returns what is in effect."""
    for key, value in WAITING.items():
        environ.setdefault(key, value)
    return {key: environ[key] for key in WAITING}
