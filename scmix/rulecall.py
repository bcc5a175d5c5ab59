"""How a rule script runs a package function: logging to the rule's log, bad input as one clear line.

Before the function runs, every output the job declares is checked to lie inside the working directory's
``results/`` or ``resources/`` (a name can never make a job write elsewhere) and each output folder to be
writable, so a read-only or full ``results/`` stops the job before a long step rather than after it. Bad input
(``ScmixInputError``) and a file system that refuses a write (no space, read-only, no permission) end the job
with one line in the log and on stderr, and exit status 1: no traceback.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from pathlib import Path

from scmix.errors import ScmixInputError, refused_write_line
from scmix.logs import setup

# where a job may write, relative to the working directory (logs/ and benchmarks are Snakemake's own)
OUTPUT_ROOTS = ("results", "resources")
# what a job writes to learn that a folder is writable
_PROBE = ".scmix-write-test."


def check_outputs(outputs, workdir: Path | None = None) -> None:
    """Every output lies inside ``results/`` or ``resources/`` of the working directory, and its folder can be
    created and written to (a small probe file is written and removed)."""
    root = Path(workdir or os.getcwd()).resolve()
    allowed = [root / r for r in OUTPUT_ROOTS]
    folders = []
    for out in outputs:
        path = (root / out).resolve()
        if not any(path.is_relative_to(a) and path != a for a in allowed):
            raise ScmixInputError(f"output '{out}' lies outside {' and '.join(r + '/' for r in OUTPUT_ROOTS)} of "
                                  f"the working directory {root}; refusing to write there")  # fmt: skip
        folders.append(path.parent)
    for folder in dict.fromkeys(folders):
        problem = _writable(folder)
        if problem:
            raise ScmixInputError(_unwritable_line(folder, problem, "results"))


def _unwritable_line(folder: Path, problem: str, top: str) -> str:
    return (f"cannot write to folder {folder}: {problem}; free space or fix the permissions (or mount) of {top}/ "
            "and rerun")  # fmt: skip


def _writable(folder: Path) -> str | None:
    """None if a small file can be written (and removed) in ``folder``, else the reason."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=_PROBE, dir=folder)  # a name of its own: jobs run side by side
        try:
            os.write(fd, b"0" * 4096)
            os.fsync(fd)
        finally:
            os.close(fd)
            Path(probe).unlink(missing_ok=True)
    except OSError as err:
        return os.strerror(err.errno) if err.errno else str(err)
    return None


def unwritable_results(workdir: Path | None = None) -> str | None:
    """A line for the first output folder (``results/``, ``resources/`` and the folders just below them) that
    exists and cannot be written, else None: checked when a run starts, before any job."""
    root = Path(workdir or os.getcwd())
    for top in OUTPUT_ROOTS:
        base = root / top
        folders = [base, *sorted(p for p in base.iterdir() if p.is_dir())] if base.is_dir() else []
        for folder in folders:
            problem = _writable(folder)
            if problem:
                return _unwritable_line(folder, problem, top)
    return None


def _write_error(err: OSError, outputs) -> str | None:
    """One line for an OSError that is the file system refusing a write, else None (a write to an open file names
    no file: the job's first output stands in for it)."""
    return refused_write_line(err, str(outputs[0]) if outputs else None)


def describe_inputs(inputs) -> str:
    """One line for a job's inputs: how many files and what they take in memory once read
    (``scmix.io.in_memory_bytes``; benchmarks/study_scale.sh sets each rule's peak memory against it)."""
    from scmix.io import in_memory_bytes

    paths = [p for p in inputs if os.path.exists(p)]
    total = sum(in_memory_bytes(p) for p in paths)
    return f"{len(paths)} input file(s), {total} bytes ({total / 2**30:.3f} GiB) in memory"


def _end(status: int) -> None:
    """Exit with ``status`` once the logs are written. After a refused write, without Python's or C's clean-up at
    exit: HDF5 crashes there on the objects of an h5ad whose writes failed (``scmix.errors.writing``)."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def run(main, smk) -> None:
    setup(smk.log[0] if len(smk.log) else None)
    rule = getattr(smk, "rule", "?")
    log = logging.getLogger("scmix")
    outputs = list(smk.output)
    try:
        check_outputs(outputs)
        log.info("rule %s reads %s", rule, describe_inputs(smk.input))
        main(smk)
    except ScmixInputError as err:
        log.error("rule %s: %s", rule, err)
        sys.exit(1)
    except OSError as err:
        line = _write_error(err, outputs)
        if line is None:
            raise
        log.error("rule %s: %s", rule, line)
        _end(1)
