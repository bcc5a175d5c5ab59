"""The download and parse rules under Snakemake, on a tiny 10x MEX folder fetched through a file: URL: a source
changed in place is copied again, a checksum mismatch fails once (never retried), a failed parse of a local
copy removes it, and a dataset's qc: block is no reason to download or parse again. Only these two stages run."""

import functools
import gzip
import http.server
import threading

import pytest
import yaml
from snakerun import snakemake

GENES = [f"G{i}" for i in range(6)]
BARCODES = [f"AAACCTG{i}-1" for i in range(5)]


def build_mex(folder):
    """A minimal 10x v3 MEX: 6 genes x 5 barcodes, integer counts."""
    folder.mkdir(parents=True)
    entries = [(g + 1, c + 1, (g + c) % 4 + 1) for g in range(len(GENES)) for c in range(len(BARCODES))]
    mtx = "%%MatrixMarket matrix coordinate integer general\n%\n"
    mtx += f"{len(GENES)} {len(BARCODES)} {len(entries)}\n" + "".join(f"{g} {c} {v}\n" for g, c, v in entries)
    features = "".join(f"ENSG{i:011d}\t{g}\tGene Expression\n" for i, g in enumerate(GENES))
    for name, text in (("matrix.mtx.gz", mtx), ("features.tsv.gz", features),
                       ("barcodes.tsv.gz", "".join(b + "\n" for b in BARCODES))):  # fmt: skip
        (folder / name).write_bytes(gzip.compress(text.encode(), mtime=0))
    return folder


def write_config(path, datasets):
    cfg = {
        "seeds": [0],
        "datasets": datasets,
        "mixes": {"m": {"total_cells": 4, "datasets": {name: 1.0 for name in datasets}}},
        "models": {"ldvae": {"architecture": "ldvae", "epochs": 1}},
    }
    path.write_text(yaml.safe_dump(cfg))
    return path


def run(workdir, config, *args):
    res = snakemake(workdir, "--cores", "1", *args, config=config)
    return res, res.stdout + res.stderr


def planned(output: str) -> set[str]:
    """The rules a dry run would run."""
    return {line.split()[-1].rstrip(":") for line in output.splitlines() if line.startswith(("rule ", "localrule "))}


def error_lines(text: str) -> list[str]:
    """The scmix error lines (without their time stamp) of a log or of Snakemake's output."""
    return [line.split(" scmix ERROR ", 1)[1] for line in text.splitlines() if " scmix ERROR " in line]


def test_a_source_folder_changed_in_place_is_copied_again(tmp_path):
    src = build_mex(tmp_path / "mex")
    workdir = tmp_path / "wd"
    workdir.mkdir()
    # a relative file: URL, from the working directory: the state is taken where the copy is made
    config = write_config(tmp_path / "config.yaml", {"pbmc": {"source": "tenx", "url": "file:../mex"}})
    res, out = run(workdir, config, "resources/raw/pbmc")
    assert res.returncode == 0, out[-3000:]
    assert (workdir / "resources/raw/pbmc/mex/barcodes.tsv.gz").read_bytes() == (src / "barcodes.tsv.gz").read_bytes()

    res, out = run(workdir, config, "-n", "resources/raw/pbmc")
    assert res.returncode == 0 and "Nothing to be done" in out, out[-3000:]

    # a file inside the folder fixed in place: another size (and mtime)
    (src / "features.tsv.gz").write_bytes(gzip.compress(gzip.decompress((src / "features.tsv.gz").read_bytes()), 1))
    res, out = run(workdir, config, "-n", "resources/raw/pbmc")
    assert res.returncode == 0 and planned(out) == {"download"}, out[-3000:]
    assert "reason: Params have changed since last execution" in out

    res, out = run(workdir, config, "resources/raw/pbmc")
    assert res.returncode == 0, out[-3000:]
    assert (workdir / "resources/raw/pbmc/mex/features.tsv.gz").read_bytes() == (src / "features.tsv.gz").read_bytes()
    res, out = run(workdir, config, "-n", "resources/raw/pbmc")
    assert "Nothing to be done" in out, out[-3000:]


def test_a_checksum_mismatch_fails_once_with_one_line_and_leaves_nothing(tmp_path):
    src = build_mex(tmp_path / "mex")
    url = f"file://{src}/matrix.mtx.gz"
    config = write_config(tmp_path / "config.yaml", {"pbmc": {"source": "tenx", "url": url, "sha256": "0" * 64}})
    # --retries 2 as the SLURM profile sets it: the download rule's own retries: 0 wins
    res, out = run(tmp_path, config, "--retries", "2", "--show-failed-logs", "resources/raw/pbmc")
    assert res.returncode == 1
    assert "Traceback" not in out and "Trying to restart job" not in out
    got = __import__("hashlib").sha256((src / "matrix.mtx.gz").read_bytes()).hexdigest()
    expected = f"rule download: dataset 'pbmc', url '{url}': sha256 mismatch: expected {'0' * 64}, got {got}"
    # one attempt: the line the job wrote to stderr, and the same line of its log that Snakemake shows
    mismatches = [line for line in out.splitlines() if "sha256 mismatch" in line]
    assert len(mismatches) == 2, out[-3000:]
    assert error_lines(out)[0] == expected
    assert error_lines((tmp_path / "logs/download/pbmc.log").read_text()) == [expected]
    assert not (tmp_path / "resources/raw/pbmc").exists()
    assert not list(tmp_path.glob("resources/raw/.*"))  # nor any temporary folder


