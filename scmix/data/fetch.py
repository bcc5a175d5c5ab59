"""Fetching raw files: file://, http:// and https:// URLs, streamed with progress, retried on transient
errors, checked against an optional sha256, gzip-tested, and written atomically (no partial file survives).

A folder source is copied as its regular files and folders alone: a link in it (wherever it points) or a
special file (a pipe, a device) is refused, and its fingerprint (``local_sources_state``) never follows one.
The path a ``file:`` URL names is the user's own choice and is followed, links and all; it must end at a
regular file or a folder. Copies keep the source's restrictions: a file gets the source's read/write bits, a
folder gives group and others no more than the source does (a 0700 folder is not copied 0755).

Archives are extracted safely: members escaping their folder are rejected, and before anything is written the
sizes the members declare are checked against the free space of the folder and against ``download.max_expansion``
times the archive's size (a zip bomb stops there); what is written is held to what was declared. A write the
file system refuses (a full disk) is a ``WriteRefused`` naming the folder, never a corrupt input. Messages name
the URL as the config writes it, never the hidden temporary paths a download is built in.

Imported while the DAG is built (the download rule's params): the standard library and scmix.errors only."""

from __future__ import annotations

import errno
import gzip
import hashlib
import http.client
import json
import logging
import os
import shutil
import stat
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from collections.abc import Iterable, Mapping
from pathlib import Path

from scmix.data.urls import is_local, local_name, local_path, local_store
from scmix.errors import ScmixInputError, WriteRefused, writing
from scmix.names import NAME

log = logging.getLogger("scmix.data.fetch")
CHUNK = 1 << 20
TRANSIENT_HTTP = {408, 425, 429, 500, 502, 503, 504}

# Which keys of a dataset's config entry each stage reads, so editing one stage's settings reruns only the
# stages that use them. qc and split are read by the qc and split rules alone: never a reason to fetch or parse.
LATER_STAGE_KEYS = ("qc", "split")
# what fetching a file-based dataset reads (a simulated one: the whole entry but LATER_STAGE_KEYS, PARSE_ONLY_KEYS
# and SELECTION_KEYS; a Census query: the whole entry but LATER_STAGE_KEYS and PARSE_ONLY_KEYS)
DOWNLOAD_KEYS = ("source", "url", "sha256", "file_name", "decompress", "files", "labels")
PARSE_ONLY_KEYS = ("obs_keys", "obs")  # applied by the parse step to every source's cells
# the cell selection (scmix.data.sources.select): the parse step's, but part of a Census query
SELECTION_KEYS = ("obs_filter", "max_cells", "seed")
DOWNLOAD_LABEL_KEYS = ("url", "sha256", "name")
# how far an archive (or a .gz the download decompresses) may expand: download.max_expansion times its own size,
# and to EXPANSION_FLOOR whatever its size (a small file of a repeated line compresses 500-fold)
EXPANSION_FLOOR = 1 << 20
# the refusals that only a write meets (no permission can be a source's, read)
WRITE_ONLY_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS})


class TransientError(Exception):
    pass


def download_spec(spec: Mapping) -> dict:
    """The part of a dataset's entry fetching uses: the download rule's params (an edit elsewhere keeps it)."""
    if spec.get("source") == "simulated":
        return {k: v for k, v in parse_spec(spec).items() if k not in PARSE_ONLY_KEYS + SELECTION_KEYS}
    if spec.get("source") == "census":
        return {k: v for k, v in parse_spec(spec).items() if k not in PARSE_ONLY_KEYS}
    out = {k: spec[k] for k in DOWNLOAD_KEYS if k in spec and k != "labels"}
    labels = spec.get("labels")
    if isinstance(labels, Mapping):
        out["labels"] = {k: labels[k] for k in DOWNLOAD_LABEL_KEYS if k in labels}
    return out


def parse_spec(spec: Mapping) -> dict:
    """The part of a dataset's entry parsing uses: all of it but the qc and split overrides."""
    return {k: v for k, v in spec.items() if k not in LATER_STAGE_KEYS}


