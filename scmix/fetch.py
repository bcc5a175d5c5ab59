"""Fetching raw files: file://, http:// and https:// URLs, streamed with progress, retried on transient
errors, checked against an optional sha256, gzip-tested, and written atomically (no partial file survives).
Archives are extracted safely (members escaping their folder are rejected)."""

from __future__ import annotations

import gzip
import hashlib
import http.client
import json
import logging
import os
import shutil
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from collections.abc import Mapping
from pathlib import Path

from scmix.errors import ScmixInputError

log = logging.getLogger("scmix.fetch")
CHUNK = 1 << 20
TRANSIENT_HTTP = {408, 425, 429, 500, 502, 503, 504}


class TransientError(Exception):
    pass


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


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _stream(src, dst, total: int | None, label: str) -> int:
    done, next_report, t0 = 0, 0.0, time.monotonic()
    while block := src.read(CHUNK):
        dst.write(block)
        done += len(block)
        if total and done / total >= next_report:
            log.info("%s: %.1f / %.1f MiB (%.0f%%)", label, done / 2**20, total / 2**20, 100 * done / total)
            next_report += 0.1
        elif not total and done // (8 * CHUNK) != (done - len(block)) // (8 * CHUNK):
            log.info("%s: %.1f MiB", label, done / 2**20)
    log.info("%s: %d bytes in %.1fs", label, done, time.monotonic() - t0)
    return done


def _download_once(url: str, tmp: Path, label: str, timeout: float) -> None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp, open(tmp, "wb") as out:
            length = resp.headers.get("Content-Length")
            total = int(length) if length else None
            got = _stream(resp, out, total, label)
        if total is not None and got != total:
            raise TransientError(f"connection closed after {got} of {total} bytes")
    except urllib.error.HTTPError as err:
        if err.code in TRANSIENT_HTTP:
            raise TransientError(f"HTTP {err.code}") from err
        raise
    except (TimeoutError, urllib.error.URLError, ConnectionError, http.client.IncompleteRead) as err:
        if isinstance(err, urllib.error.URLError) and isinstance(err.reason, FileNotFoundError):
            raise
        raise TransientError(str(err)) from err


def check_gzip(path: Path, *, dataset: str | None) -> None:
    """Read a .gz file to its end: a truncated or corrupt archive fails here, by name."""
    try:
        with gzip.open(path, "rb") as fh:
            while fh.read(CHUNK):
                pass
    except (OSError, EOFError, zlib.error) as err:  # BadGzipFile is an OSError; bad deflate data a zlib.error
        raise ScmixInputError(f"corrupt or truncated gzip file: {err}", dataset=dataset, path=str(path)) from err


