"""Where a URL's file lands and whether it is local: the file name a URL is saved under, ``file:`` URLs and local
stores as paths. Shared by the download step (``scmix.data.fetch``) and the sources that name their files by URL
(``scmix.data.sources.tenx``, ``scmix.data.sources.census``). Standard library only: imported while the DAG is built."""

from __future__ import annotations

import urllib.parse
from pathlib import Path


def local_name(url: str) -> str:
    """The file name a URL's file is saved under: its path's last part, or a ``file=`` query parameter
    (GEO's download URLs: ``.../geo/download/?acc=GSE217460&format=file&file=GSE217460_x.h5ad.gz``)."""
    parsed = urllib.parse.urlparse(url)
    query = urllib.parse.parse_qs(parsed.query)
    if query.get("file"):
        return Path(query["file"][0]).name
    name = Path(urllib.parse.unquote(parsed.path)).name
    if not name:
        raise ValueError(f"cannot take a file name from URL '{url}'")
    return name


def is_local(url: str) -> bool:
    return urllib.parse.urlparse(url).scheme == "file"


def local_path(url: str) -> Path:
    """The path a file: URL names: ``file:///absolute/path``, or ``file:relative/path`` from the working
    directory (the one Snakemake runs in)."""
    return Path(urllib.parse.unquote(urllib.parse.urlparse(url).path))


def local_store(uri: str) -> Path | None:
    """The folder a store's URI names when it is local (a plain path or a file: URL), else None (s3://, ...)."""
    if urllib.parse.urlparse(uri).scheme == "file":
        return local_path(uri)
    return None if "://" in uri else Path(uri)