@pytest.fixture
def web_root(tmp_path):
    """A local HTTP server on 127.0.0.1 serving tmp_path/web."""
    root = tmp_path / "web"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def test_a_failed_parse_removes_a_local_copy_and_keeps_a_download(tmp_path, web_root):
    not_mex = tmp_path / "notes"
    not_mex.mkdir()
    (not_mex / "readme.txt").write_text("no matrix here\n")
    web, base = web_root
    (web / "readme.txt").write_text("no matrix here either\n")
    datasets = {"local": {"source": "tenx", "url": f"file://{not_mex}"},
                "web": {"source": "tenx", "url": f"{base}/readme.txt"}}  # fmt: skip
    config = write_config(tmp_path / "config.yaml", datasets)
    workdir = tmp_path / "wd"
    workdir.mkdir()
    res, out = run(workdir, config, "--keep-going", "results/raw/local.h5ad", "results/raw/web.h5ad")
    assert res.returncode == 1 and "Traceback" not in out, out[-3000:]
    what = "no 10x matrix (matrix.mtx[.gz] folder or .h5); set 'path' to choose"
    local_log = (workdir / "logs/parse/local.log").read_text()
    assert error_lines(local_log) == [
        f"rule parse: dataset 'local', file 'resources/raw/local': {what}; the local copy resources/raw/local was "
        "removed (the next run copies the source again)"
    ]
    assert not (workdir / "resources/raw/local").exists() and not (workdir / "results/raw/local.h5ad").exists()
    assert (not_mex / "readme.txt").exists()  # the source itself is never touched
    # a download over http is kept, and the line says where
    assert error_lines((workdir / "logs/parse/web.log").read_text()) == [
        f"rule parse: dataset 'web', file 'resources/raw/web': {what}; the raw files are kept in resources/raw/web "
        "(delete it to download again)"
    ]
    assert (workdir / "resources/raw/web/readme.txt").exists() and not (workdir / "results/raw/web.h5ad").exists()
    # the next run copies the local source again (it was removed), and downloads nothing
    res, out = run(workdir, config, "-n", "results/raw/local.h5ad", "results/raw/web.h5ad")
    assert res.returncode == 0
    assert "reason: Missing output files: resources/raw/local" in out
    assert "Missing output files: resources/raw/web" not in out


def test_editing_a_datasets_qc_block_neither_downloads_nor_parses_again(tmp_path):
    src = build_mex(tmp_path / "mex")
    spec = {"source": "tenx", "url": f"file://{src}", "qc": {"min_genes": 1}}
    config = write_config(tmp_path / "config.yaml", {"pbmc": spec})
    res, out = run(tmp_path, config, "results/raw/pbmc.h5ad")
    assert res.returncode == 0, out[-3000:]
    spec["qc"] = {"min_genes": 3, "min_counts": 5}
    spec["split"] = {"eval_fraction": 0.4}
    edited = write_config(tmp_path / "edited.yaml", {"pbmc": spec})
    res, out = run(tmp_path, edited, "-n", "results/raw/pbmc.h5ad")
    assert res.returncode == 0 and "Nothing to be done" in out, out[-3000:]
    # while an edit that parsing reads (gex_only) replans the parse only
    spec["gex_only"] = False
    res, out = run(tmp_path, write_config(tmp_path / "gex.yaml", {"pbmc": spec}), "-n", "results/raw/pbmc.h5ad")
    assert res.returncode == 0 and planned(out) == {"parse"}, out[-3000:]


def test_a_link_in_a_source_folder_and_a_zip_bomb_stop_the_download_in_one_line(tmp_path):
    src = build_mex(tmp_path / "mex")
    secret = tmp_path / "private" / "id_ed25519"
    secret.parent.mkdir(mode=0o700)
    secret.write_text("a key")
    (src / "key").symlink_to(secret)
    url = f"file://{src}"
    config = write_config(tmp_path / "config.yaml", {"pbmc": {"source": "tenx", "url": url}})
    workdir = tmp_path / "wd"
    workdir.mkdir()
    res, out = run(workdir, config, "resources/raw/pbmc")
    assert res.returncode == 1 and "Traceback" not in out, out[-3000:]
    assert error_lines((workdir / "logs/download/pbmc.log").read_text()) == [
        f"rule download: dataset 'pbmc', url '{url}', file 'key': is a link (to {secret}); a folder source copies "
        "only the regular files and folders inside it, never a link or a special file: put the file itself in the "
        "folder, or name it by a url of its own"
    ]
    assert not list(workdir.glob("resources/raw/*")) and not list(workdir.glob("resources/raw/.*"))

    # a zip of 4 MiB of zeros (4 KiB): over the cap; download.max_expansion raised, it is extracted
    import zipfile

    with zipfile.ZipFile(tmp_path / "zeros.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("zeros.bin", bytes(4 << 20))
    url = f"file://{tmp_path}/zeros.zip"
    config = write_config(tmp_path / "bomb.yaml", {"pbmc": {"source": "tenx", "url": url}})
    res, out = run(workdir, config, "resources/raw/pbmc")
    assert res.returncode == 1 and "Traceback" not in out, out[-3000:]
    [line] = error_lines((workdir / "logs/download/pbmc.log").read_text())
    assert line.startswith(f"rule download: dataset 'pbmc', url '{url}': the archive's members declare 4.0 MiB, ")
    assert line.endswith("more than download.max_expansion (200) allows; refusing to extract (a compression bomb; or a "
                         "file that really compresses that well: then raise download.max_expansion)")  # fmt: skip
    assert not list(workdir.glob("resources/raw/*")) and not list(workdir.glob("resources/raw/.*"))
    cfg = yaml.safe_load(config.read_text())
    cfg["download"] = {"max_expansion": 2000}
    config.write_text(yaml.safe_dump(cfg))
    res, out = run(workdir, config, "resources/raw/pbmc")
    assert res.returncode == 0, out[-3000:]
    assert (workdir / "resources/raw/pbmc/zeros/zeros.bin").stat().st_size == 4 << 20
