"""Operating the workflow on the tiny config: what reruns after a change, single targets, resuming after a kill,
determinism.

The session's ``tiny_run`` is only read: every test that runs Snakemake works in a directory of its own, and runs
use the very config file of ``tiny_run`` so that results can be compared with it. Plans are read from dry runs
(``-n``), whose job blocks give each planned job's rule, wildcards, outputs and reason; a real run's log gives the
same blocks plus a "Finished jobid" line per finished job.
"""

import base64
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

import anndata as ad
import matplotlib.image as mpimg
import pandas as pd
import pytest
import yaml
from snakerun import REPO, live_group_members, parse_jobs, snakemake

from scmix.resultdiff import diff_trees
from scmix.study import eval_sets

pytestmark = pytest.mark.e2e

# what the Snakefile reads, includes, runs or validates with (relative to the Snakefile)
WORKFLOW_FILES = ["Snakefile", "config.yaml", "rules", "scripts", "scmix", "schemas", "report", "envs", "profiles", "R"]
UPSTREAM = {"download", "parse", "qc", "split", "mix"}


# ---------------------------------------------------------------------------------------------------- helpers
def run(workdir, *args, config, snakefile=None):
    """``snakerun.snakemake``, optionally with another Snakefile (a later -s wins)."""
    extra = ["-s", str(snakefile)] if snakefile else []
    return snakemake(workdir, *extra, *args, config=config)


def job_key(job: dict) -> tuple:
    return job["rule"], tuple(sorted(job["wildcards"].items())), tuple(sorted(job["output"]))


def plan(workdir, *args, config, snakefile=None) -> list[dict]:
    """Every job a dry run would run."""
    res = run(workdir, "-n", *args, config=config, snakefile=snakefile)
    assert res.returncode == 0, res.stderr[-3000:]
    return parse_jobs(res.stdout + res.stderr)


def assert_up_to_date(workdir, config, snakefile=None):
    res = run(workdir, "-n", config=config, snakefile=snakefile)
    assert res.returncode == 0 and "Nothing to be done" in res.stdout + res.stderr, (res.stdout + res.stderr)[-3000:]


def finished_outputs(log: str) -> set[str]:
    """Outputs of the jobs a Snakemake log reports finished."""
    done = {int(i) for i in re.findall(r"^Finished jobid: (\d+)", log, flags=re.M)}
    return {f for job in parse_jobs(log) if job["jobid"] in done for f in job["output"]}


def started_unfinished(log: str) -> list[dict]:
    done = {int(i) for i in re.findall(r"^Finished jobid: (\d+)", log, flags=re.M)}
    return [job for job in parse_jobs(log) if job["jobid"] not in done and job["rule"] != "all"]


def incomplete_markers(workdir) -> set[str]:
    """Outputs Snakemake has marked incomplete: .snakemake/incomplete/<urlsafe base64 of the path> (long names are
    split into '@'-prefixed folders)."""
    root = Path(workdir) / ".snakemake" / "incomplete"
    paths = set()
    for f in root.rglob("*") if root.is_dir() else []:
        if f.is_file():
            name = "".join(part.lstrip("@") for part in f.relative_to(root).parts)
            paths.add(base64.urlsafe_b64decode(name).decode())
    return paths


def mtimes(workdir, files) -> dict[str, int]:
    return {f: (Path(workdir) / f).stat().st_mtime_ns for f in files}


def results_files(workdir) -> set[str]:
    return {str(p.relative_to(workdir)) for p in (Path(workdir) / "results").rglob("*") if p.is_file()}


def config_of(path) -> dict:
    return yaml.safe_load(Path(path).read_text())


def write_config(path, cfg) -> Path:
    # sort_keys=False: a simulated dataset depends on the order of its cell_types keys
    Path(path).write_text(yaml.safe_dump(cfg, sort_keys=False))
    return Path(path)


def copy_workdir(src, dst) -> Path:
    shutil.copytree(src, dst, symlinks=True)  # copy2: modification times kept
    return Path(dst)


def copy_workflow(dst) -> Path:
    dst.mkdir(parents=True)
    for name in WORKFLOW_FILES:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dst / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dst / name)
    return dst / "Snakefile"


