"""Resume and determinism under CPU load: a run stopped with SIGTERM/SIGKILL at a chosen moment, resumed, must end
with the results of an uninterrupted run (mixes byte for byte, models weight for weight, every table).

The smallest study that still goes download -> QC -> split -> mix -> train -> evaluate -> summary tables: the
tiny test config (``tests/configs/tiny.yaml``) cut to one dataset, one mix, one seed and the LDVAE, trained for
``--epochs`` epochs (enough for a signal to land inside the epoch loop). A reference is built once, uninterrupted
and without load. Then each repetition, in a fresh folder, beside one CPU-bound busy loop per core (``--busy``,
processes started and stopped by this script):

1. starts Snakemake (``--cores 2``, own process group, as ``tests/workflow/test_operations.py`` does) and sends the
   scenario's signal(s) to the whole group when the scenario's observable event happens (a file appearing, a log
   line), waiting for every process of the group to be gone;
2. after a SIGKILL, ``snakemake --unlock`` (the killed run's lock stays);
3. reruns to the end, then checks: exit status 0, no incomplete marker or lock left, and
   ``scmix.resultdiff.diff_trees`` against the reference (which file differs, and its first differing row, array
   element or h5ad field).

Scenarios, taken in turn (``--scenarios`` to choose): ``term-train`` (SIGTERM once a training log exists, as the
test's first stop), ``term-epoch`` (SIGTERM once training has logged epoch 2), ``kill-ckpt-write`` (SIGKILL while
the checkpoint's temporary file exists: polled every millisecond, else as soon as the model appears),
``kill-model`` (SIGKILL once model.pt exists, history not yet: the test's second stop), ``fixture`` (the test's
sequence: term-train, rerun, kill-model, unlock, rerun), ``kill-mix-write`` (SIGKILL while a mix's temporary
h5ad exists), ``kill-evaluate`` (SIGKILL once evaluate has written its first table), ``term-evaluate`` (SIGTERM
once evaluate has started). An event that the run passes before it is seen is recorded (``hit`` column: what was
seen, or ``missed``); a rep whose run ends before its event is not a failure of the workflow but is reported.

    python benchmarks/resume_determinism.py --reps 10              # ~1-2 min per rep under load on 2 cores
    python benchmarks/resume_determinism.py --reps 3 --busy 0      # without load
    python benchmarks/resume_determinism.py --reps 10 --tsv reps.tsv --workdir /tmp/resume --keep

Prints one line per rep (scenario, what the stop hit, seconds, 1-min load average at start and end, PASS/FAIL and
the first differences) and a summary; exit status 1 if any rep failed.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from snakerun import live_group_members  # noqa: E402  (tests/snakerun.py)

from scmix.resultdiff import diff_trees, result_files  # noqa: E402

TABLES = ["reconstruction_accuracy", "heldout_likelihood", "gene_fit", "posterior_checks", "latent_scores"]
TARGETS = [f"results/summary/{t}.tsv" for t in TABLES]
MIX, SEED, MODEL = "blood_only", 0, "ldvae"
MODEL_DIR = f"results/models/{MODEL}/{MIX}/seed{SEED}"
SCENARIOS = ["term-train", "kill-ckpt-write", "term-epoch", "kill-model", "kill-evaluate", "fixture",
             "kill-mix-write", "term-evaluate"]  # fmt: skip


def fail(message: str) -> None:
    print(f"resume_determinism: {message}", file=sys.stderr)
    sys.exit(2)


def write_config(path: Path, epochs: int) -> Path:
    cfg = yaml.safe_load((REPO / "tests/configs/tiny.yaml").read_text())
    cfg["seeds"] = [SEED]
    cfg["datasets"] = {"blood": cfg["datasets"]["blood"]}
    cfg["mixes"] = {MIX: cfg["mixes"][MIX]}
    cfg["models"] = {MODEL: {**cfg["models"][MODEL], "epochs": epochs, "patience": 0}}
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def snakemake_cmd(workdir: Path, config: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(workdir),
            "--configfile", str(config), *args]  # fmt: skip


def run_to_end(workdir: Path, config: Path, log: Path) -> int:
    with open(log, "a") as fh:
        return subprocess.run(snakemake_cmd(workdir, config, "--cores", "2", *TARGETS), stdout=fh,
                              stderr=subprocess.STDOUT).returncode  # fmt: skip


# ---------------------------------------------------------------------------------------------- load
def _spin() -> None:
    while True:
        pass


def start_load(n: int) -> list[mp.Process]:
    procs = [mp.Process(target=_spin, daemon=True) for _ in range(n)]
    for p in procs:
        p.start()
    return procs


def stop_load(procs: list[mp.Process]) -> None:
    for p in procs:
        p.terminate()
    for p in procs:
        p.join(timeout=10)


def load1() -> float:
    return os.getloadavg()[0]


# ------------------------------------------------------------------------------------------ events
def _exists(rel: str):
    def seen(workdir: Path) -> str | None:
        return rel if (workdir / rel).exists() else None

    return seen


def _temp_beside(rel: str, fallback: bool = True):
    """The temporary file an atomic write makes beside ``rel`` (``.name.*``); with ``fallback``, ``rel`` itself
    once it exists (the write was too quick to be seen)."""
    path = Path(rel)

    def seen(workdir: Path) -> str | None:
        folder = workdir / path.parent
        try:
            names = os.listdir(folder)
        except FileNotFoundError:
            return None
        if any(n.startswith(f".{path.name}.") and not n.startswith(".scmix-write-test") for n in names):
            return "temporary file"
        if fallback and path.name in names:
            return "missed: final file already there"
        return None

    return seen


def _log_line(rel: str, text: str):
    def seen(workdir: Path) -> str | None:
        try:
            return f"log has {text!r}" if text in (workdir / rel).read_text() else None
        except FileNotFoundError:
            return None

    return seen


def _first_eval_table(workdir: Path) -> str | None:
    folder = workdir / f"results/eval/{MODEL}/{MIX}/seed{SEED}"
    tables = sorted(folder.glob("*.tsv")) if folder.is_dir() else []
    return f"{len(tables)} eval table(s)" if tables else None


TRAIN_LOG = f"logs/train/{MODEL}/{MIX}/seed{SEED}.log"
EVENTS = {
    "train-log": (_exists(TRAIN_LOG), 0.05),
    "epoch": (_log_line(TRAIN_LOG, "epoch 2/"), 0.01),
    "ckpt-write": (_temp_beside(f"{MODEL_DIR}/model.pt"), 0.001),
    "model": (_exists(f"{MODEL_DIR}/model.pt"), 0.01),
    "mix-write": (_temp_beside(f"results/mixes/{MIX}/seed{SEED}.h5ad"), 0.001),
    "eval-table": (_first_eval_table, 0.005),
    "eval-log": (_exists(f"logs/evaluate/{MODEL}/{MIX}/seed{SEED}.log"), 0.05),
}
# scenario: the stops, each (event, signal), every one in a run of its own
STOPS = {
    "term-train": [("train-log", signal.SIGTERM)],
    "term-epoch": [("epoch", signal.SIGTERM)],
    "kill-ckpt-write": [("ckpt-write", signal.SIGKILL)],
    "kill-model": [("model", signal.SIGKILL)],
    "fixture": [("train-log", signal.SIGTERM), ("model", signal.SIGKILL)],
    "kill-mix-write": [("mix-write", signal.SIGKILL)],
    "kill-evaluate": [("eval-table", signal.SIGKILL)],
    "term-evaluate": [("eval-log", signal.SIGTERM)],
}


def stop_at(workdir: Path, config: Path, log: Path, event: str, sig: int, timeout: float = 600) -> str:
    """Start Snakemake, send ``sig`` to its process group when ``event`` is seen; what was seen (or why not)."""
    seen, interval = EVENTS[event]
    with open(log, "a") as fh:
        proc = subprocess.Popen(snakemake_cmd(workdir, config, "--cores", "2", *TARGETS), stdout=fh,
                                stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        deadline = time.monotonic() + timeout
        hit = None
        while hit is None:
            hit = seen(workdir)
            if hit is None and proc.poll() is not None:
                return f"{event}: run ended (rc {proc.returncode}) before the event"
            if hit is None and time.monotonic() > deadline:
                hit = f"timeout after {timeout} s"
            if hit is None:
                time.sleep(interval)
        os.killpg(proc.pid, sig)
        rc = proc.wait(timeout=300)
        end = time.monotonic() + 60
        while live_group_members(proc.pid):
            if time.monotonic() > end:
                return f"{event}: {hit}; jobs outlived Snakemake: {live_group_members(proc.pid)}"
            time.sleep(0.1)
    return f"{event}: {hit} -> {signal.Signals(sig).name} (rc {rc})"


# --------------------------------------------------------------------------------------------- checks
def incomplete_markers(workdir: Path) -> list[str]:
    root = workdir / ".snakemake" / "incomplete"
    return [str(p) for p in root.rglob("*") if p.is_file()] if root.is_dir() else []


def locks(workdir: Path) -> list[str]:
    root = workdir / ".snakemake" / "locks"
    return sorted(os.listdir(root)) if root.is_dir() else []


def compared_files(reference: Path) -> list[str]:
    """Every result file of the reference but figures (none are built) and the run's logs."""
    return [f for f in result_files(reference) if not f.endswith(".png")]


def one_rep(rep: int, scenario: str, base: Path, config: Path, reference: Path, files: list[str]) -> dict:
    workdir = base / f"rep{rep:02d}-{scenario}"
    log = base / f"rep{rep:02d}-{scenario}.log"
    t0, l0 = time.monotonic(), load1()
    hits, problems = [], []
    for event, sig in STOPS[scenario]:
        hits.append(stop_at(workdir, config, log, event, sig))
        if sig == signal.SIGKILL:
            with open(log, "a") as fh:
                subprocess.run(snakemake_cmd(workdir, config, "--unlock"), stdout=fh, stderr=subprocess.STDOUT)
    rc = run_to_end(workdir, config, log)
    if rc != 0:
        problems.append(f"final run exited {rc} (log {log})")
    if incomplete_markers(workdir):
        problems.append(f"incomplete markers left: {incomplete_markers(workdir)}")
    if locks(workdir):
        problems.append(f"locks left: {locks(workdir)}")
    leftovers = [p for p in (workdir / "results").rglob(".*") if p.is_file()]
    problems += diff_trees(reference, workdir, files)
    return {"rep": rep, "scenario": scenario, "hit": " | ".join(hits), "seconds": round(time.monotonic() - t0, 1),
            "load_start": round(l0, 2), "load_end": round(load1(), 2), "status": "FAIL" if problems else "PASS",
            "temp_files_left": len(leftovers), "problems": " || ".join(problems)}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--busy", type=int, default=os.cpu_count(), help="busy-loop processes (default: one per core)")
    ap.add_argument("--epochs", type=int, default=60, help="training epochs (tiny config: 12)")
    ap.add_argument("--scenarios", default=",".join(SCENARIOS), help=f"comma-separated, taken in turn: {SCENARIOS}")
    ap.add_argument("--workdir", help="folder for the reference and the reps (default: a temporary one)")
    ap.add_argument("--reference", help="a finished reference run of the same config to reuse")
    ap.add_argument("--keep", action="store_true", help="keep the reps' folders (failed ones are always kept)")
    ap.add_argument("--tsv", help="write one row per rep here")
    args = ap.parse_args()
    scenarios = args.scenarios.split(",")
    if unknown := set(scenarios) - set(STOPS):
        fail(f"unknown scenario(s) {sorted(unknown)}; choose from {SCENARIOS}")
    if shutil.which("snakemake") is None and subprocess.run([sys.executable, "-m", "snakemake", "--version"],
                                                            capture_output=True).returncode:  # fmt: skip
        fail("snakemake is not installed in this Python; activate the project's environment")
    base = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="resume_determinism."))
    base.mkdir(parents=True, exist_ok=True)
    config = write_config(base / "config.yaml", args.epochs)

    if args.reference:
        reference = Path(args.reference)
    else:
        reference = base / "reference"
        t0 = time.monotonic()
        if run_to_end(reference, config, base / "reference.log") != 0:
            fail(f"the uninterrupted reference run failed; see {base / 'reference.log'}")
        print(f"reference: {time.monotonic() - t0:.0f} s, load {load1():.2f}", flush=True)
    files = compared_files(reference)
    if not any(f.endswith(".pt") for f in files) or not any("summary" in f for f in files):
        fail(f"the reference {reference} has no model or no summary table")

    busy = start_load(args.busy)
    rows = []
    try:
        time.sleep(2 if args.busy else 0)
        for rep in range(args.reps):
            row = one_rep(rep, scenarios[rep % len(scenarios)], base, config, reference, files)
            rows.append(row)
            print(f"rep {rep:2d} {row['scenario']:<16} {row['seconds']:6.1f} s  load {row['load_start']:.2f}->"
                  f"{row['load_end']:.2f}  {row['status']}  [{row['hit']}]  temp files left {row['temp_files_left']}"
                  + (f"\n        {row['problems']}" if row["problems"] else ""), flush=True)  # fmt: skip
            if row["status"] == "PASS" and not args.keep:
                shutil.rmtree(base / f"rep{rep:02d}-{row['scenario']}", ignore_errors=True)
    finally:
        stop_load(busy)
    if args.tsv:
        import pandas as pd

        pd.DataFrame(rows).to_csv(args.tsv, sep="\t", index=False)
    failed = [r for r in rows if r["status"] == "FAIL"]
    secs = [r["seconds"] for r in rows]
    print(f"{len(rows) - len(failed)}/{len(rows)} reps passed; {len(files)} files compared per rep; "
          f"{min(secs):.0f}-{max(secs):.0f} s per rep (mean {sum(secs) / len(secs):.0f}); {args.busy} busy loops; "
          f"1-min load {min(r['load_start'] for r in rows):.2f}-{max(r['load_end'] for r in rows):.2f}; "
          f"folder {base}")  # fmt: skip
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
