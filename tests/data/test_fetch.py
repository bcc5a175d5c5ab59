"""Fetching: file:// and a local HTTP server on 127.0.0.1 (retries, checksums, truncation, atomicity)."""

import errno
import gzip
import hashlib
import http.server
import io
import os
import re
import shutil
import tarfile
import threading
import zipfile

import pytest

from scmix.data.fetch import extract, fetch, fetch_dataset
from scmix.errors import ScmixInputError

PAYLOAD = gzip.compress(b"gene\tcount\n" * 50_000)


class Handler(http.server.BaseHTTPRequestHandler):
    fail_first = 0  # answer 503 this many times
    requests = 0
    files: dict[str, bytes] = {}

    def do_GET(self):  # noqa: N802
        type(self).requests += 1
        if type(self).requests <= type(self).fail_first:
            self.send_error(503, "try later")
            return
        path = self.path.lstrip("/")
        if path == "short.gz":  # announces more bytes than it sends
            self.send_response(200)
            self.send_header("Content-Length", str(len(PAYLOAD)))
            self.end_headers()
            self.wfile.write(PAYLOAD[:1000])
            return
        if path not in self.files:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.files[path])))
        self.end_headers()
        self.wfile.write(self.files[path])

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    Handler.fail_first, Handler.requests = 0, 0
    Handler.files = {"data.tsv.gz": PAYLOAD, "truncated.tsv.gz": PAYLOAD[: len(PAYLOAD) // 2]}
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def test_http_download_with_checksum_and_progress(server, tmp_path, caplog):
    caplog.set_level("INFO")
    digest = hashlib.sha256(PAYLOAD).hexdigest()
    out = fetch(f"{server}/data.tsv.gz", tmp_path / "data.tsv.gz", sha256=digest, dataset="d")
    assert out.read_bytes() == PAYLOAD
    assert any("bytes in" in r.message for r in caplog.records)


def test_transient_errors_are_retried(server, tmp_path):
    Handler.fail_first = 2
    fetch(f"{server}/data.tsv.gz", tmp_path / "x.gz", dataset="d", retries=3, backoff=0.01)
    assert Handler.requests == 3
    Handler.fail_first, Handler.requests = 10, 0
    with pytest.raises(ScmixInputError, match="failed after 3 attempts: HTTP 503"):
        fetch(f"{server}/data.tsv.gz", tmp_path / "y.gz", dataset="d", retries=2, backoff=0.01)
    assert list(tmp_path.iterdir()) == [tmp_path / "x.gz"]


def test_checksum_mismatch_names_dataset_and_leaves_nothing(server, tmp_path):
    with pytest.raises(ScmixInputError, match=r"dataset 'pbmc'.*sha256 mismatch"):
        fetch(f"{server}/data.tsv.gz", tmp_path / "data.tsv.gz", sha256="0" * 64, dataset="pbmc")
    assert list(tmp_path.iterdir()) == []


def test_short_read_and_truncated_gzip_fail_cleanly(server, tmp_path):
    with pytest.raises(ScmixInputError, match="connection closed after 1000 of"):
        fetch(f"{server}/short.gz", tmp_path / "short.gz", dataset="d", retries=1, backoff=0.01)
    with pytest.raises(ScmixInputError, match="corrupt or truncated gzip"):
        fetch(f"{server}/truncated.tsv.gz", tmp_path / "t.tsv.gz", dataset="d")
    assert list(tmp_path.iterdir()) == []


def test_404_is_not_retried(server, tmp_path):
    with pytest.raises(ScmixInputError, match="HTTP Error 404"):
        fetch(f"{server}/missing.gz", tmp_path / "m.gz", dataset="d", retries=3, backoff=0.01)
    assert Handler.requests == 1


def test_file_urls_copy_files_and_folders(tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "a.txt").write_text("hello")
    fetch(f"file://{src}", tmp_path / "copy")
    assert (tmp_path / "copy" / "sub" / "a.txt").read_text() == "hello"
    fetch(f"file://{src}/sub/a.txt", tmp_path / "a.txt")
    assert (tmp_path / "a.txt").read_text() == "hello"
    with pytest.raises(ScmixInputError, match="no such file"):
        fetch(f"file://{src}/nope.txt", tmp_path / "nope.txt", dataset="d")
    with pytest.raises(ScmixInputError, match="unsupported URL scheme"):
        fetch("ftp://example.org/x", tmp_path / "x", dataset="d")


def _tar_with(member_name: str, path) -> None:
    with tarfile.open(path, "w:gz") as tf:
        info = tarfile.TarInfo(member_name)
        info.size = 5
        tf.addfile(info, io.BytesIO(b"hello"))


def test_archive_escaping_its_folder_is_rejected(tmp_path):
    _tar_with("../../evil.txt", tmp_path / "bad.tar.gz")
    with pytest.raises(ScmixInputError, match="unsafe archive member"):
        extract(tmp_path / "bad.tar.gz", dataset="d")
    with zipfile.ZipFile(tmp_path / "bad.zip", "w") as zf:
        zf.writestr("../evil.txt", "x")
    with pytest.raises(ScmixInputError, match="escapes its folder"):
        extract(tmp_path / "bad.zip", dataset="d")
    assert not (tmp_path.parent / "evil.txt").exists() and not (tmp_path / "bad").exists()
    _tar_with("good/ok.txt", tmp_path / "fine.tar.gz")
    assert (extract(tmp_path / "fine.tar.gz") / "good" / "ok.txt").read_text() == "hello"


def test_fetch_dataset_is_atomic(server, tmp_path):
    spec = {"source": "tenx", "url": f"{server}/data.tsv.gz", "files": [{"url": f"{server}/missing.gz"}]}
    with pytest.raises(ScmixInputError, match="404"):
        fetch_dataset("d", spec, tmp_path / "d", retries=0)
    assert list(tmp_path.iterdir()) == []
    spec["files"] = []
    out = fetch_dataset("d", spec, tmp_path / "d")
    assert sorted(p.name for p in out.iterdir()) == ["data.tsv.gz", "manifest.json"]


def test_geo_download_urls_name_their_file_and_gz_files_can_be_decompressed(server, tmp_path):
    from scmix.data.urls import local_name

    url = "https://www.ncbi.nlm.nih.gov/geo/download/?acc=GSE217460&format=file&file=GSE217460%5Fx%2Eh5ad%2Egz"
    assert local_name(url) == "GSE217460_x.h5ad.gz"
    assert local_name("https://cf.10xgenomics.com/samples/pbmc3k_filtered_gene_bc_matrices.tar.gz?x=1") == (
        "pbmc3k_filtered_gene_bc_matrices.tar.gz"
    )
    out = fetch_dataset("d", {"source": "h5ad", "url": f"{server}/data.tsv.gz", "decompress": True}, tmp_path / "d")
    assert (out / "data.tsv").read_bytes() == gzip.decompress(PAYLOAD) and not (out / "data.tsv.gz").exists()


def test_corrupt_deflate_data_is_a_clear_error_not_a_crash(tmp_path):
    from scmix.data.fetch import check_gzip

    data = bytearray(gzip.compress(b"hello world" * 1000))
    data[20] ^= 0xFF  # damage the compressed stream itself (a zlib.error, not an OSError)
    (tmp_path / "x.gz").write_bytes(bytes(data))
    with pytest.raises(ScmixInputError, match="dataset 'd'.*x.gz.*corrupt or truncated gzip file"):
        check_gzip(tmp_path / "x.gz", dataset="d")


def test_manifest_records_the_files_checksum_with_or_without_a_configured_one(server, tmp_path):
    import json

    digest = hashlib.sha256(PAYLOAD).hexdigest()
    for i, given in enumerate((None, digest.upper())):
        spec = {"source": "tenx", "url": f"{server}/data.tsv.gz", "sha256": given}
        out = fetch_dataset("d", spec, tmp_path / f"d{i}")
        record = json.loads((out / "manifest.json").read_text())["files"][0]
        assert record["sha256"] == digest and record["bytes"] == len(PAYLOAD)


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield 0o022
    os.umask(old)


def test_local_sources_state_follows_every_file_under_a_folder(tmp_path, monkeypatch):
    from scmix.data.fetch import local_sources_state

    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("a")
    (src / "sub" / "b.txt").write_text("bb")
    (tmp_path / "labels.csv").write_text("barcode\n")
    spec = {"source": "tenx", "url": f"file://{src}", "labels": {"url": f"file://{tmp_path}/labels.csv"}, "qc": {}}
    state = local_sources_state(spec)
    assert state and len(state) <= 32
    assert local_sources_state(spec) == state  # unchanged: the same state
    assert local_sources_state({**spec, "qc": {"min_genes": 5}}) == state
    (src / "sub" / "b.txt").write_text("bbb")  # another size inside a sub-folder
    changed = local_sources_state(spec)
    assert changed != state
    st = (src / "sub" / "b.txt").stat()
    os.utime(src / "sub" / "b.txt", ns=(st.st_atime_ns, st.st_mtime_ns + 1))  # the same size, a new mtime
    assert local_sources_state(spec) not in (state, changed)
    touched = local_sources_state(spec)
    (src / "sub" / "c.txt").write_text("")  # a new file
    assert local_sources_state(spec) != touched
    (tmp_path / "labels.csv").write_text("barcode\nAAAC-1\n")  # a single-file source changes too
    assert local_sources_state(spec) != local_sources_state({**spec, "labels": None})
    # a missing path gives a distinct marker; only file: sources count; a relative file: URL is taken from the cwd
    assert local_sources_state({"url": f"file://{tmp_path}/nope"}).startswith("missing-")
    assert local_sources_state({"url": "https://example.org/x.h5"}) == ""
    assert local_sources_state({"source": "simulated", "cell_types": {"T": 1}}) == ""
    monkeypatch.chdir(tmp_path)
    assert local_sources_state({"url": "file:src"}) == local_sources_state({"url": "file:src"})
    assert local_sources_state({"url": "file:src"}) != local_sources_state({"url": "file:elsewhere"})
    assert not local_sources_state({"url": "file:src"}).startswith("missing-")


def test_each_stage_is_given_only_the_keys_it_reads():
    from scmix.data.fetch import download_spec, parse_spec

    spec = {"source": "tenx", "url": "https://x/m.tar.gz", "sha256": "a" * 64, "path": "hg19", "gex_only": False,
            "labels": {"url": "file:l.csv", "barcode_column": "bc", "min_match": 0.5}, "qc": {"min_genes": 3},
            "split": {"eval_fraction": 0.3}}  # fmt: skip
    assert download_spec(spec) == {"source": "tenx", "url": "https://x/m.tar.gz", "sha256": "a" * 64,
                                   "labels": {"url": "file:l.csv"}}  # fmt: skip
    assert parse_spec(spec) == {k: v for k, v in spec.items() if k not in ("qc", "split")}
    sim = {"source": "simulated", "n_cells": 50, "cell_types": {"T": 1.0}, "qc": {}, "split": {}}
    assert download_spec(sim) == {"source": "simulated", "n_cells": 50, "cell_types": {"T": 1.0}}


def test_gz_files_inside_a_copied_folder_are_checked(tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "good.tsv.gz").write_bytes(PAYLOAD)
    (src / "sub" / "bad.tsv.gz").write_bytes(PAYLOAD[: len(PAYLOAD) // 2])
    url = f"file://{src}"
    with pytest.raises(ScmixInputError) as err:
        fetch_dataset("d", {"source": "tenx", "url": url}, tmp_path / "out" / "d")
    assert str(err.value).startswith(
        f"dataset 'd', url '{url}', file 'sub/bad.tsv.gz': corrupt or truncated gzip file: Compressed file ended"
    )
    assert list((tmp_path / "out").iterdir()) == []  # no copy, no temporary folder
    (src / "sub" / "bad.tsv.gz").write_bytes(PAYLOAD)
    out = fetch_dataset("d", {"source": "tenx", "url": url}, tmp_path / "out" / "d")
    assert (out / "src" / "sub" / "bad.tsv.gz").read_bytes() == PAYLOAD


def test_copies_keep_the_sources_restrictions(server, tmp_path, umask_022):
    secret = tmp_path / "secret.txt"
    secret.write_text("token")
    secret.chmod(0o600)
    mode = lambda p: p.stat().st_mode & 0o777  # noqa: E731
    assert mode(fetch(f"file://{secret}", tmp_path / "copy.txt")) == 0o600
    src = tmp_path / "src"
    (src / "private").mkdir(parents=True)
    (src / "private" / "key.txt").write_text("k")
    (src / "private" / "key.txt").chmod(0o600)
    (src / "run.sh").write_text("#!/bin/sh\n")
    (src / "run.sh").chmod(0o775)  # execute and group-write bits: dropped by 0o666 and the umask
    (src / "private").chmod(0o700)
    try:
        out = fetch(f"file://{src}", tmp_path / "folder")
    finally:
        (src / "private").chmod(0o755)
    assert mode(out) == 0o755 and mode(out / "private") == 0o700  # a private folder stays private
    assert mode(out / "private" / "key.txt") == 0o600 and mode(out / "run.sh") == 0o644
    # a download over http is 0o666 less the umask; a 0600 .gz decompressed and a 0600 archive extracted stay 0600
    assert mode(fetch(f"{server}/data.tsv.gz", tmp_path / "web.tsv.gz")) == 0o644
    (tmp_path / "s.tsv.gz").write_bytes(PAYLOAD)
    (tmp_path / "s.tsv.gz").chmod(0o600)
    _tar_with("m/ok.txt", tmp_path / "s.tar.gz")
    (tmp_path / "s.tar.gz").chmod(0o600)
    spec = {"source": "h5ad", "url": f"file://{tmp_path}/s.tsv.gz", "files": [{"url": f"file://{tmp_path}/s.tar.gz"}],
            "decompress": True}  # fmt: skip
    raw = fetch_dataset("d", spec, tmp_path / "raw")
    assert mode(raw / "s.tsv") == mode(raw / "s.tar.gz") == mode(raw / "s" / "m" / "ok.txt") == 0o600


def test_messages_name_the_url_as_written_never_a_temporary_path(server, tmp_path, monkeypatch):
    def message(spec, **kw):
        with pytest.raises(ScmixInputError) as err:
            fetch_dataset("d", spec, tmp_path / "raw" / "d", backoff=0.01, **kw)
        text = str(err.value)
        assert ".tmp" not in text and ".part" not in text and ".extract" not in text, text
        assert not (tmp_path / "raw" / "d").exists()
        return text

    digest = hashlib.sha256(PAYLOAD).hexdigest()
    url = f"{server}/data.tsv.gz"
    assert message({"url": url, "sha256": "0" * 64}) == (
        f"dataset 'd', url '{url}': sha256 mismatch: expected {'0' * 64}, got {digest}"
    )
    assert message({"url": f"{server}/truncated.tsv.gz"}).startswith(
        f"dataset 'd', url '{server}/truncated.tsv.gz', file 'truncated.tsv.gz': corrupt or truncated gzip file:"
    )
    assert message({"url": f"{server}/missing.gz"}) == (
        f"dataset 'd', url '{server}/missing.gz': cannot fetch: HTTP Error 404: Not Found"
    )
    Handler.fail_first, Handler.requests = 10, 0
    assert message({"url": url}, retries=1) == f"dataset 'd', url '{url}': download failed after 2 attempts: HTTP 503"
    Handler.fail_first = 0
    (tmp_path / "cut.tar.gz").write_bytes(PAYLOAD[: len(PAYLOAD) // 2])  # a cut .tar.gz: fails its gzip check
    (tmp_path / "bad.zip").write_bytes(b"PK\x03\x04 not really a zip")
    (tmp_path / "text.tar.gz").write_bytes(PAYLOAD)  # sound gzip, but no tar inside
    for name in ("bad.zip", "text.tar.gz"):
        text = message({"url": f"file://{tmp_path}/{name}"})
        assert text.startswith(f"dataset 'd', url 'file://{tmp_path}/{name}': corrupt or truncated archive:")
        assert "\n" not in text  # one line (tarfile lists each method it tried on a line of its own)
    assert message({"url": f"file://{tmp_path}/cut.tar.gz"}).startswith(
        f"dataset 'd', url 'file://{tmp_path}/cut.tar.gz', file 'cut.tar.gz': corrupt or truncated gzip file"
    )
    nope = f"file://{tmp_path}/nope.h5"
    assert message({"url": nope}) == f"dataset 'd', url '{nope}': no such file or folder"
    monkeypatch.chdir(tmp_path)
    assert message({"url": "file:data/nope.h5"}) == (
        f"dataset 'd', url 'file:data/nope.h5': no such file or folder (looked for {tmp_path}/data/nope.h5: "
        "relative to the working directory)"
    )
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "x.txt").write_text("x")
    assert (fetch_dataset("d", {"url": "file:data/x.txt"}, tmp_path / "raw" / "d") / "x.txt").read_text() == "x"


# ------------------------------------------------------------------------------------ a folder source's links
def _real_mex(shared_data, folder):
    """A real 10x v3 MEX folder (scanpy's fixture), copied: the kind of folder a file: source names."""
    shutil.copytree(shared_data / "tenx" / "scanpy_fixtures" / "3.0.0" / "filtered_feature_bc_matrix", folder)
    return folder


def test_a_folder_source_copies_its_regular_files_and_refuses_any_link(shared_data, tmp_path, umask_022, monkeypatch):
    from scmix.data.fetch import local_sources_state

    src = _real_mex(shared_data, tmp_path / "mex")
    secret = tmp_path / "etc" / "shadow"  # stands in for the password hashes
    secret.parent.mkdir()
    secret.write_text("root:$6$hash")
    secret.chmod(0o600)
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_ed25519").write_text("private key")
    (home / ".ssh").chmod(0o700)
    url = f"file://{src}"
    out = tmp_path / "raw" / "d"

    def refused(rel, what):
        with pytest.raises(ScmixInputError) as err:
            fetch_dataset("d", {"source": "tenx", "url": url}, out)
        assert str(err.value) == (
            f"dataset 'd', url '{url}', file '{rel}': {what}; a folder source copies only the regular files and "
            "folders inside it, never a link or a special file: "
            + ("put the file itself in the folder, or name it by a url of its own" if "link" in what else
               "remove it from the folder")
        )  # fmt: skip
        assert list((tmp_path / "raw").iterdir()) == []  # nothing copied, no temporary folder

    (src / "shadow").symlink_to(secret)
    with monkeypatch.context() as m:  # the whole folder is checked before any file of it is read
        m.setattr(
            "scmix.data.fetch._open_regular", lambda path: pytest.fail(f"{path} read before the link was refused")
        )
        refused("shadow", f"is a link (to {secret})")
    (src / "shadow").unlink()
    (src / "sub").mkdir()
    (src / "sub" / "home").symlink_to(home)  # a link to a folder: not followed into
    refused("sub/home", f"is a link (to {home})")
    # the fingerprint never reads through a link: what the linked folder holds does not change it
    state = local_sources_state({"url": url})
    (home / ".ssh" / "id_ed25519").write_text("another key")
    assert local_sources_state({"url": url}) == state
    (src / "sub" / "home").unlink()
    (src / "sub" / "home").symlink_to(secret)  # the same name, another target: the state changes
    assert local_sources_state({"url": url}) != state
    (src / "sub" / "home").unlink()
    (src / "again.mtx.gz").symlink_to("matrix.mtx.gz")  # a link that stays inside the folder is refused too
    refused("again.mtx.gz", "is a link (to matrix.mtx.gz)")
    (src / "again.mtx.gz").unlink()
    os.mkfifo(src / "sub" / "pipe")  # refused, not waited on
    refused("sub/pipe", "is a named pipe, not a regular file")
    (src / "sub" / "pipe").unlink()

    (src / "sub").chmod(0o700)
    raw = fetch_dataset("d", {"source": "tenx", "url": url}, out)
    for name in ("matrix.mtx.gz", "features.tsv.gz", "barcodes.tsv.gz"):
        assert (raw / "mex" / name).read_bytes() == (src / name).read_bytes()
    assert sorted(p.name for p in (raw / "mex").iterdir()) == ["barcodes.tsv.gz", "features.tsv.gz", "matrix.mtx.gz",
                                                                 "sub"]  # fmt: skip
    assert (raw / "mex" / "sub").stat().st_mode & 0o777 == 0o700  # never wider than the source

    # the path the url itself names is the user's choice: a link there is followed; it must end at a regular file
    (tmp_path / "matrix_link.mtx.gz").symlink_to(src / "matrix.mtx.gz")
    copy = fetch(f"file://{tmp_path}/matrix_link.mtx.gz", tmp_path / "copy.mtx.gz", dataset="d")
    assert copy.read_bytes() == (src / "matrix.mtx.gz").read_bytes()
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(ScmixInputError) as err:
        fetch(f"file://{tmp_path}/fifo", tmp_path / "fifo.copy", dataset="d")
    assert str(err.value) == f"dataset 'd', url 'file://{tmp_path}/fifo': is a named pipe, not a regular file or folder"
    assert not (tmp_path / "fifo.copy").exists()


# --------------------------------------------------------------------------------------- archive expansion
ZEROS = 64 << 20  # 64 MiB of zeros: about 64 KiB deflated, 1,000 times smaller


def _zip_bomb(path, size=ZEROS):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        with zf.open("zeros.bin", "w") as fh:
            block = bytes(1 << 20)
            for _ in range(size >> 20):
                fh.write(block)
    return path


def test_an_archive_declaring_more_than_the_expansion_cap_or_the_free_space_writes_nothing(tmp_path, monkeypatch):
    from scmix.data.fetch import gunzip

    bomb = _zip_bomb(tmp_path / "bomb.zip")
    kib = bomb.stat().st_size / 1024
    assert kib < 100
    url = f"file://{bomb}"
    with pytest.raises(ScmixInputError) as err:
        fetch_dataset("d", {"source": "h5ad", "url": url}, tmp_path / "raw" / "d")
    ratio = round(ZEROS / bomb.stat().st_size)
    assert str(err.value) == (
        f"dataset 'd', url '{url}': the archive's members declare 64.0 MiB, {ratio} times its own {kib:.1f} KiB, "
        "more than download.max_expansion (200) allows; refusing to extract (a compression bomb; or a file that "
        "really compresses that well: then raise download.max_expansion)"
    )
    assert list((tmp_path / "raw").iterdir()) == []
    # the same for a tar.gz (refused at the first header, its data never decompressed) and a .gz to decompress
    with tarfile.open(tmp_path / "bomb.tar.gz", "w:gz") as tf:
        info = tarfile.TarInfo("zeros.bin")
        info.size = ZEROS
        tf.addfile(info, io.BufferedReader(io.BytesIO(bytes(ZEROS))))
    with pytest.raises(ScmixInputError, match="the archive's members declare 64.0 MiB, .* refusing to extract"):
        extract(tmp_path / "bomb.tar.gz", dataset="d")
    (tmp_path / "zeros.bin.gz").write_bytes(gzip.compress(bytes(ZEROS)))
    limit = 200 * (tmp_path / "zeros.bin.gz").stat().st_size
    with pytest.raises(ScmixInputError) as err:
        gunzip(tmp_path / "zeros.bin.gz", dataset="d")
    assert str(err.value).startswith(
        f"dataset 'd', file '{tmp_path}/zeros.bin.gz': decompresses to more than {limit / 2**20:.1f} MiB, the most "
        "download.max_expansion (200) allows"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bomb.tar.gz", "bomb.zip", "raw", "zeros.bin.gz"]

    # a genuine file that compresses that well: the cap raised, it extracts, unless the disk has not the room
    monkeypatch.setattr("scmix.data.fetch.shutil.disk_usage", lambda p: shutil._ntuple_diskusage(10 << 30, 0, 10 << 20))
    with pytest.raises(ScmixInputError) as err:
        fetch_dataset("d", {"source": "h5ad", "url": url}, tmp_path / "raw" / "d", max_expansion=2000)
    assert str(err.value) == (
        f"dataset 'd', url '{url}': the archive's members declare 64.0 MiB, but only 10.0 MiB is free on the disk of "
        f"{tmp_path}/raw/d; free space there (or give the workflow a larger disk) and rerun"
    )
    assert list((tmp_path / "raw").iterdir()) == []
    monkeypatch.undo()
    raw = fetch_dataset("d", {"source": "h5ad", "url": url}, tmp_path / "raw" / "d", max_expansion=2000)
    assert (raw / "bomb" / "zeros.bin").stat().st_size == ZEROS


def test_a_zip_member_writes_no_more_than_it_declares(tmp_path):
    """The declared sizes are what is checked; a member that declares 1 KiB and holds 64 MiB stops at 1 KiB."""
    bomb = _zip_bomb(tmp_path / "liar.zip")
    data = bytearray(bomb.read_bytes())
    for signature, offset in ((b"PK\x01\x02", 24), (b"PK\x03\x04", 22)):  # central and local headers
        at = data.index(signature) + offset
        data[at : at + 4] = (1024).to_bytes(4, "little")
    bomb.write_bytes(bytes(data))
    assert zipfile.ZipFile(bomb).infolist()[0].file_size == 1024
    with pytest.raises(ScmixInputError) as err:
        extract(bomb, dataset="d")
    assert (
        str(err.value) == f"dataset 'd', file '{bomb}': corrupt or truncated archive: Bad CRC-32 for file 'zeros.bin'"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["liar.zip"]


# ------------------------------------------------------------------------------------------------ a full disk
class _FullDisk:
    """A file being written on a full disk: every write is refused."""

    def __init__(self, fh):
        self.fh = fh

    def write(self, block):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.fh.close()


def test_a_full_disk_is_a_full_disk_naming_the_folder_never_a_corrupt_input(server, tmp_path, monkeypatch):
    from scmix.data.fetch import _create, gunzip
    from scmix.errors import WriteRefused, refused_write_line

    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "a.tsv.gz").write_bytes(PAYLOAD)
    (tmp_path / "a.tsv.gz").write_bytes(PAYLOAD)
    with zipfile.ZipFile(tmp_path / "a.zip", "w") as zf:
        zf.writestr("a.tsv", "gene\tcount\n")
    monkeypatch.setattr("scmix.data.fetch._create", lambda path, mode: _FullDisk(_create(path, mode)))
    out = tmp_path / "raw" / "d"
    line = f"disk full (No space left on device) writing {out}; free space in {out.parent} (or give the workflow a "
    line += "larger disk) and rerun"
    for url in (f"file://{src}", f"file://{tmp_path}/a.tsv.gz", f"{server}/data.tsv.gz"):  # a folder, a file, http
        with pytest.raises(WriteRefused) as err:
            fetch_dataset("d", {"source": "tenx", "url": url}, out, retries=0)
        assert (err.value.errno, err.value.filename) == (errno.ENOSPC, str(out))
        assert refused_write_line(err.value) == line
        assert list((tmp_path / "raw").iterdir()) == []
    for unpack, path in ((gunzip, tmp_path / "a.tsv.gz"), (extract, tmp_path / "a.zip")):
        with pytest.raises(WriteRefused) as err:
            unpack(path, dataset="d", folder=out)
        assert err.value.filename == str(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tsv.gz", "a.zip", "raw", "src"]


def test_the_real_10x_tarball_on_a_disk_too_small_for_it(shared_data, tmp_path, small_tmpfs):
    """On a real full file system: the copy that does not fit is a full disk naming the raw folder; an archive
    whose members do not fit in what is left is refused before a byte is extracted, naming the free space."""
    from scmix.errors import WriteRefused

    tarball = shared_data / "pbmc3k" / "pbmc3k_filtered_gene_bc_matrices.tar.gz"  # 6.8 MiB, 25.6 MiB extracted
    url = f"file://{tarball}"
    raw = small_tmpfs(tmp_path / "small" / "raw", "4m")
    with pytest.raises(WriteRefused) as err:
        fetch_dataset("pbmc3k", {"source": "tenx", "url": url}, raw / "pbmc3k")
    assert (err.value.errno, err.value.filename) == (errno.ENOSPC, str(raw / "pbmc3k"))
    assert list(raw.iterdir()) == []

    raw = small_tmpfs(tmp_path / "larger" / "raw", "16m")
    with pytest.raises(ScmixInputError) as err:
        fetch_dataset("pbmc3k", {"source": "tenx", "url": url}, raw / "pbmc3k")
    assert re.fullmatch(
        rf"dataset 'pbmc3k', url '{url}': the archive's members declare 25.6 MiB, but only \d.\d MiB is free on the "
        rf"disk of {raw}/pbmc3k; free space there \(or give the workflow a larger disk\) and rerun",
        str(err.value),
    ), str(err.value)
    assert list(raw.iterdir()) == []
