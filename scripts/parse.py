"""Rule parse: turn one dataset's raw files into an h5ad of raw integer counts with every label.

When the raw files cannot be parsed and every one of them was copied from a file: URL, the copy is removed
(copying it again is cheap), so the next run copies the source afresh, as fixed; a download over http(s)
is kept (it can be gigabytes) and the message says where it is."""

import os
import shutil
from pathlib import Path

from scmix import rulecall
from scmix.data.fetch import file_entries
from scmix.data.sources import parse_dataset
from scmix.data.urls import is_local
from scmix.errors import ScmixInputError
from scmix.io import write_h5ad


def raw_copy(dataset: str, raw: str) -> Path | None:
    """The raw folder, only when it really is resources/raw/<dataset> below the working directory."""
    expected = os.path.join("resources", "raw", dataset)
    path = Path(raw)
    if dataset in (".", "..") or "/" in dataset or os.path.isabs(raw) or os.path.normpath(raw) != expected:
        return None
    if path.is_symlink() or not path.is_dir():
        return None
    return path


def main(smk):
    dataset, spec, raw = smk.wildcards.dataset, smk.params.spec, smk.input.raw
    try:
        adata = parse_dataset(dataset, spec, raw, smk.params.strip_prefix)
    except ScmixInputError as err:
        entries = file_entries(spec)
        folder = raw_copy(dataset, raw)
        if entries and all(is_local(e["url"]) for e in entries) and folder is not None:
            shutil.rmtree(folder)
            note = f"the local copy {raw} was removed (the next run copies the source again)"
        else:
            note = f"the raw files are kept in {raw} (delete it to download again)"
        raise ScmixInputError(f"{err.what}; {note}", dataset=err.dataset, path=err.path, mix=err.mix,
                              model=err.model, url=err.url) from err  # fmt: skip
    write_h5ad(adata, smk.output.h5ad)


rulecall.run(main, snakemake)  # noqa: F821
