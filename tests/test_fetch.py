"""Fetching: file:// and a local HTTP server on 127.0.0.1 (retries, checksums, truncation, atomicity)."""

import gzip
import hashlib
import http.server
import io
import tarfile
import threading
import zipfile

import pytest

from scmix.errors import ScmixInputError
from scmix.fetch import extract, fetch, fetch_dataset

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
    from scmix.fetch import local_name

    url = "https://www.ncbi.nlm.nih.gov/geo/download/?acc=GSE217460&format=file&file=GSE217460%5Fx%2Eh5ad%2Egz"
    assert local_name(url) == "GSE217460_x.h5ad.gz"
    assert local_name("https://cf.10xgenomics.com/samples/pbmc3k_filtered_gene_bc_matrices.tar.gz?x=1") == (
        "pbmc3k_filtered_gene_bc_matrices.tar.gz"
    )
    out = fetch_dataset("d", {"source": "h5ad", "url": f"{server}/data.tsv.gz", "decompress": True}, tmp_path / "d")
    assert (out / "data.tsv").read_bytes() == gzip.decompress(PAYLOAD) and not (out / "data.tsv.gz").exists()


def test_corrupt_deflate_data_is_a_clear_error_not_a_crash(tmp_path):
    from scmix.fetch import check_gzip

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