def fetch(url: str, dest: Path, *, sha256: str | None = None, dataset: str | None = None, retries: int = 3,
          backoff: float = 1.0, timeout: float = 60.0) -> Path:  # fmt: skip
    """Fetch ``url`` to ``dest`` (a file, or a folder for a file:// URL naming a folder)."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme == "file":
        src = Path(urllib.parse.unquote(parsed.path))
        if not src.exists():
            raise ScmixInputError(f"no such file or folder {src} (url {url})", dataset=dataset, path=str(src))
        if src.is_dir():
            if sha256:
                raise ScmixInputError(f"sha256 given for folder {url}", dataset=dataset, path=str(src))
            tmp = dest.with_name(f".{dest.name}.part")
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.copytree(src, tmp)
            os.replace(tmp, dest)
            log.info("%s: copied folder %s", dest.name, src)
            return dest
    elif parsed.scheme not in ("http", "https"):
        raise ScmixInputError(f"unsupported URL scheme in '{url}' (use https://, http:// or file://)",
                              dataset=dataset)  # fmt: skip
    tmp = dest.with_name(f".{dest.name}.part")
    try:
        for attempt in range(1, retries + 2):
            try:
                _download_once(url, tmp, dest.name, timeout)
                break
            except TransientError as err:
                if attempt > retries:
                    raise ScmixInputError(f"download of {url} failed after {attempt} attempts: {err}",
                                          dataset=dataset, path=str(dest)) from err  # fmt: skip
                wait = backoff * 2 ** (attempt - 1)
                log.warning("%s: attempt %d failed (%s); retrying in %.1fs", dest.name, attempt, err, wait)
                time.sleep(wait)
            except (urllib.error.URLError, OSError) as err:
                raise ScmixInputError(f"cannot fetch {url}: {err}", dataset=dataset, path=str(dest)) from err
        if sha256:
            got = _sha256(tmp)
            if got != sha256.lower():
                raise ScmixInputError(f"sha256 mismatch for {url}: expected {sha256}, got {got}",
                                      dataset=dataset, path=str(dest))  # fmt: skip
        if dest.name.endswith(".gz"):
            check_gzip(tmp, dataset=dataset)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def _archive_stem(path: Path) -> str:
    name = path.name
    for ext in (".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".tar", ".zip"):
        if name.endswith(ext):
            return name[: -len(ext)]
    return name


def is_archive(path: Path) -> bool:
    return path.is_file() and _archive_stem(path) != path.name


def extract(archive: Path, *, dataset: str | None = None) -> Path:
    """Extract next to the archive into a folder named after it; reject members escaping that folder."""
    target = archive.with_name(_archive_stem(archive))
    tmp = archive.with_name(f".{target.name}.extract")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        if archive.name.endswith(".zip"):
            with zipfile.ZipFile(archive) as zf:
                root = tmp.resolve()
                for member in zf.namelist():
                    if not (root / member).resolve().is_relative_to(root):
                        raise ScmixInputError(f"archive member '{member}' escapes its folder; refusing to extract",
                                              dataset=dataset, path=str(archive))  # fmt: skip
                zf.extractall(tmp)
        else:
            with tarfile.open(archive) as tf:
                try:
                    tf.extractall(tmp, filter="data")
                except tarfile.FilterError as err:
                    raise ScmixInputError(f"unsafe archive member ({err}); refusing to extract",
                                          dataset=dataset, path=str(archive)) from err  # fmt: skip
        os.replace(tmp, target)
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as err:
        raise ScmixInputError(f"corrupt or truncated archive: {err}", dataset=dataset, path=str(archive)) from err
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def gunzip(path: Path, *, dataset: str | None = None) -> Path:
    """Decompress a single-file .gz next to itself (atomically) and remove the .gz."""
    target = path.with_name(path.name[: -len(".gz")])
    tmp = target.with_name(f".{target.name}.part")
    try:
        with gzip.open(path, "rb") as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst, CHUNK)
        os.replace(tmp, target)
    except (OSError, EOFError) as err:
        raise ScmixInputError(f"cannot decompress: {err}", dataset=dataset, path=str(path)) from err
    finally:
        tmp.unlink(missing_ok=True)
    path.unlink()
    return target


def file_entries(spec: Mapping) -> list[dict]:
    """Every file a dataset entry names: ``url``, ``files: [...]`` and ``labels.url``."""
    entries = []
    if spec.get("url"):
        entries.append({"url": spec["url"], "sha256": spec.get("sha256"), "name": spec.get("file_name")})
    for f in spec.get("files") or []:
        entries.append({"url": f["url"], "sha256": f.get("sha256"), "name": f.get("name")})
    labels = spec.get("labels")
    if isinstance(labels, Mapping) and labels.get("url"):
        entries.append({"url": labels["url"], "sha256": labels.get("sha256"), "name": labels.get("name")})
    return entries


def fetch_dataset(name: str, spec: Mapping, out_dir: Path, *, simulation: Mapping | None = None,
                  retries: int = 3, timeout: float = 60.0) -> Path:  # fmt: skip
    """Fill ``out_dir`` with the dataset's raw files; built in a temporary folder, renamed at the end."""
    out_dir = Path(out_dir)
    tmp = out_dir.with_name(f".{out_dir.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        record = {"dataset": name, "source": spec.get("source"), "files": []}
        if spec.get("source") == "simulated":
            from scmix.sources.simulated import generate

            generate(name, spec, simulation or {}, tmp)
        else:
            entries = file_entries(spec)
            if not entries:
                raise ScmixInputError("no url or files given", dataset=name)
            for e in entries:
                dest = fetch(e["url"], tmp / (e["name"] or local_name(e["url"])), sha256=e["sha256"], dataset=name,
                             retries=retries, timeout=timeout)  # fmt: skip
                item = {"url": e["url"], "path": dest.name}
                if dest.is_file():
                    # a configured checksum was just verified against the file: no second read for the record
                    item.update(bytes=dest.stat().st_size, sha256=(e["sha256"] or "").lower() or _sha256(dest))
                if is_archive(dest):
                    item["extracted_to"] = extract(dest, dataset=name).name
                elif spec.get("decompress") and dest.name.endswith(".gz"):
                    item["decompressed_to"] = gunzip(dest, dataset=name).name
                record["files"].append(item)
        (tmp / "manifest.json").write_text(json.dumps(record, indent=1))
        shutil.rmtree(out_dir, ignore_errors=True)
        os.replace(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir
