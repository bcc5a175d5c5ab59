"""One error type for bad input, so the scripts can print one clear line and exit non-zero."""


class ScmixInputError(ValueError):
    """Bad input: the message names the dataset, the file and what is wrong."""

    def __init__(self, what: str, *, dataset: str | None = None, path: str | None = None):
        parts = []
        if dataset is not None:
            parts.append(f"dataset '{dataset}'")
        if path is not None:
            parts.append(f"file '{path}'")
        prefix = ", ".join(parts)
        super().__init__(f"{prefix}: {what}" if prefix else what)
        self.what = what
        self.dataset = dataset
        self.path = path