def _raise(err: OSError) -> None:
    raise err


def _folder_entries(src: Path):
    """(path relative to src, its lstat) for everything below the folder src, a folder before what it holds,
    in a fixed order. Links are reported as links, never followed; an unreadable folder raises instead of being
    skipped."""
    for dirpath, dirnames, filenames in os.walk(src, onerror=_raise):  # os.walk descends into no link
        dirnames.sort()
        here = Path(dirpath)
        for name in sorted(dirnames + filenames):
            yield (here / name).relative_to(src), os.lstat(here / name)


def _kind(mode: int) -> str:
    kinds = ((stat.S_ISLNK, "link"), (stat.S_ISDIR, "folder"), (stat.S_ISREG, "file"), (stat.S_ISFIFO, "named pipe"),
             (stat.S_ISSOCK, "socket"), (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"))  # fmt: skip
    return next((name for test, name in kinds if test(mode)), "special file")


def _not_copied(folder: Path, rel: Path, st: os.stat_result, *, dataset: str | None, url: str) -> ScmixInputError:
    """The one line refusing an entry of a folder source that is neither a regular file nor a folder."""
    if stat.S_ISLNK(st.st_mode):
        what = f"is a link (to {os.readlink(folder / rel)})"
        todo = "put the file itself in the folder, or name it by a url of its own"
    else:
        what = f"is a {_kind(st.st_mode)}, not a regular file"
        todo = "remove it from the folder"
    return ScmixInputError(f"{what}; a folder source copies only the regular files and folders inside it, never "
                           f"a link or a special file: {todo}", dataset=dataset, url=url, path=str(rel))  # fmt: skip


def local_sources_state(spec: Mapping) -> str:
    """A short fingerprint of a dataset's file: sources as they are now: size, mtime_ns and permissions of
    each file, or of every file under a folder (by relative path), the permissions of each folder and the
    target each link names (a link is never followed). '' when the dataset has no file: source.

    A download rule param: a source changed in place (a folder fixed, a file replaced) changes it, and the
    download runs again. A missing or unreadable source gives a state starting with 'missing-' (the download
    job then fails, saying what is missing)."""
    records, missing = [], False
    entries = [(e["url"], local_path(e["url"])) for e in file_entries(spec) if is_local(e["url"])]
    if spec.get("source") == "census" and spec.get("uri") and local_store(spec["uri"]) is not None:
        entries.append((spec["uri"], local_store(spec["uri"])))  # a local SOMA store: a folder of fragments
    for url, src in entries:
        try:
            if src.is_dir():
                files = []
                for rel, st in _folder_entries(src):  # a link is recorded as its target's name, never followed
                    if stat.S_ISREG(st.st_mode):
                        files.append([str(rel), st.st_size, st.st_mtime_ns, stat.S_IMODE(st.st_mode)])
                    elif stat.S_ISLNK(st.st_mode):
                        files.append([str(rel), "link", os.readlink(src / rel)])
                    else:
                        files.append([str(rel), _kind(st.st_mode), stat.S_IMODE(st.st_mode)])
                records.append([url, "folder", stat.S_IMODE(src.stat().st_mode), files])
            else:
                st = src.stat()
                records.append([url, "file", st.st_size, st.st_mtime_ns, stat.S_IMODE(st.st_mode)])
        except OSError as err:
            missing = True
            records.append([url, "missing", type(err).__name__])
    if not records:
        return ""
    digest = hashlib.sha256(json.dumps(records).encode()).hexdigest()[:16]
    return f"missing-{digest}" if missing else digest


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _create(path: Path, mode: int):
    """A new file open for writing, created with ``mode & ~umask`` (never more open, not even while written)."""
    path.unlink(missing_ok=True)
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode), "wb")


def _copy_mode(src: Path | os.stat_result) -> int:
    """The mode a copy of a file is created with: the source's read/write bits (the umask applies on top)."""
    st = src if isinstance(src, os.stat_result) else src.stat()
    return stat.S_IMODE(st.st_mode) & 0o666