@contextmanager
def edited(path: Path, line: str):
    """A content change to ``path`` (a line appended); its content and modification time restored afterwards."""
    text, st = path.read_bytes(), path.stat()
    path.write_bytes(text + line.encode())
    try:
        yield
    finally:
        path.write_bytes(text)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def study(config) -> tuple[dict, list, list, list]:
    cfg = config_of(config)
    return cfg, list(cfg["models"]), list(cfg["mixes"]), [int(s) for s in cfg["seeds"]]


# ------------------------------------------------------------------------------------------- (3) what reruns
@pytest.fixture(scope="module")
def relocated(tiny_run, tmp_path_factory):
    """A copy of the finished tiny run, adopted by a copy of the workflow: (Snakefile of the copy, workdir, config).

    The rules list a package outside the working directory by its absolute path and Snakemake records each job's
    input paths, so under a copied workflow every job would rerun ("set of input files has changed"). ``--touch``
    records the copy's inputs without running a job; after it the DAG is up to date. The tests below only dry-run
    in it."""
    src, config = tiny_run
    base = tmp_path_factory.mktemp("relocated")
    snakefile = copy_workflow(base / "workflow")
    workdir = copy_workdir(src, base / "work")
    res = run(workdir, "--touch", "--cores", "1", config=config, snakefile=snakefile)
    assert res.returncode == 0, res.stderr[-3000:]
    assert_up_to_date(workdir, config, snakefile)
    return snakefile, workdir, config


def test_a_checkout_copied_with_its_results_reruns_nothing(relocated, tmp_path):
    """A checkout run where it is (its results/, resources/ and .snakemake/ inside it) copied with cp -a (times
    kept) to another place: every job's inputs are the same paths from the working directory, so nothing reruns
    (with absolute package paths, every job did)."""
    snakefile, workdir, config = relocated
    checkout = tmp_path / "checkout"
    shutil.copytree(snakefile.parent, checkout, symlinks=True)
    for part in ("results", "resources", ".snakemake"):
        shutil.copytree(workdir / part, checkout / part, symlinks=True)  # copy2: modification times kept
    adopted = run(checkout, "--touch", "--cores", "1", config=config, snakefile=checkout / "Snakefile")
    assert adopted.returncode == 0, adopted.stderr[-3000:]
    assert_up_to_date(checkout, config, checkout / "Snakefile")
    elsewhere = tmp_path / "elsewhere" / "checkout"
    shutil.copytree(checkout, elsewhere, symlinks=True)
    assert_up_to_date(elsewhere, config, elsewhere / "Snakefile")
    # the package's files are inputs by their path in the checkout: an edit there still reruns what depends on it
    with edited(elsewhere / "scmix" / "data" / "split.py", "\n# an edit\n"):
        jobs = plan(elsewhere, config=config, snakefile=elsewhere / "Snakefile")
    split = [j for j in jobs if j["rule"] == "split"]
    assert split and all("Updated input files: scmix/data/split.py" in j["reason"] for j in split), split
    assert {j["rule"] for j in jobs if "scmix/data/split.py" in j["reason"]} == {"split"}


def test_a_training_parameter_reruns_training_and_downstream_not_qc_or_mixing(relocated, tmp_path):
    snakefile, workdir, config = relocated
    cfg, models, mixes, seeds = study(config)
    cfg["models"]["ldvae"]["epochs"] += 1
    changed = write_config(tmp_path / "epochs.yaml", cfg)

    jobs = plan(workdir, config=changed, snakefile=snakefile)
    rules = Counter(j["rule"] for j in jobs)
    trains = [j for j in jobs if j["rule"] == "train"]
    assert sorted((j["wildcards"]["mix"], int(j["wildcards"]["seed"])) for j in trains) == sorted(
        (mix, seed) for mix in mixes for seed in seeds
    )
    assert all(j["wildcards"]["model"] == "ldvae" and j["reason"].startswith("Params have changed") for j in trains)
    assert not UPSTREAM & set(rules)  # no download, parse, QC, split or mixing
    assert all(j["wildcards"].get("model", "ldvae") == "ldvae" for j in jobs)  # nothing of the cvae
    n = len(mixes) * len(seeds)
    assert rules["evaluate"] == rules["loadings"] == n  # each evaluate job: every eval set, and the latent space
    assert {"summarize", "plot_heatmap", "plot_training", "plot_umap", "plot_celltypes"} <= set(rules)
    # exactly what forcing those trainings reruns: training and everything downstream of it
    models_pt = [f"results/models/ldvae/{mix}/seed{seed}/model.pt" for mix in mixes for seed in seeds]
    forced = plan(workdir, "--forcerun", *models_pt, config=config, snakefile=snakefile)
    assert {job_key(j) for j in jobs} == {job_key(j) for j in forced}


def test_b_model_code_change_reruns_training_of_every_model(relocated):
    snakefile, workdir, config = relocated
    _, models, mixes, seeds = study(config)
    assert_up_to_date(workdir, config, snakefile)
    model_code = snakefile.parent / "scmix" / "models" / "modules" / "vae.py"
    with edited(model_code, "\n# an edit to the model code\n"):
        jobs = plan(workdir, config=config, snakefile=snakefile)
    trains = [j for j in jobs if j["rule"] == "train"]
    assert sorted((j["wildcards"]["model"], j["wildcards"]["mix"], int(j["wildcards"]["seed"])) for j in trains) == (
        sorted((model, mix, seed) for model in models for mix in mixes for seed in seeds)
    )
    assert all(str(model_code) in j["reason"] and "Updated input files" in j["reason"] for j in trains)
    assert not UPSTREAM & {j["rule"] for j in jobs}
    forced = plan(workdir, "--forcerun", "train", config=config, snakefile=snakefile)
    assert {job_key(j) for j in jobs} == {job_key(j) for j in forced}
    assert_up_to_date(workdir, config, snakefile)  # the edit undone, nothing is left to rerun


def test_c_plotting_code_change_reruns_only_plots(relocated, tmp_path):
    snakefile, workdir, config = relocated
    assert_up_to_date(workdir, config, snakefile)
    every_job = Counter(j["rule"] for j in plan(workdir, "--forceall", config=config, snakefile=snakefile))
    plot_rules = {rule: n for rule, n in every_job.items() if rule.startswith("plot_")}
    assert len(plot_rules) >= 5
    with edited(snakefile.parent / "scmix" / "plots" / "__init__.py", "\n# an edit to the plotting code\n"):
        jobs = plan(workdir, config=config, snakefile=snakefile)
        # every job of a plot rule runs again (the QC figures and loss curves too), nothing else (`all` only
        # collects)
        assert {"plot_qc", "plot_loss"} <= set(plot_rules)
        assert Counter(j["rule"] for j in jobs) == Counter({**plot_rules, "all": 1})

        # for real, one of them, in a copy: only that plot is drawn, the models stay as they are
        real = copy_workdir(workdir, tmp_path / "work")
        target = "results/summary/training_curves.png"
        kept = results_files(real) - {target}
        before = mtimes(real, [target, *kept])
        res = run(real, "--cores", "1", target, config=config, snakefile=snakefile)
        assert res.returncode == 0, res.stderr[-3000:]
        assert [j["rule"] for j in parse_jobs(res.stderr)] == ["plot_training"]
        assert (real / target).stat().st_mtime_ns > before.pop(target)
        assert mtimes(real, kept) == before
        assert mpimg.imread(real / target).shape[0] > 100
        remaining = Counter(j["rule"] for j in plan(real, config=config, snakefile=snakefile))
        assert remaining == Counter({**plot_rules, "all": 1}) - Counter(plot_training=1)


def test_e_a_synthetic_setting_reruns_only_synthetic_jobs(relocated, tmp_path):
    """Each rule gets the settings it uses: the synthetic block is no param of evaluate or latent."""
    snakefile, workdir, config = relocated
    cfg, _, mixes, seeds = study(config)
    cfg["evaluation"]["synthetic"]["cells_per_label"] += 1
    jobs = plan(workdir, config=write_config(tmp_path / "cells.yaml", cfg), snakefile=snakefile)
    synthetic = [j for j in jobs if j["rule"] == "synthetic"]
    assert len(synthetic) == len(mixes) * len(seeds) * len(cfg["datasets"])  # the cvae on every eval set
    assert all(j["reason"].startswith("Params have changed") for j in synthetic)
    assert Counter(j["rule"] for j in jobs) == Counter(synthetic=len(synthetic), summarize=1, plot_synthetic=1, all=1)
    assert {j["wildcards"].get("table") for j in jobs if j["rule"] == "summarize"} == {"synthetic_utility"}


@pytest.mark.parametrize(
    "edit",
    [
        lambda c: c["models"]["ldvae"].update(threads=2),
        lambda c: c["models"]["cvae"].update(gpu=0, device="cpu"),
        lambda c: c["evaluation"].update(device="cpu"),
    ],
    ids=["model threads", "model gpu and device", "evaluation device"],
)
def test_f_where_a_job_runs_reruns_nothing(relocated, tmp_path, edit):
    """Threads, GPUs and the device are scheduling, not what a model or a table is: changing them replans nothing."""
    snakefile, workdir, config = relocated
    cfg = config_of(config)
    edit(cfg)
    assert_up_to_date(workdir, write_config(tmp_path / "scheduling.yaml", cfg), snakefile)


def test_g_an_edit_to_a_package_module_reruns_exactly_the_rules_that_can_run_it(relocated):
    """For every file of the package: edited in the copied workflow, a dry run replans, for the file itself, exactly
    the jobs of the rules whose scripts import it (directly or through other modules), and nothing else but what
    depends on their outputs."""
    from scmix import deps

    snakefile, workdir, config = relocated
    root = snakefile.parent
    every_job = plan(workdir, "--forceall", config=config, snakefile=snakefile)
    rules = {j["rule"] for j in every_job} - {"all"}
    script_of = {name: re.search(r'script:\n\s+"\.\./scripts/(\w+\.py)"', body)[1]
                 for name, body in re.findall(r"(?ms)^rule (\w+):\n(.*?)(?=^\S|\Z)", "".join(
                     p.read_text() for p in sorted((root / "rules").glob("*.smk"))))
                 if re.search(r'script:\n\s+"\.\./scripts/\w+\.py"', body)}  # fmt: skip
    assert rules <= set(script_of)
    extra = {"parse": ["scmix.data.sources.simulated"]}  # the tiny config's source, loaded by name
    users = {rule: set(deps.package_files(root / "scripts" / script_of[rule], root, extra.get(rule, [])))
             for rule in rules}  # fmt: skip
    # the gaps the hand-kept lists had are closed
    for rule, module in [("train", "data/expression.py"), ("synthetic", "models/transforms.py")] + [
        (r, m) for r in ("evaluate", "synthetic") for m in ("data/genes.py", "io.py", "models/modelspec.py")
    ]:
        assert str(root / "scmix" / module) in users[rule], (rule, module)

    # which rule feeds which: every rule downstream of a rerun rule reruns (part of its jobs, at least)
    graph = run(workdir, "--rulegraph", config=config, snakefile=snakefile)
    assert graph.returncode == 0, graph.stderr[-3000:]
    label = dict(re.findall(r'^\s*(\d+)\[label = "(\w+)"', graph.stdout, flags=re.M))
    feeds = [(label[a], label[b]) for a, b in re.findall(r"^\s*(\d+) -> (\d+)", graph.stdout, flags=re.M)]

    def downstream(start: set) -> set:
        out, todo = set(start), list(start)
        while todo:
            rule = todo.pop()
            for a, b in feeds:
                if a == rule and b not in out:
                    out.add(b)
                    todo.append(b)
        return out

    jobs_of = Counter(j["rule"] for j in every_job)
    modules = sorted((root / "scmix").rglob("*.py"))
    assert len(modules) > 30

    def replans_exactly_its_users(module, jobs):
        expected = {rule for rule, files in users.items() if str(module) in files}
        planned = Counter(j["rule"] for j in jobs)
        name = module.relative_to(root)
        # every job of the rules that can run the module, and only what follows from them (the rule graph is
        # coarser than the jobs: one summary table's rerun need not redraw another table's figure)
        assert expected <= set(planned) - {"all"} <= downstream(expected), (name, expected, planned)
        assert all(planned[rule] == jobs_of[rule] for rule in expected), (name, planned)
        assert all(str(module) in j["reason"] or "updated by another job" in j["reason"] or j["rule"] == "all"
                   for j in jobs), name  # fmt: skip

    # every job's inputs, from one --detailed-summary (a row per output file: its rule and input files): for each
    # file of the package, the jobs that have it as an input are exactly every job of the rules whose scripts can run
    # it (what an edit to it replans, before what follows from them)
    summary = run(workdir, "--detailed-summary", config=config, snakefile=snakefile)
    assert summary.returncode == 0, summary.stderr[-3000:]
    rows = [line.split("\t") for line in summary.stdout.splitlines()]
    header = rows[0]
    inputs_of = {r[0]: {str((workdir / f).resolve()) for f in r[header.index("input-file(s)")].split(",") if f}
                 for r in rows[1:] if len(r) == len(header)}  # fmt: skip
    jobs_inputs = [(j["rule"], inputs_of[j["output"][0]]) for j in every_job if j["rule"] != "all"]
    assert len(jobs_inputs) == sum(jobs_of.values()) - jobs_of["all"]
    for module in modules:
        expected = {rule for rule, files in users.items() if str(module) in files}
        having = Counter(rule for rule, inputs in jobs_inputs if str(module.resolve()) in inputs)
        assert having == Counter({rule: jobs_of[rule] for rule in expected}), (module.relative_to(root), having)
    # and one file at a time (a core module every script runs, one of each stage, a stage's __init__): the edit
    # replans those jobs and what follows from them, nothing else
    for part in ("io.py", "data/qc.py", "models/modules/vae.py", "evaluation/effects.py", "plots/style.py",
                 "data/__init__.py"):  # fmt: skip
        with edited(root / "scmix" / part, "\n# an edit\n"):
            replans_exactly_its_users(root / "scmix" / part, plan(workdir, config=config, snakefile=snakefile))
    assert_up_to_date(workdir, config, snakefile)


IMPORTS_AT_RUN_TIME = """
import json, os, runpy, sys
out = {}
for script in sys.argv[1:]:
    r, w = os.pipe()
    if os.fork() == 0:  # a fresh interpreter state per script: what it alone imports
        import scmix.rulecall
        scmix.rulecall.run = lambda main, smk: None  # import the script's modules, run nothing
        runpy.run_path(script, init_globals={"snakemake": None})
        files = sorted({m.__file__ for n, m in list(sys.modules.items()) if n.split(".")[0] == "scmix"})
        os.write(w, json.dumps(files).encode())
        os._exit(0)
    os.close(w)
    with os.fdopen(r) as fh:
        out[script] = json.loads(fh.read())
    os.wait()
print(json.dumps(out))
"""


def test_what_a_script_imports_when_it_runs_is_in_its_rule_s_code_inputs():
    """The static walk against the interpreter: every package module a rule script has loaded once its imports ran
    is among the files its rule depends on (the walk also sees imports inside functions, so it may list more)."""
    from scmix import deps

    scripts = sorted(str(p) for p in (REPO / "scripts").glob("*.py"))
    res = subprocess.run([sys.executable, "-c", IMPORTS_AT_RUN_TIME, *scripts], capture_output=True, text=True,
                         cwd=REPO)  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    loaded = json.loads(res.stdout)
    assert len(loaded) == len(scripts) >= 15
    for script, files in loaded.items():
        static = set(deps.package_files(Path(script), REPO))
        assert files and set(files) <= static, (Path(script).name, set(files) - static)


def test_d_one_model_and_one_eval_table_build_alone(tiny_run, tmp_path):
    full, config = tiny_run
    cfg = config_of(config)
    model = "results/models/ldvae/blood_only/seed0/model.pt"
    table = "results/eval/ldvae/blood_only/seed0/blood.summary.tsv"  # one output of one evaluate job
    res = snakemake(tmp_path, "--cores", "2", model, table, config=config)
    assert res.returncode == 0, res.stderr[-3000:]
    assert (tmp_path / model).is_file() and (tmp_path / table).is_file()
    # only their upstream ran: every dataset (a mix is matched against every eval set), one mix, one model
    n = len(cfg["datasets"])
    ran = Counter(j["rule"] for j in parse_jobs(res.stderr))
    assert ran == Counter(download=n, parse=n, qc=n, split=n, mix=1, train=1, evaluate=1)
    results = tmp_path / "results"
    assert [str(p.relative_to(results)) for p in results.glob("models/*/*/*")] == ["models/ldvae/blood_only/seed0"]
    assert {p.name for p in results.glob("mixes/*/*")} == {
        "seed0.h5ad", "seed0.manifest.tsv", "seed0.manifest.json", "seed0.genes.tsv"
    } and [p.name for p in results.glob("mixes/*")] == ["blood_only"]  # fmt: skip
    # one evaluate job scores its model on every eval set, a set of tables each
    assert {p.name for p in results.glob("eval/*/*/*/*")} == {
        f"{eval_set}.{kind}.tsv"
        for eval_set in eval_sets(cfg)
        for kind in ("cells", "summary", "likelihood", "genes", "gene_summary", "ppc")
    }
    # and the latent space of that model (computed by the same job), nothing else
    assert sorted(p.name for p in results.glob("latent/*/*/*/*")) == ["latent.h5ad", "scores.tsv"]
    assert [str(p.relative_to(results)) for p in results.glob("latent/*/*/*")] == ["latent/ldvae/blood_only/seed0"]
    assert not any((results / d).exists() for d in ("synthetic", "summary"))
    # built alone it is the same as built within the whole workflow
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / table, sep="\t"), pd.read_csv(full / table, sep="\t"))


# ------------------------------------------------------------------------------------------------ (4) resume
def _start(workdir, config, log, targets):
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(workdir),
           "--configfile", str(config), "--cores", "2", *targets]  # fmt: skip
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def _wait_for(proc, condition, what, timeout=300):
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, f"Snakemake ended (rc {proc.returncode}) before {what}"
        assert time.monotonic() < deadline, f"no {what} after {timeout} s"
        time.sleep(0.1)


def _kill_group(proc, sig) -> int:
    os.killpg(proc.pid, sig)  # Snakemake and every job it started (start_new_session: one group)
    rc = proc.wait(timeout=120)
    deadline = time.monotonic() + 30
    while live_group_members(proc.pid):
        assert time.monotonic() < deadline, f"jobs outlived Snakemake: {live_group_members(proc.pid)}"
        time.sleep(0.1)
    return rc


def _training_in_flight(workdir, log_path) -> list[str]:
    """Models of the training jobs of the run logged at ``log_path`` that are at work: started (their job block
    logged, not "Finished"), their own log begun, their model not yet written."""
    models = []
    for job in started_unfinished(Path(log_path).read_text()):
        for f in job["output"] if job["rule"] == "train" else []:
            if f.endswith("/model.pt") and not (workdir / f).exists():
                train_log = "logs/train/" + f.removeprefix("results/models/").removesuffix("/model.pt") + ".log"
                models += [f] if (workdir / train_log).exists() else []
    return models


def _model_written_training_on(workdir, log_path, before) -> bool:
    """A model not in ``before`` is written and a training job is still at work (``_training_in_flight``): the
    moment a SIGKILL cuts a training job short.

    Waiting for the new model alone raced on a busy machine: the training job that wrote it could finish (history
    written, "Finished jobid" logged) before the kill, leaving no training job in flight to be redone."""
    new = set((workdir / "results").glob("models/*/*/seed*/model.pt")) - before
    return bool(new) and bool(_training_in_flight(workdir, log_path))


def _locks(workdir) -> list[str]:
    locks = Path(workdir) / ".snakemake" / "locks"
    return sorted(os.listdir(locks)) if locks.is_dir() else []


def _aftermath(workdir, log_path, name) -> dict:
    """What a stopped run left: its log, result files, incomplete markers, locks, finished outputs and their mtimes."""
    log = log_path.read_text()
    finished = finished_outputs(log)
    found = {"log": log, "files": results_files(workdir), "markers": incomplete_markers(workdir),
             "locks": _locks(workdir), "finished": finished, "finished_mtimes": mtimes(workdir, finished)}  # fmt: skip
    return {f"{name}_{k}": v for k, v in found.items()}


