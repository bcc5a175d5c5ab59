"""Bad names, bad configs and bad data end in one clear line, touch nothing they should not, and leave no partial
output: the names are refused at start-up, config errors say the key first, QC that empties a dataset, labels a
model needs and gene spaces too small to share stop the job that finds them, with the dataset named."""

import copy
import os
import subprocess
import sys

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import yaml
from snakemake.utils import validate
from snakerun import REPO, TINY, snakemake

from scmix import configfile, names, study
from scmix.errors import ScmixInputError
from scmix.rulecall import check_outputs

SCHEMA = REPO / "schemas" / "config.schema.yaml"


def tiny() -> dict:
    return yaml.safe_load(TINY.read_text())


def write(path, cfg) -> str:
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))  # a simulated dataset depends on its key order
    return str(path)


def error_lines(res) -> list[str]:
    """The one-line messages of failed scmix jobs (each is printed by the job and again by Snakemake's log)."""
    out = res.stdout + res.stderr
    return list(
        dict.fromkeys(line.split(" scmix ERROR ", 1)[1] for line in out.splitlines() if " scmix ERROR " in line)
    )


# ---------------------------------------------------------------------------------------------------------- names
def renamed(cfg, section, old, new):
    cfg[section] = {new if k == old else k: v for k, v in cfg[section].items()}
    if section == "datasets":
        for recipe in cfg["mixes"].values():
            recipe["datasets"] = {new if k == old else k: v for k, v in recipe["datasets"].items()}
    return cfg


@pytest.mark.parametrize("section, old", [("datasets", "tumour"), ("mixes", "blood_only"), ("models", "ldvae")])
@pytest.mark.parametrize("bad", ["..", ".", "a..b", ".hidden", "a/b", "-x"])
def test_names_that_would_escape_their_folder_are_refused_by_the_schema(section, old, bad):
    cfg = renamed(tiny(), section, old, bad)
    try:
        validate(cfg, str(SCHEMA))
    except Exception as err:  # snakemake's WorkflowError wraps the jsonschema error
        message = study.schema_error_message(err.__context__)
    else:
        pytest.fail(f"{section} name {bad!r} passed the schema")
    assert message == (f"config: {section} has the name {bad!r}, which is not allowed: a name is {names.NAME_RULE}, "
                       "since it becomes a folder name")  # fmt: skip


def test_the_schema_and_the_package_share_one_name_pattern():
    schema = yaml.safe_load(SCHEMA.read_text())
    assert schema["definitions"]["name"]["pattern"] == names.NAME_PATTERN
    for section in ("datasets", "mixes", "models", "sweeps"):
        assert schema["properties"][section]["propertyNames"] == {"$ref": "#/definitions/name"}
    for good in ("blood_base", "base+kang", "sad2_256-128_z128_zinb", "3ca", "A"):
        assert study.check_name(good, "datasets") == good


def test_a_dataset_named_dotdot_stops_at_start_up_and_touches_nothing(tmp_path):
    """``..`` once passed the schema, and the download job's rmtree("resources/raw/..") removed all of resources/."""
    keep = tmp_path / "resources" / "raw" / "blood" / "counts.mtx"
    keep.parent.mkdir(parents=True)
    keep.write_text("another dataset's raw data\n")
    config = write(tmp_path / "dotdot.yaml", renamed(tiny(), "datasets", "tumour", ".."))
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    res = snakemake(tmp_path, "--cores", "1", config=config)
    assert res.returncode != 0
    lines = (res.stdout + res.stderr).splitlines()
    i = next(i for i, line in enumerate(lines) if line.startswith("WorkflowError"))
    assert lines[i + 1] == (f"config: datasets has the name '..', which is not allowed: a name is {names.NAME_RULE}, "
                            "since it becomes a folder name")  # fmt: skip
    assert "Traceback" not in res.stdout + res.stderr and len(lines) < 8
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if ".snakemake" not in p.parts) == before
    assert keep.read_text() == "another dataset's raw data\n"


def test_the_download_refuses_to_clean_up_anything_but_its_own_folder(tmp_path):
    from scmix.data.fetch import fetch_dataset

    keep = tmp_path / "resources" / "keep.txt"
    keep.parent.mkdir()
    keep.write_text("x")
    spec = {"source": "h5ad", "url": f"file://{keep}"}
    for name, out in (("..", tmp_path / "resources" / "raw" / ".."), ("a", tmp_path / "resources" / "raw" / "..")):
        with pytest.raises(ScmixInputError, match="refusing to write the raw folder"):
            fetch_dataset(name, spec, out)
    assert keep.read_text() == "x" and sorted(p.name for p in (tmp_path / "resources").iterdir()) == ["keep.txt"]


def test_no_job_writes_outside_results_or_resources(tmp_path):
    (tmp_path / "results").mkdir()
    check_outputs(["results/mixes/m/seed0.h5ad", "resources/raw/blood"], tmp_path)  # the folders are made
    assert (tmp_path / "results" / "mixes" / "m").is_dir() and not list((tmp_path / "results/mixes/m").iterdir())
    for bad in ("results/../model.pt", "seed0/model.pt", "resources/raw/..", "results", "/etc/x"):
        with pytest.raises(ScmixInputError, match="lies outside results/ and resources/"):
            check_outputs([bad], tmp_path)


# ------------------------------------------------------------------------------------------------- config errors
@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda c: c["models"]["ldvae"].update(hiden=[64]),
         "config: models.ldvae: Additional properties are not allowed ('hiden' was unexpected)"),
        (lambda c: c.update(seedz=[0]), "config: (top level): Additional properties are not allowed ('seedz' was "
                                        "unexpected)"),
        (lambda c: c["qc"].update(max_pct_mito=150), "config: qc.max_pct_mito: 150 is greater than the maximum of 100"),
        (lambda c: c["datasets"].update(pb={"source": "tenx", "url": "ftp://x/y.tar.gz"}),
         "config: datasets.pb.url: 'ftp://x/y.tar.gz' does not match '^(https?://|file:)'"),
    ],
)  # fmt: skip
def test_a_schema_error_is_one_line_with_the_key_first(edit, message):
    cfg = tiny()
    edit(cfg)
    with pytest.raises(Exception) as err:
        validate(cfg, str(SCHEMA))
    assert study.schema_error_message(err.value.__context__) == message


def test_snakemake_prints_the_decisive_line_not_the_schema(tmp_path):
    cfg = tiny()
    cfg["models"]["ldvae"]["hiden"] = [64]
    res = snakemake(tmp_path, "-n", config=write(tmp_path / "bad.yaml", cfg))
    out = (res.stdout + res.stderr).splitlines()
    assert res.returncode != 0 and len(out) < 8, out  # it printed the whole schema (1,237 lines) before
    assert "config: models.ldvae: Additional properties are not allowed ('hiden' was unexpected)" in out


# ------------------------------------------------------------------------------------------ one line per bad input
def panel(genes, n=150, seed=0) -> ad.AnnData:
    """A small count matrix whose every cell passes the tiny config's QC."""
    X = sp.csr_matrix(np.random.default_rng(seed).poisson(1.5, (n, len(genes))).astype(np.int32))
    return ad.AnnData(X, obs=pd.DataFrame(index=[f"c{i}" for i in range(n)]), var=pd.DataFrame(index=genes))


@pytest.fixture(scope="module")
def bad_study(tmp_path_factory):
    """One Snakemake run (--keep-going) of a study with two faults: QC removes every cell of one dataset, and two
    panels share 29 of their 558 genes. (workdir, result)"""
    work = tmp_path_factory.mktemp("bad_study")
    (work / "src").mkdir()
    panel([f"G{i}" for i in range(558)]).write_h5ad(work / "src" / "a.h5ad")
    panel([f"G{i}" for i in range(529, 1087)], seed=1).write_h5ad(work / "src" / "b.h5ad")
    cfg = tiny()
    cfg["datasets"]["blood"]["qc"] = {"min_genes": 100000}
    cfg["datasets"]["a"] = {"source": "h5ad", "url": "file:src/a.h5ad"}
    cfg["datasets"]["b"] = {"source": "h5ad", "url": "file:src/b.h5ad"}
    cfg["mixes"] = {"ab": {"total_cells": 100, "datasets": {"a": 0.5, "b": 0.5}}}
    cfg["models"] = {"ldvae": cfg["models"]["ldvae"]}
    cfg["evaluation"]["eval_sets"] = ["a", "b"]
    config = write(work / "bad.yaml", cfg)
    res = snakemake(work, "--cores", "2", "--keep-going", "results/qc/blood.h5ad", "results/mixes/ab/seed0.h5ad",
                    config=config)  # fmt: skip
    return work, res


