"""One error type for bad input, so the scripts can print one clear line and exit non-zero; and the write errors
that are the file system's, not the program's."""

import errno
import os
from contextlib import contextmanager

# a write the file system refused: the user can free space or fix the mount or permissions
WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG})


@contextmanager
def writing(path):
    """Re-raise a refused write (disk full, read-only, no permission) as a plain OSError naming ``path``: h5py
    and others wrap it in messages of their own, without the file's name."""
    try:
        yield
    except OSError as err:
        if err.errno not in WRITE_ERRNOS:
            raise
        raise OSError(err.errno, os.strerror(err.errno), str(path)) from None


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