@pytest.fixture(scope="module")
def interrupted(tiny_run, tmp_path_factory):
    """The tiny config's summary tables, built in three Snakemake runs in one directory:

    1. a fresh run, stopped with SIGTERM to its process group once training has started;
    2. a rerun, stopped with SIGKILL to its process group once it has written a model while another training job
       runs;
    3. after ``--unlock``, a rerun to the end.

    Returns what each step left behind, for the SIGTERM and the SIGKILL test."""
    full, config = tiny_run
    tables = sorted(str(p.relative_to(full)) for p in (full / "results" / "summary").glob("*.tsv"))
    workdir = tmp_path_factory.mktemp("interrupted")
    logs = workdir.parent / f"{workdir.name}-logs"
    logs.mkdir()
    out = {"workdir": workdir, "config": config, "tables": tables, "full": full}

    with open(logs / "1.log", "w") as log:
        proc = _start(workdir, config, log, tables)
        # a training job at work (not only a training log: the job that began it could be done by the time a
        # starved test process sends the signal)
        _wait_for(proc, lambda: _training_in_flight(workdir, logs / "1.log"), "a training job at work")
        t0 = time.monotonic()
        out["term_rc"] = _kill_group(proc, signal.SIGTERM)
        out["term_seconds"] = time.monotonic() - t0
    out |= _aftermath(workdir, logs / "1.log", "term")

    models = set((workdir / "results").glob("models/*/*/seed*/model.pt"))
    with open(logs / "2.log", "w") as log:
        proc = _start(workdir, config, log, tables)
        _wait_for(proc, lambda: _model_written_training_on(workdir, logs / "2.log", models),
                  "a new model while another training job runs")  # fmt: skip
        out["kill_rc"] = _kill_group(proc, signal.SIGKILL)
    out |= _aftermath(workdir, logs / "2.log", "kill")
    out["kill_marked_mtimes"] = mtimes(workdir, out["kill_markers"] & out["kill_files"])
    out["kill_plan"] = plan(workdir, *tables, config=config)  # a dry run takes no lock

    out["locked"] = snakemake(workdir, "--cores", "2", *tables, config=config)
    out["unlock"] = snakemake(workdir, "--unlock", config=config)
    out["final"] = snakemake(workdir, "--cores", "2", *tables, config=config)
    return out


def _check_final(r):
    """The interrupted build ended as an uninterrupted one: nothing corrupt, the same models and tables."""
    workdir, full = r["workdir"], r["full"]
    assert r["final"].returncode == 0, r["final"].stderr[-3000:]
    for h5ad in (workdir / "results").rglob("*.h5ad"):
        assert ad.read_h5ad(h5ad).n_obs > 0, h5ad
    models = sorted(str(p.relative_to(full)) for p in (full / "results").glob("models/*/*/seed*/model.pt"))
    assert models and len(models) == len(list((workdir / "results").glob("models/*/*/seed*/model.pt")))
    for png in (workdir / "results").rglob("*.png"):
        assert mpimg.imread(png).size > 0, png
    # the same weights and tables; the first difference of each file named (scmix.resultdiff)
    differences = diff_trees(full, workdir, [*models, *r["tables"]])
    assert not differences, "the resumed build differs from the uninterrupted one:\n" + "\n".join(differences)


def test_resume_after_sigterm(interrupted):
    r = interrupted
    workdir = r["workdir"]
    assert r["term_rc"] != 0 and r["term_seconds"] < 60  # stopped promptly, as a failure
    assert "died with <Signals.SIGTERM: 15>" in r["term_log"]
    # Snakemake cleaned up: no lock, no incomplete marker, no output of a job that did not finish
    assert r["term_locks"] == [] and r["term_markers"] == set()
    killed = started_unfinished(r["term_log"])
    assert any(j["rule"] == "train" for j in killed)
    assert not {f for j in killed for f in j["output"]} & r["term_files"]
    # work before the kill: QC, splits and mixes at least
    finished_rules = {j["rule"] for j in parse_jobs(r["term_log"]) if set(j["output"]) & r["term_finished"]}
    assert {"qc", "split", "mix"} <= finished_rules
    # the rerun (no --unlock needed) ran none of the finished jobs again ...
    rerun = {f for j in parse_jobs(r["kill_log"]) for f in j["output"]}
    assert parse_jobs(r["kill_log"]) and not rerun & r["term_finished"]
    # ... nor did the last run: their files are untouched to the end
    _check_final(r)
    assert mtimes(workdir, r["term_finished"]) == r["term_finished_mtimes"]