def test_qc_that_removes_every_cell_names_the_dataset_step_and_threshold(bad_study):
    work, res = bad_study
    assert res.returncode != 0 and "Traceback" not in res.stdout + res.stderr
    line = ("rule qc: dataset 'blood': QC removed every cell: step min_genes (threshold 100000) removed the last 400 "
            "cells of 400; change qc.min_genes (for this dataset alone: under datasets.blood.qc)")  # fmt: skip
    assert line in error_lines(res)
    assert (work / "logs" / "qc" / "blood.log").read_text().strip().endswith(line)  # the rule's log holds it too
    assert not list((work / "results" / "qc").glob("blood.*"))  # no partial output


def test_a_mix_of_datasets_sharing_29_genes_stops(bad_study):
    work, res = bad_study
    line = ("rule mix: the datasets of mix 'ab' share only 29 genes (matched on symbols; genes per dataset: a 558, b "
            "558), fewer than genes.min_shared = 500; check that the datasets name genes the same way "
            "(genes.match_on), or lower genes.min_shared")  # fmt: skip
    assert line in error_lines(res)
    assert not (work / "results" / "mixes").exists() or not list((work / "results" / "mixes").rglob("*.*"))


def test_a_label_a_model_needs_is_checked_at_qc_not_at_training(tmp_path):
    cfg = tiny()
    cfg["models"]["cvae"]["conditions"] = ["cell_type", "sample"]
    res = snakemake(tmp_path, "--cores", "1", "results/qc/blood.h5ad", config=write(tmp_path / "labels.yaml", cfg))
    assert res.returncode != 0 and "Traceback" not in res.stdout + res.stderr
    assert error_lines(res) == [
        "rule qc: dataset 'blood': has no obs column 'sample' (it has ['batch', 'cell_type', 'dataset', 'donor', "
        "'simulated_quality']), but model 'cvae' reads obs column 'sample' and trains on mix 'blood_only', which "
        "draws from this dataset; add that label to the dataset (e.g. a labels file) or change the model or mix"
    ]
    assert not (tmp_path / "results" / "qc").exists() or not list((tmp_path / "results" / "qc").iterdir())


def test_the_synthetic_label_is_required_of_every_synthetic_eval_set():
    cfg = tiny()
    validate(cfg, str(SCHEMA))
    need = study.required_obs_columns(cfg)
    assert set(need["blood"]) == set(need["tumour"]) == {"cell_type"}
    cfg["models"] = {"ldvae": cfg["models"]["ldvae"]}  # no conditioned model: nothing is required
    assert study.required_obs_columns(cfg) == {"blood": {}, "tumour": {}}


# ---------------------------------------------------------------------------------------- a full or read-only disk
def _mount_tmpfs(path, size) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        return False
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True).returncode == 0  # fmt: skip


@pytest.fixture
def small_disk(tmp_path):
    """results/models on a 64 KiB tmpfs (root only), unmounted afterwards."""
    mount = tmp_path / "results" / "models"
    if not _mount_tmpfs(mount, "64k"):
        pytest.skip("needs root and tmpfs mounts to make a full or read-only file system")
    yield tmp_path, mount
    subprocess.run(["umount", str(mount)], check=False)


def test_a_full_or_read_only_results_folder_is_one_line_naming_the_path(small_disk):
    work, mount = small_disk
    cfg = tiny()
    cfg["models"] = {"ldvae": {**cfg["models"]["ldvae"], "epochs": 2}}
    config = write(work / "disk.yaml", cfg)
    target = "results/models/ldvae/blood_only/seed0/model.pt"
    ready = snakemake(work, "--cores", "2", "results/mixes/blood_only/seed0.h5ad", config=config)
    assert ready.returncode == 0, ready.stderr[-3000:]

    # full: the model (~1 MiB of weights) does not fit in 64 KiB; training runs, the write fails in one line
    res = snakemake(work, "--cores", "1", target, config=config)
    assert res.returncode != 0 and "Traceback" not in res.stdout + res.stderr
    assert error_lines(res) == [
        f"rule train: disk full (No space left on device) writing {target}; free space in {os.path.dirname(target)} "
        "(or give the workflow a larger disk) and rerun"
    ]
    assert not (work / target).exists() and not list(mount.rglob("*.pt*"))

    # read-only: refused when the run starts, before any job
    subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
    log = work / "logs" / "train" / "ldvae" / "blood_only" / "seed0.log"
    log.unlink()
    res = snakemake(work, "--cores", "1", target, config=config)
    out = (res.stdout + res.stderr).splitlines()
    assert res.returncode != 0 and "Traceback" not in res.stdout + res.stderr and len(out) < 8, out
    assert (f"cannot write to folder {mount}: Read-only file system; free space or fix the permissions (or mount) "
            "of results/ and rerun") in out  # fmt: skip
    assert not log.exists()  # no job started
    # the job's own check, for a folder that turns read-only after the run started
    with pytest.raises(ScmixInputError, match=f"cannot write to folder {mount}/x: Read-only file system"):
        check_outputs([target.replace("ldvae/blood_only/seed0", "x")], work)


