"""One error type for bad input, so the scripts can print one clear line and exit non-zero; and the write errors
that are the file system's, not the program's: ``writing()`` turns them into a ``WriteRefused`` naming the file
as the user knows it, and ``refused_write_line`` is the one line a user reads for one."""

import errno
import gc
import os
import sys
import traceback
from pathlib import Path

# a write the file system refused: the user can free space or fix the mount or permissions
WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG})

# what each refusal is, in words, and what the user does about it ({folder}: the folder of the file)
_REFUSALS = {
    errno.ENOSPC: ("disk full", "free space in {folder} (or give the workflow a larger disk) and rerun"),
    errno.EDQUOT: ("disk quota exceeded", "free space in {folder} or raise the quota, and rerun"),
    errno.EFBIG: ("file too large", "the file system of {folder} caps the size of a file: use another one"),
    errno.EROFS: ("read-only file system", "mount {folder} writable and rerun"),
    errno.EACCES: ("no permission", "fix the permissions of {folder} and rerun"),
    errno.EPERM: ("no permission", "fix the permissions of {folder} and rerun"),
}


class WriteRefused(OSError):
    """The file system refused a write (disk full, over quota, read-only, no permission, file too large). Its
    ``filename`` is the file or folder as the user knows it, never a hidden temporary name."""


def refused_write_line(err: OSError, fallback: str | None = None) -> str | None:
    """The one line for a write the file system refused, else None: what happened, the file, what to do and in
    which folder. ``fallback`` names the file when the error does not (a write to an open file carries no name)."""
    if err.errno not in WRITE_ERRNOS:
        return None
    what, todo = _REFUSALS[err.errno]
    path = os.fsdecode(err.filename) if err.filename is not None else fallback
    folder = str(Path(path).parent) if path else "the output folder"
    # no permission can be a read's too: "writing" only where it is known to be a write
    verb = "writing" if isinstance(err, WriteRefused) or err.errno not in (errno.EACCES, errno.EPERM) else "on"
    return f"{what} ({os.strerror(err.errno)}) {verb} {path or 'an output file'}; {todo.format(folder=folder)}"


def _h5py_report_of_refused_write(exc) -> bool:
    """Whether a report that cannot be raised (an object freed while the file's writes fail) is h5py repeating a
    refused write: HDF5 tells of each object it could not flush, in a traceback of its own."""
    if isinstance(exc, OSError) and exc.errno in WRITE_ERRNOS:
        return True
    text = str(exc)
    return any(f"errno = {code}," in text for code in WRITE_ERRNOS)


class writing:  # noqa: N801 - used as a function: ``with writing(path):``
    """Re-raise a refused write (disk full, read-only, no permission) as a ``WriteRefused`` naming ``path``: h5py
    and others wrap it in messages of their own, without the file's name.

    While the block runs, the reports h5py prints of the same failure (a traceback for each object it frees,
    hundreds for one h5ad) are left out, and on a refusal the failed write's objects are freed before the error
    leaves the block. HDF5 still holds the ones it could not close, and its own clean-up at exit crashes on
    them: a process that met a refused h5py write ends with ``os._exit`` (as ``scmix.rulecall`` does)."""

    def __init__(self, path):
        self.path = os.fspath(path)

    def __enter__(self):
        self.hooks = sys.unraisablehook, sys.excepthook
        sys.unraisablehook, sys.excepthook = self._unraisable, self._excepthook
        return self

    def _unraisable(self, report):
        if not _h5py_report_of_refused_write(report.exc_value):
            self.hooks[0](report)

    def _excepthook(self, kind, value, tb):  # Cython prints a freed object's error through sys.excepthook too
        if not _h5py_report_of_refused_write(value):
            self.hooks[1](kind, value, tb)

    def __exit__(self, kind, value, tb):
        try:
            if not isinstance(value, OSError) or isinstance(value, WriteRefused) or value.errno not in WRITE_ERRNOS:
                return False
            traceback.clear_frames(tb)  # the failed write's frames let go of its objects, while reports are left out
            gc.collect()
        finally:
            sys.unraisablehook, sys.excepthook = self.hooks
        raise WriteRefused(value.errno, os.strerror(value.errno), self.path) from None


class ScmixInputError(ValueError):
    """Bad input: the message names what it concerns (dataset, mix, model, eval set), the file or URL as the
    user wrote it, and what is wrong (and, where there is one, what to change)."""

    def __init__(self, what: str, *, dataset: str | None = None, path: str | None = None, mix: str | None = None,
                 model: str | None = None, url: str | None = None):  # fmt: skip
        parts = [f"{kind} '{name}'" for kind, name in (("model", model), ("mix", mix), ("dataset", dataset)) if name]
        if url is not None:
            parts.append(f"url '{url}'")
        if path is not None:
            parts.append(f"file '{path}'")
        prefix = ", ".join(parts)
        super().__init__(f"{prefix}: {what}" if prefix else what)
        self.what = what
        self.dataset = dataset
        self.mix = mix
        self.model = model
        self.url = url
        self.path = path