def test_resume_after_sigkill(interrupted):
    r = interrupted
    workdir = r["workdir"]
    assert r["kill_rc"] == -signal.SIGKILL
    # no clean-up: outputs of the jobs in flight may be there (e.g. model.pt without its loss curve), but Snakemake
    # had marked every output of a started job incomplete before starting it
    in_flight = started_unfinished(r["kill_log"])
    assert any(j["rule"] == "train" for j in in_flight)
    in_flight_outputs = {f for j in in_flight for f in j["output"]}
    assert r["kill_markers"] and r["kill_markers"] <= in_flight_outputs
    assert in_flight_outputs & r["kill_files"] <= r["kill_markers"]
    # a dry run plans every job in flight again (rerun-incomplete) and none that had finished
    planned = {f for j in r["kill_plan"] for f in j["output"]}
    assert in_flight_outputs <= planned
    finished = r["term_finished"] | r["kill_finished"]
    assert not planned & finished
    # the lock of the killed run stays: a rerun refuses until `snakemake --unlock`
    assert r["locked"].returncode != 0 and "Directory cannot be locked" in r["locked"].stdout + r["locked"].stderr
    assert r["kill_locks"] and r["unlock"].returncode == 0
    _check_final(r)
    # finished jobs were not redone; the partial outputs of the killed jobs were
    assert mtimes(workdir, r["term_finished"]) == r["term_finished_mtimes"]
    assert mtimes(workdir, r["kill_finished"]) == r["kill_finished_mtimes"]
    redone = mtimes(workdir, r["kill_marked_mtimes"])
    assert all(redone[f] != r["kill_marked_mtimes"][f] for f in redone)


# ------------------------------------------------------------------------------------------- (5) determinism
def test_same_seeds_give_identical_mixes_and_tables_another_seed_another_mix(interrupted, tiny_run):
    """The second build of the tiny config is the one above (stopped twice, resumed); the first is tiny_run's."""
    full, config = tiny_run
    cfg, _, mixes, seeds = study(config)
    second, tables = interrupted["workdir"], interrupted["tables"]
    assert len(tables) >= 4 and interrupted["final"].returncode == 0

    # the h5ad files are byte-identical (HDF5 as written by anndata/h5py holds no timestamps)
    mix_files = sorted(str(p.relative_to(full)) for p in (full / "results" / "mixes").glob("*/seed*.h5ad"))
    assert len(mix_files) == len(mixes) * len(seeds)
    # the first difference of each file named: which h5ad field and element, which table row and column
    differences = diff_trees(full, second, [*mix_files, *tables], h5ad_bytes=True)
    assert not differences, "two builds with the same seeds differ:\n" + "\n".join(differences)
    for f in tables:
        pd.testing.assert_frame_equal(pd.read_csv(second / f, sep="\t"), pd.read_csv(full / f, sep="\t"))

    # another seed, another mix (a config with the seed added: QC and splits are shared by the seeds)
    target = "results/mixes/blood_only/seed2.h5ad"
    more = write_config(second / "three_seeds.yaml", {**cfg, "seeds": [*seeds, 2]})
    res = snakemake(second, "--cores", "1", target, config=more)
    assert res.returncode == 0, res.stderr[-3000:]
    assert [j["rule"] for j in parse_jobs(res.stderr)] == ["mix"]  # QC and splits are shared by the seeds
    seed0, seed2 = ad.read_h5ad(second / "results/mixes/blood_only/seed0.h5ad"), ad.read_h5ad(second / target)
    assert seed2.n_obs == seed0.n_obs == cfg["mixes"]["blood_only"]["total_cells"]
    assert set(seed2.obs_names) != set(seed0.obs_names)
    assert (second / target).read_bytes() != (second / "results/mixes/blood_only/seed0.h5ad").read_bytes()