WRITE_JOB = """
import errno, os, sys
from types import SimpleNamespace

import anndata as ad
import numpy as np
import scipy.sparse as sp

from scmix import rulecall
from scmix.io import write_h5ad

if sys.argv[1] == "refused":  # a stand-in for a full disk where none can be mounted
    def refuse(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    ad.AnnData.write_h5ad = refuse


def main(smk):  # about 4 MB of counts, gzip-compressed
    X = sp.random(3000, 2000, density=0.2, format="csr", random_state=0, dtype=np.float32)
    X.data = np.random.default_rng(0).integers(1, 1000, X.nnz).astype(np.float32)
    write_h5ad(ad.AnnData(X), smk.output[0])


rulecall.run(main, SimpleNamespace(rule="mix", log=["logs/mix.log"], input=[], output=[sys.argv[2]]))
"""


def _write_job(work, how: str, output: str):
    (work / "logs").mkdir(exist_ok=True)
    return subprocess.run([sys.executable, "-c", WRITE_JOB, how, output], cwd=work, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)})  # fmt: skip


FULL_MIX = ("rule mix: disk full (No space left on device) writing results/mixes/m/seed0.h5ad; free space in "
            "results/mixes/m (or give the workflow a larger disk) and rerun")  # fmt: skip


def test_a_refused_h5ad_write_is_one_line_naming_the_file(tmp_path):
    res = _write_job(tmp_path, "refused", "results/mixes/m/seed0.h5ad")
    assert res.returncode == 1, res.stderr[-3000:]
    assert [line.split(" scmix ERROR ", 1)[1] for line in res.stderr.splitlines() if " ERROR " in line] == [FULL_MIX]
    assert "Traceback" not in res.stderr
    assert list((tmp_path / "results" / "mixes" / "m").iterdir()) == []  # no temporary file left


def test_an_h5ad_on_a_full_disk_is_one_line_not_hdf5_tracebacks_nor_a_crash(tmp_path, small_tmpfs):
    """h5py reports each object it cannot flush in a traceback of its own (hundreds for one h5ad), and HDF5
    crashes at exit on the objects it still holds: the job says one line, exits 1 and leaves nothing."""
    small_tmpfs(tmp_path / "results" / "mixes", "1m")
    res = _write_job(tmp_path, "real", "results/mixes/m/seed0.h5ad")
    lines = res.stderr.splitlines()
    assert res.returncode == 1, res.stderr[-3000:]  # not 139: no crash at exit
    assert len(lines) == 2 and lines[1].endswith(f" scmix ERROR {FULL_MIX}"), lines[:20]  # "reads ..." and the line
    assert "Traceback" not in res.stderr and "Exception ignored" not in res.stderr
    assert list((tmp_path / "results" / "mixes" / "m").iterdir()) == []
    assert (tmp_path / "logs" / "mix.log").read_text().strip().endswith(FULL_MIX)


def test_a_mix_on_a_full_disk_stops_in_one_line_and_leaves_nothing(tmp_path, small_tmpfs):
    """The workflow's mix job on a results/mixes too small for its h5ad (308 KiB; its tables fit)."""
    mount = small_tmpfs(tmp_path / "results" / "mixes", "128k")
    res = snakemake(tmp_path, "--cores", "2", "results/mixes/blood_only/seed0.h5ad")
    out = res.stdout + res.stderr
    assert res.returncode != 0 and "Traceback" not in out and "Exception ignored" not in out, out[-3000:]
    assert error_lines(res) == [
        "rule mix: disk full (No space left on device) writing results/mixes/blood_only/seed0.h5ad; free space in "
        "results/mixes/blood_only (or give the workflow a larger disk) and rerun"
    ]
    assert "exit status 1" in out or "returned non-zero exit status 1" in out, out[-3000:]
    assert [p for p in mount.rglob("*") if p.is_file()] == []  # no output, partial or whole, no temporary file