def _folder_mode(st: os.stat_result) -> int:
    """The mode of a copied folder: group and others get no more than the source gives them (less the umask);
    the owner, the workflow, can always list, enter and replace its copy."""
    return (stat.S_IMODE(st.st_mode) | 0o700) & 0o777 & ~_umask()


def _open_regular(path: Path, *, follow: bool = False):
    """``path`` open for reading when it is a regular file; else a ValueError naming what it is. Opened without
    waiting on a pipe and (unless ``follow``) without following a link in its last part, then checked: no swap
    after a listing."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | (0 if follow else os.O_NOFOLLOW))
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise ValueError(f"is a {_kind(st.st_mode)}, not a regular file or folder")
    return os.fdopen(fd, "rb")


def _reason(err: BaseException, hide: Iterable[Path]) -> str:
    """An error's text on one line, leaving out any file name under the hidden temporary paths the fetch
    writes to."""
    if isinstance(err, OSError) and not isinstance(err, urllib.error.URLError) and err.strerror:
        names = [os.fsdecode(f) for f in (err.filename, err.filename2) if f is not None]
        shown = [f for f in names if not any(Path(f).is_relative_to(h) for h in hide)]
        return ": ".join([err.strerror, *shown])
    return " ".join(str(err).split())


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


def _download_once(url: str, tmp: Path, label: str, timeout: float, shown: Path) -> None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp, writing(shown), _create(tmp, 0o666) as out:
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


def _copy_file(src: Path, dst: Path, label: str, shown: Path) -> None:
    """Copy one local file (a regular one; a link the user named is followed), created with the source's
    read/write bits (less the umask). A refused write is a ``WriteRefused`` naming ``shown``."""
    with _open_regular(src, follow=True) as fh:  # a pipe named by mistake is refused, not waited on
        st = os.fstat(fh.fileno())
        with writing(shown), _create(dst, _copy_mode(st)) as out:
            _stream(fh, out, st.st_size, label)


def _copy_folder(src: Path, dst: Path, label: str, *, url: str, dataset: str | None, shown: Path) -> None:
    """Copy a local folder's regular files and folders: each file with its source's read/write bits, each folder
    giving group and others no more than its source (``_folder_mode``); a link or a special file anywhere in it
    is refused before anything is copied. Every .gz file is read to its end (a corrupt copy fails, naming the
    file by its path in the folder). A refused write is a ``WriteRefused`` naming ``shown``."""
    n_files = n_bytes = 0
    entries = list(_folder_entries(src))  # all of it checked before a byte is copied
    for rel, st in entries:
        if not stat.S_ISDIR(st.st_mode) and not stat.S_ISREG(st.st_mode):
            raise _not_copied(src, rel, st, dataset=dataset, url=url)
    folders = [(dst, src.stat())]
    with writing(shown):
        dst.mkdir(mode=0o700)  # opened to group and others, as far as the source is, once filled
    for rel, st in entries:
        if stat.S_ISDIR(st.st_mode):
            with writing(shown):
                (dst / rel).mkdir(mode=0o700)
            folders.append((dst / rel, st))
            continue
        try:
            fh = _open_regular(src / rel)
        except ValueError as err:  # changed since it was listed
            raise ScmixInputError(f"{err}; a folder source copies only its regular files and folders",
                                  dataset=dataset, url=url, path=str(rel)) from None  # fmt: skip
        with fh, writing(shown), _create(dst / rel, _copy_mode(st)) as out:
            shutil.copyfileobj(fh, out, CHUNK)
        n_files, n_bytes = n_files + 1, n_bytes + (dst / rel).stat().st_size
        if rel.name.endswith(".gz"):
            check_gzip(dst / rel, dataset=dataset, url=url, name=str(rel))
    with writing(shown):
        for folder, st in reversed(folders):
            folder.chmod(_folder_mode(st))
    log.info("%s: copied folder %s (%d files, %d bytes)", label, src, n_files, n_bytes)


def check_gzip(path: Path, *, dataset: str | None, url: str | None = None, name: str | None = None) -> None:
    """Read a .gz file to its end: a truncated or corrupt archive fails here, by name (``name``, when the
    file is a temporary copy: how the user knows it, e.g. its path inside the source folder; and ``url``)."""
    try:
        with gzip.open(path, "rb") as fh:
            while fh.read(CHUNK):
                pass
    except (OSError, EOFError, zlib.error) as err:  # BadGzipFile is an OSError; bad deflate data a zlib.error
        raise ScmixInputError(f"corrupt or truncated gzip file: {err}", dataset=dataset, url=url,
                              path=name if name is not None else str(path)) from err  # fmt: skip


def fetch(url: str, dest: Path, *, sha256: str | None = None, dataset: str | None = None, retries: int = 3,
          backoff: float = 1.0, timeout: float = 60.0) -> Path:  # fmt: skip
    """Fetch ``url`` to ``dest`` (a file, or a folder for a file:// URL naming a folder).

    Errors name the URL as given (and a file inside a copied folder by its path there), never ``dest``: it is
    usually inside the download's hidden temporary folder. A write the file system refuses is a ``WriteRefused``
    naming ``dest``."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.part")
    hide = (tmp, dest)
    scheme = urllib.parse.urlparse(url).scheme
    src = None
    if scheme == "file":
        src = local_path(url)
        if not str(src) or src == Path("."):
            raise ScmixInputError("a file: URL must name a file or folder", dataset=dataset, url=url)
        if not src.exists():
            where = "" if src.is_absolute() else f" (looked for {src.absolute()}: relative to the working directory)"
            raise ScmixInputError(f"no such file or folder{where}", dataset=dataset, url=url)
        if src.is_dir():
            if sha256:
                raise ScmixInputError("sha256 given for a folder (checksums apply to single files)", dataset=dataset,
                                      url=url)  # fmt: skip
            if dest.resolve().is_relative_to(src.resolve()):
                raise ScmixInputError("the folder contains the folder it would be copied to; name one that does "
                                      "not hold the workflow's resources/", dataset=dataset, url=url)  # fmt: skip
            shutil.rmtree(tmp, ignore_errors=True)
            try:
                _copy_folder(src, tmp, dest.name, url=url, dataset=dataset, shown=dest)
                with writing(dest):
                    os.replace(tmp, dest)
            except WriteRefused:
                raise
            except OSError as err:
                raise ScmixInputError(f"cannot copy folder: {_reason(err, hide)}", dataset=dataset, url=url) from err
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            return dest
    elif scheme not in ("http", "https"):
        raise ScmixInputError("unsupported URL scheme (use https://, http:// or file://)", dataset=dataset, url=url)
    try:
        if src is not None:
            try:
                _copy_file(src, tmp, dest.name, dest)
            except WriteRefused:
                raise
            except ValueError as err:
                raise ScmixInputError(str(err), dataset=dataset, url=url) from None
            except OSError as err:
                raise ScmixInputError(f"cannot copy: {_reason(err, hide)}", dataset=dataset, url=url) from err
        else:
            _download(url, tmp, dest.name, dataset=dataset, retries=retries, backoff=backoff, timeout=timeout,
                      shown=dest)  # fmt: skip
        if sha256:
            got = _sha256(tmp)
            if got != sha256.lower():
                raise ScmixInputError(f"sha256 mismatch: expected {sha256}, got {got}", dataset=dataset, url=url)
        if dest.name.endswith(".gz"):
            check_gzip(tmp, dataset=dataset, url=url, name=dest.name)
        with writing(dest):
            os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def _download(url: str, tmp: Path, label: str, *, dataset: str | None, retries: int, backoff: float,
              timeout: float, shown: Path) -> None:  # fmt: skip
    """Download over http(s) to ``tmp``, retrying transient errors (timeouts, resets, HTTP 5xx/429); a refused
    write is a ``WriteRefused`` naming ``shown``, never retried."""
    for attempt in range(1, retries + 2):
        try:
            _download_once(url, tmp, label, timeout, shown)
            return
        except WriteRefused:
            raise
        except TransientError as err:
            if attempt > retries:
                raise ScmixInputError(f"download failed after {attempt} attempts: {err}", dataset=dataset,
                                      url=url) from err  # fmt: skip
            wait = backoff * 2 ** (attempt - 1)
            log.warning("%s: attempt %d failed (%s); retrying in %.1fs", label, attempt, err, wait)
            time.sleep(wait)
        except (urllib.error.URLError, OSError) as err:
            raise ScmixInputError(f"cannot fetch: {_reason(err, (tmp,))}", dataset=dataset, url=url) from err