def test_a_log_file_on_a_full_disk_is_said_once_and_the_messages_go_on_to_stderr(tmp_path, capsys):
    import errno
    import logging

    from scmix.logs import LogFile

    class Full:
        def write(self, text):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def flush(self):
            pass

    handler = LogFile(tmp_path / "job.log")
    handler.stream.close()
    handler.stream = Full()
    log = logging.getLogger("scmix.test_full_log")
    log.addHandler(handler)
    try:
        for i in range(3):
            log.warning("message %d", i)
    finally:
        log.removeHandler(handler)
    assert capsys.readouterr().err.splitlines() == [
        "the log file is not written from here on, the messages go to stderr alone: disk full (No space left on "
        f"device) writing {tmp_path}/job.log; free space in {tmp_path} (or give the workflow a larger disk) and rerun"
    ]


def test_messages_name_a_mix_as_a_mix():
    from scmix.models.modeldata import prepare
    from scmix.models.modelspec import resolve

    cells = ad.AnnData(sp.csr_matrix(np.array([[1.5, 2.0], [0.0, 3.0]])), obs=pd.DataFrame({"dataset": ["a", "b"]}))
    with pytest.raises(ScmixInputError) as err:
        prepare(cells, resolve("m", {"architecture": "vae"}), name="m1", kind="mix", path="results/mixes/m1/seed0.h5ad")
    assert str(err.value).startswith("mix 'm1', file 'results/mixes/m1/seed0.h5ad': counts must be integers")
    assert str(err.value).endswith("(in cells of dataset(s) a)")


def test_a_config_error_of_the_package_reaches_the_user_as_one_line(tmp_path):
    cfg = copy.deepcopy(tiny())
    cfg["models"]["cvae"].pop("conditions")
    res = subprocess.run([sys.executable, "-m", "snakemake", "-n", "-s", str(REPO / "Snakefile"), "--directory",
                          str(tmp_path), "--configfile", write(tmp_path / "c.yaml", cfg)],
                         capture_output=True, text=True)  # fmt: skip
    assert res.returncode != 0
    assert "config: models.cvae: architecture cvae needs conditions (e.g. [cell_type])" in res.stderr + res.stdout
    assert "Traceback" not in res.stderr + res.stdout


def test_seeds_together_for_an_scvi_tools_model_is_refused_at_start_up_in_one_line(tmp_path):
    """scvi-tools' trainer fits one model per job: seeds_together on an scvi or scvi_linear model is bad input, said
    before any job runs (scvi-tools need not be installed to hear it)."""
    cfg = tiny()
    cfg["models"]["reference"] = {"architecture": "scvi_linear", "n_latent": 5, "seeds_together": True}
    res = snakemake(tmp_path, "--cores", "1", config=write(tmp_path / "together.yaml", cfg))
    out = (res.stdout + res.stderr).splitlines()
    assert res.returncode != 0 and "Traceback" not in res.stdout + res.stderr and len(out) < 8, out
    assert (
        "config: models.reference: seeds_together applies to scmix's own architectures (vae, ldvae, cvae, gmvae); "
        "scvi-tools' scvi_linear trains one seed per job: remove seeds_together or set it to false"
    ) in out
    assert not (tmp_path / "results").exists() and not (tmp_path / "resources").exists()
    cfg["models"]["reference"]["seeds_together"] = False  # what the line says to change
    validate(cfg, str(SCHEMA))
    assert not study.model_specs(cfg)["reference"]["seeds_together"]


# ------------------------------------------------------------------------------------- config files and long names
def test_a_config_file_that_gives_a_key_twice_is_refused_with_the_key_and_both_lines(tmp_path):
    text = TINY.read_text()
    assert text.count("\nseeds:") == 1
    twice = tmp_path / "twice.yaml"
    twice.write_text(text + "seeds: [7]\n")
    last = len(twice.read_text().splitlines())
    first = 1 + text.splitlines().index(next(line for line in text.splitlines() if line.startswith("seeds:")))
    res = snakemake(tmp_path, "-n", config=twice)
    out = (res.stdout + res.stderr).splitlines()
    assert res.returncode != 0 and "Traceback" not in res.stdout + res.stderr and len(out) < 8, out
    assert (f"config file 'twice.yaml', line {last}: the key 'seeds' is given a second time (first at line {first}); a "
            "YAML reader would keep only the later one: remove or merge one of them") in out  # fmt: skip

    # nested: a second block for one model, in a file named as the user names it (relative to the folder)
    nested = tmp_path / "nested.yaml"
    nested.write_text(text.replace("models:\n", "models:\n  ldvae: {architecture: vae}\n", 1))
    os.chdir(tmp_path)
    try:
        message = configfile.duplicate_key_problem("nested.yaml")
    finally:
        os.chdir(REPO)
    assert message.startswith("config file 'nested.yaml', line ") and "the key 'models.ldvae' is given" in message
    # a config without duplicates (the shipped ones) passes; so does the same key in two different mappings
    for path in [REPO / "config.yaml", *sorted((REPO / "config").rglob("*.yaml"))]:
        assert configfile.duplicate_key_problem(path) is None, path
    assert yaml.safe_load(text)["models"]["ldvae"]  # the tiny config has ldvae and cvae blocks with shared keys


@pytest.mark.parametrize("section, old", [("datasets", "tumour"), ("mixes", "blood_only"), ("models", "ldvae")])
def test_a_name_too_long_for_a_file_name_is_refused_at_start_up(tmp_path, section, old):
    """A 300-character name once ran into Snakemake's wildcard recursion or 'File name too long'."""
    long = "d" * 300
    res = snakemake(tmp_path, "-n", config=write(tmp_path / "long.yaml", renamed(tiny(), section, old, long)))
    out = (res.stdout + res.stderr).splitlines()
    assert res.returncode != 0 and "Traceback" not in res.stdout + res.stderr and len(out) < 8, out
    assert (f"config: {section} has the name '{long}', which is not allowed: a name is {names.NAME_RULE}, since it "
            "becomes a folder name") in out  # fmt: skip
    assert "64 characters at most" in names.NAME_RULE
    assert study.check_name("d" * names.NAME_MAX, section) == "d" * names.NAME_MAX


def test_a_diverged_training_and_a_missing_gpu_are_one_line_naming_the_model(tmp_path):
    """A loss that turns NaN (lr 1e30) and ``device: cuda`` on a machine without a GPU each end their training job
    with one line naming the model (and the mix and seed, for the training, with the seeds trained together with it),
    and write no model."""
    import torch

    cfg = tiny()
    ldvae = {**cfg["models"]["ldvae"], "epochs": 2}
    cfg["models"] = {"ldvae": {**ldvae, "lr": 1e30}, "gpu": {**ldvae, "device": "cuda"},
                     "together": {**ldvae, "lr": 1e30, "seeds_together": True}}  # fmt: skip
    targets = [f"results/models/{m}/blood_only/seed{s}/model.pt" for m in cfg["models"] for s in cfg["seeds"]]
    res = snakemake(tmp_path, "--cores", "2", "--keep-going", *targets, config=write(tmp_path / "d.yaml", cfg))
    assert res.returncode != 0 and "Traceback" not in res.stdout + res.stderr
    lines = error_lines(res)
    assert ("rule train: model 'ldvae', mix 'blood_only': seed 0: training diverged: loss became NaN/inf at epoch 1 "
            "(reconstruction nan, KL nan); try a lower lr (now 1e+30), a longer KL warm-up, or check the input for "
            "extreme values") in lines, lines  # fmt: skip
    assert ("rule train_seeds: model 'together', mix 'blood_only': seed 0 (trained together with seeds 0, 1): "
            "training diverged: loss became NaN/inf at epoch 1 "
            "(reconstruction nan, KL nan); try a lower lr (now 1e+30), a longer KL warm-up, or check the input for "
            "extreme values") in lines, lines  # fmt: skip
    if not torch.cuda.is_available():
        assert (f"rule train: model 'gpu': models.gpu.device is 'cuda', but torch {torch.__version__} (a CPU-only "
                "build) finds no CUDA GPU on this machine; set models.gpu.device: auto (a GPU where there is one) or "
                "cpu, or run the job on a GPU node") in lines or torch.version.cuda, lines  # fmt: skip
        assert any(line.startswith("rule train: model 'gpu': models.gpu.device is 'cuda'") for line in lines), lines
        from scmix.models.train import resolve_device

        with pytest.raises(ScmixInputError, match=r"^evaluation.device is 'cuda:1', but torch .* finds no CUDA GPU"):
            resolve_device("cuda:1", setting="evaluation.device")
        assert resolve_device("auto").type == "cpu"
    assert not any((tmp_path / t).exists() for t in targets)