def _archive_stem(path: Path) -> str:
    name = path.name
    for ext in (".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".tar", ".zip"):
        if name.endswith(ext):
            return name[: -len(ext)]
    return name


def is_archive(path: Path) -> bool:
    return path.is_file() and _archive_stem(path) != path.name


def _names(path: Path, url: str | None) -> dict:
    """How an error names a fetched file: by its URL when there is one (the file is in a temporary folder)."""
    return {"url": url} if url is not None else {"path": str(path)}


def _restrict(folder: Path, mode: int) -> None:
    """Take from every file under ``folder`` the read/write bits ``mode`` (the archive's) does not have."""
    drop = 0o666 & ~mode
    if not drop:
        return
    for dirpath, _dirnames, filenames in os.walk(folder):
        for n in filenames:
            p = Path(dirpath) / n
            st = p.lstat()
            if stat.S_ISREG(st.st_mode):
                p.chmod(stat.S_IMODE(st.st_mode) & ~drop)


def _size(n: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


def expansion_limit(path: Path, max_expansion: float) -> int:
    """The most bytes a compressed file may expand to: ``max_expansion`` times its size, at least EXPANSION_FLOOR."""
    return max(int(max_expansion * path.stat().st_size), EXPANSION_FLOOR)


def _bomb(verb: str) -> str:
    return (f"refusing to {verb} (a compression bomb; or a file that really compresses that well: then raise "
            "download.max_expansion)")  # fmt: skip


def _check_room(declared: int, path: Path, folder: Path, max_expansion: float, *, dataset, names) -> None:
    """Refuse, before anything is written, an archive whose members declare more than the expansion cap allows
    or more than the free space of ``folder``."""
    size = path.stat().st_size
    if declared > expansion_limit(path, max_expansion):
        raise ScmixInputError(f"the archive's members declare {_size(declared)}, {declared / max(size, 1):.0f} times "
                              f"its own {_size(size)}, more than download.max_expansion ({max_expansion:g}) allows; "
                              + _bomb("extract"), dataset=dataset, **names)  # fmt: skip
    free = shutil.disk_usage(path.parent).free
    if declared > free:
        raise ScmixInputError(f"the archive's members declare {_size(declared)}, but only {_size(free)} is free on "
                              f"the disk of {folder}; free space there (or give the workflow a larger disk) and rerun",
                              dataset=dataset, **names)  # fmt: skip


def _tar_members(tf: tarfile.TarFile, path: Path, folder: Path, max_expansion: float, *, dataset, names) -> list:
    """The members of a tar, their declared sizes checked (``_check_room``) as each header is read: a bomb
    stops at its first oversized header, before its data is even decompressed."""
    members, declared = [], 0
    while (member := tf.next()) is not None:
        members.append(member)
        declared += member.size
        if declared > expansion_limit(path, max_expansion):
            break
    _check_room(declared, path, folder, max_expansion, dataset=dataset, names=names)
    return members


def _extract_zip(zf: zipfile.ZipFile, root: Path, *, dataset, names) -> None:
    """Write each member under ``root``, no member writing more than it declares."""
    for info in zf.infolist():
        dest = root / info.filename
        if info.is_dir():
            dest.mkdir(parents=True, exist_ok=True)
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        with zf.open(info) as src, _create(dest, 0o666) as out:
            written = 0
            while block := src.read(CHUNK):
                written += len(block)
                if written > info.file_size:
                    raise ScmixInputError(f"archive member '{info.filename}' holds more than the {info.file_size} "
                                          "bytes it declares; refusing to extract", dataset=dataset,
                                          **names)  # fmt: skip
                out.write(block)


def extract(archive: Path, *, dataset: str | None = None, url: str | None = None, max_expansion: float = 200,
            folder: Path | None = None) -> Path:  # fmt: skip
    """Extract next to the archive into a folder named after it; reject members escaping that folder.
    Extracted files are no more readable than the archive (a 0600 archive gives 0600 files).

    Before anything is written, the sizes the members declare are summed and checked against ``max_expansion``
    times the archive's size and against the free space beside it (``folder``: how messages name that place,
    the archive's folder by default); no member writes more than it declares (tarfile copies exactly the
    declared size; a zip member is counted as it is written). A refused write is a ``WriteRefused`` naming
    ``folder``, never a corrupt archive."""
    target = archive.with_name(_archive_stem(archive))
    tmp = archive.with_name(f".{target.name}.extract")
    names = _names(archive, url)
    folder = Path(folder) if folder is not None else archive.parent
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        if archive.name.endswith(".zip"):
            with zipfile.ZipFile(archive) as zf:
                root = tmp.resolve()
                for member in zf.namelist():
                    if not (root / member).resolve().is_relative_to(root):
                        raise ScmixInputError(f"archive member '{member}' escapes its folder; refusing to extract",
                                              dataset=dataset, **names)  # fmt: skip
                declared = sum(info.file_size for info in zf.infolist())
                _check_room(declared, archive, folder, max_expansion, dataset=dataset, names=names)
                with writing(folder):
                    _extract_zip(zf, tmp, dataset=dataset, names=names)
        else:
            with tarfile.open(archive) as tf:
                members = _tar_members(tf, archive, folder, max_expansion, dataset=dataset, names=names)
                try:
                    with writing(folder):
                        tf.extractall(tmp, members=members, filter="data")
                except tarfile.FilterError as err:
                    raise ScmixInputError(f"unsafe archive member ({err}); refusing to extract",
                                          dataset=dataset, **names) from err  # fmt: skip
        with writing(folder):
            _restrict(tmp, stat.S_IMODE(archive.stat().st_mode))
            os.replace(tmp, target)
    except WriteRefused:
        raise
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as err:
        raise ScmixInputError(f"corrupt or truncated archive: {_reason(err, (tmp, archive))}", dataset=dataset,
                              **names) from err  # fmt: skip
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def gunzip(path: Path, *, dataset: str | None = None, url: str | None = None, max_expansion: float = 200,
           folder: Path | None = None) -> Path:  # fmt: skip
    """Decompress a single-file .gz next to itself (atomically, as readable as the .gz) and remove the .gz.

    The size a .gz records is its length modulo 4 GiB (no bound at all): what is written is counted instead, and
    the file is refused once it passes ``max_expansion`` times the .gz's size. A refused write (a full disk) is
    a ``WriteRefused`` naming ``folder`` (the .gz's folder by default)."""
    target = path.with_name(path.name[: -len(".gz")])
    tmp = target.with_name(f".{target.name}.part")
    folder = Path(folder) if folder is not None else path.parent
    limit = expansion_limit(path, max_expansion)
    try:
        with gzip.open(path, "rb") as src, writing(folder), _create(tmp, _copy_mode(path)) as dst:
            written = 0
            while block := src.read(CHUNK):
                written += len(block)
                if written > limit:
                    raise ScmixInputError(f"decompresses to more than {_size(limit)}, the most download.max_expansion "
                                          f"({max_expansion:g}) allows a file of {_size(path.stat().st_size)}; "
                                          + _bomb("decompress"), dataset=dataset, **_names(path, url))  # fmt: skip
                dst.write(block)
        with writing(folder):
            os.replace(tmp, target)
    except WriteRefused:
        raise
    except (OSError, EOFError, zlib.error) as err:
        raise ScmixInputError(f"cannot decompress: {_reason(err, (tmp, path))}", dataset=dataset,
                              **_names(path, url)) from err  # fmt: skip
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
                  retries: int = 3, timeout: float = 60.0, backoff: float = 1.0,
                  max_expansion: float = 200) -> Path:  # fmt: skip
    """Fill ``out_dir`` with the dataset's raw files; built in a temporary folder, renamed at the end.

    ``name`` and ``out_dir`` are checked before anything is deleted: ``out_dir`` must be a plain child of its
    parent (``resources/raw/{name}``), never ``.``, ``..`` or a link out, which the clean-up would remove.
    Archives and decompressed .gz files expand at most ``max_expansion`` times (``extract``). A write the file
    system refuses (a full disk) is a ``WriteRefused`` naming ``out_dir``, whatever hidden file it hit."""
    out_dir = Path(out_dir)
    plain = NAME.match(out_dir.name) and not out_dir.is_symlink()
    if not NAME.match(name) or not plain or out_dir.resolve().parent != out_dir.parent.resolve():
        raise ScmixInputError(f"refusing to write the raw folder {out_dir}: it must be the dataset's own folder "
                              "(a name of letters, digits, '_', '+' and '-')", dataset=name)  # fmt: skip
    tmp = out_dir.with_name(f".{out_dir.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        with writing(out_dir):
            tmp.mkdir(parents=True)
        _fill(name, spec, tmp, out_dir, simulation=simulation, retries=retries, timeout=timeout, backoff=backoff,
              max_expansion=max_expansion)  # fmt: skip
    except OSError as err:
        if isinstance(err, WriteRefused) or err.errno in WRITE_ONLY_ERRNOS:
            raise WriteRefused(err.errno, os.strerror(err.errno), str(out_dir)) from None
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def _fill(name: str, spec: Mapping, tmp: Path, out_dir: Path, *, simulation, retries, timeout, backoff,
          max_expansion) -> None:  # fmt: skip
    """fetch_dataset's work: the files fetched (or generated) into ``tmp``, then ``tmp`` renamed ``out_dir``."""
    record = {"dataset": name, "source": spec.get("source"), "files": []}
    if spec.get("source") == "simulated":
        from scmix.data.sources.simulated import generate

        generate(name, spec, simulation or {}, tmp)
    elif spec.get("source") == "census":
        from scmix.data.sources.census import fetch as query_census

        query_census(name, spec, tmp)
    else:
        entries = file_entries(spec)
        if not entries:
            raise ScmixInputError("no url or files given", dataset=name)
        for e in entries:
            try:
                file_name = e["name"] or local_name(e["url"])
            except ValueError as err:
                raise ScmixInputError(f"{err}; give the file a name", dataset=name, url=e["url"]) from err
            dest = fetch(e["url"], tmp / file_name, sha256=e["sha256"], dataset=name, retries=retries,
                         backoff=backoff, timeout=timeout)  # fmt: skip
            item = {"url": e["url"], "path": dest.name}
            if dest.is_file():
                # a configured checksum was just verified against the file: no second read for the record
                item.update(bytes=dest.stat().st_size, sha256=(e["sha256"] or "").lower() or _sha256(dest))
            bound = {"dataset": name, "url": e["url"], "max_expansion": max_expansion, "folder": out_dir}
            if is_archive(dest):
                item["extracted_to"] = extract(dest, **bound).name
            elif spec.get("decompress") and dest.name.endswith(".gz"):
                item["decompressed_to"] = gunzip(dest, **bound).name
            record["files"].append(item)
    with writing(out_dir):
        (tmp / "manifest.json").write_text(json.dumps(record, indent=1))
        shutil.rmtree(out_dir, ignore_errors=True)
        os.replace(tmp, out_dir)
