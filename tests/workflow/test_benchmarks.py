"""Smoke tests of the benchmarks: mix_scale.py at a tiny size (every stage runs and reports positive numbers),
dag_scale.sh (the DAG it times has the size it claims); and that each benchmark stops with one message, no figure
and a non-zero exit code when a tool or input it needs is missing.

No timing is asserted: the benchmark reports its speeds as ratios against a peer measured in the same run.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "mix_scale.py"


def test_mix_scale_runs_every_stage(tmp_path):
    out = tmp_path / "bench.json"
    args = ["--cells", "3000", "--genes", "500", "--datasets", "3", "--mix-cells", "400", "--seeds", "2"]
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), *args, "--workdir", str(tmp_path / "work"), "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    stdout = proc.stdout
    assert "atlas: nnz" in stdout
    header = next(line for line in stdout.splitlines() if line.startswith("stage "))
    for col in ("seconds", "peer s", "time/peer", "peak RSS GiB", "peak/atlas", "work/input"):
        assert col in header

    result = json.loads(out.read_text())
    assert result["atlas"]["nnz"] > 0 and result["atlas"]["bytes"] > 0
    rows = {r["stage"]: r for r in result["rows"]}
    expected = ["qc[base]", "qc[ds1]", "qc[ds2]", "split[base]", "split[ds1]", "split[ds2]"]
    expected += ["mix[base] s0", "mix[base] s1", "mix[base+ds1] s0", "mix[base+ds1] s1", "mix[all] s0", "mix[all] s1"]
    for stage in expected:
        assert stage in rows, f"{stage} missing from {list(rows)}"
        assert stage in stdout
        r = rows[stage]
        assert not r.get("error"), r
        for key in ("seconds", "peer_seconds", "peak_rss", "input_bytes", "peak_atlas", "work_input", "time_ratio"):
            assert r[key] > 0, (stage, key, r[key])
        assert r["cells_out"] > 0
    # QC removed the simulated low-quality cells; the mixes have the (capped) requested sizes
    assert rows["qc[base]"]["cells_out"] < rows["qc[base]"]["cells_in"]
    assert rows["mix[base] s0"]["cells_out"] == 400
    assert rows["mix[base+ds1] s0"]["cells_out"] == 400


def test_h5ad_filter_reads_fewer_cells_in_less_memory(tmp_path):
    out = tmp_path / "bench.json"
    args = ["--cells", "4000", "--genes", "2000", "--max-cells", "500", "--workdir", str(tmp_path), "--json", str(out)]
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "h5ad_filter.py"), *args], capture_output=True,
                          text=True, timeout=300, cwd=REPO)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "load average at the start" in proc.stdout and "load average at the end" in proc.stdout
    cases = {r["case"]: r for r in json.loads(out.read_text())["cases"]}
    assert cases["whole"]["cells"] == 4000 and cases["max"]["cells"] == cases["filter+max"]["cells"] == 500
    assert 0 < cases["filter"]["cells"] < 4000
    for name in ("filter", "filter+max", "max"):  # fewer cells kept: fewer bytes, and a smaller working set
        assert cases[name]["kept_bytes"] < cases["whole"]["kept_bytes"]
        assert cases[name]["peak"] - cases[name]["before"] < cases["whole"]["peak"] - cases["whole"]["before"]


def test_dag_scale_builds_the_500_job_dag():
    """benchmarks/dag_scale.sh: the 10 mixes x 5 seeds x 5 eval sets study dry-runs (its time is reported, not
    asserted)."""
    env = {**os.environ, "SNAKEMAKE": str(Path(sys.executable).with_name("snakemake"))}
    proc = subprocess.run(["bash", str(REPO / "benchmarks" / "dag_scale.sh")], capture_output=True, text=True,
                          timeout=300, env=env)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # 5 datasets x (download, parse, qc, plot_qc, split) + 50 x (mix, train, plot_loss, loadings)
    # + 50 evaluate (each over the 5 eval sets, and the latent space) + summaries
    assert "297 jobs (50 evaluate)" in proc.stdout, proc.stdout


# ---------------------------------------------------------------- a missing tool or input: one message, no figure


def _run(cmd, **kwargs):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=REPO, **kwargs)


def _dag_scale(snakemake: Path):
    return _run(["bash", str(REPO / "benchmarks" / "dag_scale.sh")], env={**os.environ, "SNAKEMAKE": str(snakemake)})


def _fake_snakemake(tmp_path: Path, body: str) -> Path:
    exe = tmp_path / "snakemake"
    exe.write_text(f"#!/bin/sh\n{body}\n")
    exe.chmod(0o755)
    return exe


def test_dag_scale_without_snakemake_stops_with_a_message(tmp_path):
    missing = tmp_path / "no-venv" / "bin" / "snakemake"
    proc = _dag_scale(missing)
    assert proc.returncode != 0
    assert f"snakemake not found at {missing}" in proc.stderr and "make setup" in proc.stderr, proc.stderr
    assert "SNAKEMAKE=" in proc.stderr
    assert proc.stdout == "", proc.stdout  # no "jobs ( evaluate); dry run 0.00 s" line


def test_dag_scale_with_a_failing_snakemake_stops_with_a_message(tmp_path):
    proc = _dag_scale(_fake_snakemake(tmp_path, "echo 'boom: snakemake is broken' >&2; exit 1"))
    assert proc.returncode != 0
    assert "`snakemake --version` failed (exit 1" in proc.stderr, proc.stderr
    assert "boom: snakemake is broken" in proc.stderr  # its own output is shown
    assert proc.stdout == "", proc.stdout


def test_dag_scale_without_job_counts_in_the_output_stops_with_a_message(tmp_path):
    proc = _dag_scale(_fake_snakemake(tmp_path, "sleep 0.05; echo 'Building DAG of jobs...'"))
    assert proc.returncode != 0
    assert "no job counts in the output" in proc.stderr, proc.stderr
    assert proc.stdout == "", proc.stdout


TRAIN_SPEED = REPO / "benchmarks" / "train_speed.py"


def test_train_speed_without_the_data_names_the_missing_archive(tmp_path):
    shared = tmp_path / "no-shared-data"
    proc = _run([sys.executable, str(TRAIN_SPEED), "--shared", str(shared), "--no-peer", "--epochs", "2"])
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and str(shared / "pbmc3k") in lines[0] and "--shared" in lines[0], proc.stderr
    assert "s/epoch" not in proc.stdout


def test_train_speed_without_scvi_tools_asks_for_no_peer_or_setup(tmp_path):
    # scvi-tools hidden (an import of it fails), as in an environment without the extra; the peer is checked before
    # the data are read: a missing data folder must not be what stops it
    hide = ("import runpy, sys; sys.modules['scvi'] = None; sys.argv = sys.argv[1:]; "
            "sys.path.insert(0, str(__import__('pathlib').Path(sys.argv[0]).parent)); "
            "runpy.run_path(sys.argv[0], run_name='__main__')")  # fmt: skip
    proc = _run([sys.executable, "-c", hide, str(TRAIN_SPEED), "--shared", str(tmp_path / "absent"), "--epochs", "2"])
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "scvi-tools" in proc.stderr and "--no-peer" in proc.stderr and "make setup" in proc.stderr
    assert "s/epoch" not in proc.stdout


def test_flop_limit_counts_the_ldvae_step_and_scales_with_the_epoch():
    """benchmarks/flops.py: the matrix FLOPs of one step by hand for a small LDVAE, an epoch as steps x (FLOPs /
    GEMM rate + element ops / elementwise rate), and positive measured rates."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        from flops import epoch_seconds, measure_rates, step_work
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    work = step_work(genes=100, hidden=[8, 4], latent=2, batch=10, nnz_per_cell=5)
    first = 2 * 50 * 8 * 2  # stored counts only: forward + weight gradient
    assert work["matmul_flops"] == first + 6 * 10 * 8 * 4 + 6 * 10 * 4 * 4 + 6 * 10 * 2 * 100
    params = 100 * 8 + 8 + 8 * 4 + 4 + 2 * 12 + 2 * (4 * 2 + 2) + 2 * 100 + 100 + 100
    assert work["params"] == params
    assert work["elementwise_ops"] == 12 * 10 * 100 + 14 * 50 + 15 * 10 * 12 + 4 * params
    limit = epoch_seconds(genes=100, hidden=[8, 4], latent=2, batch=10, cells=95, nnz_per_cell=5,
                          gemm_flops_per_s=1e9, elementwise_per_s=1e8)  # fmt: skip
    assert limit["steps"] == 10
    assert limit["seconds"] == pytest.approx(10 * (work["matmul_flops"] / 1e9 + work["elementwise_ops"] / 1e8))
    rates = measure_rates(genes=200, hidden=16, batch=32)
    assert rates["gemm_flops_per_s"] > 0 and rates["elementwise_per_s"] > 0


def test_gpu_models_without_a_gpu_says_so_in_one_line_and_measures_nothing():
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible: the script would measure it")
    proc = _run([sys.executable, str(REPO / "benchmarks" / "gpu_models.py")])
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "no CUDA GPU" in lines[0] and "--device cpu" in lines[0], proc.stderr
    assert "s/epoch" not in proc.stdout


def test_synthetic_modes_outside_a_finished_run_stops_with_a_message(tmp_path):
    script = REPO / "benchmarks" / "synthetic_modes.py"
    config = REPO / "config" / "shared_data" / "synthetic_modes.yaml"
    proc = subprocess.run([sys.executable, str(script), "--configfile", str(config)], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip() == ("synthetic_modes: the label map config/pbmc_coarse_labels.tsv is not here: run "
                                   "this in the run's working directory")  # fmt: skip
    proc = subprocess.run([sys.executable, str(script), "--configfile", str(REPO / "tests/configs/tiny.yaml")],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)  # fmt: skip
    tiny = REPO / "tests/configs/tiny.yaml"
    assert proc.returncode == 2 and proc.stderr.strip() == (
        f"synthetic_modes: results/models/cvae/blood_only/seed0/model.pt is missing: run snakemake --configfile {tiny} "
        "first")  # fmt: skip


def test_resume_determinism_stops_with_a_message_on_a_wrong_scenario_or_reference(tmp_path):
    script = REPO / "benchmarks" / "resume_determinism.py"
    proc = subprocess.run([sys.executable, str(script), "--scenarios", "term-train,nap", "--workdir", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith("resume_determinism: unknown scenario(s) ['nap']; choose from ['term-train',")
    proc = subprocess.run([sys.executable, str(script), "--reference", str(tmp_path), "--workdir", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip() == f"resume_determinism: the reference {tmp_path} has no model or no summary table"


def test_mix_scale_with_an_unwritable_workdir_stops_with_a_message(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    work = tmp_path / "a-file" / "work"
    proc = _run([sys.executable, str(SCRIPT), "--cells", "3000", "--genes", "500", "--workdir", str(work)])
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr, proc.stderr
    assert f"cannot write the work folder {work}" in proc.stderr and "--workdir" in proc.stderr, proc.stderr
    assert "stage " not in proc.stdout and "atlas: nnz" not in proc.stdout


CELL_RULES = ("parse", "qc", "split", "mix", "train", "train_seeds", "evaluate", "synthetic")


def _rule_paths():
    """{rule: (log path, benchmark path)} from the rule files' text."""
    import re

    out = {}
    for smk in sorted((REPO / "rules").glob("*.smk")):
        for block in re.split(r"^rule ", smk.read_text(), flags=re.M)[1:]:
            name = block.split(":", 1)[0].strip()
            log = re.search(r"^    log:\n\s+(?:\w+=)?f?\"([^\"]+)\"", block, flags=re.M)
            bench = re.search(r"^    benchmark:\n\s+f?\"([^\"]+)\"", block, flags=re.M)
            out[name] = (log and log.group(1), bench and bench.group(1))
    return out


def test_every_rule_that_reads_cells_is_benchmarked_beside_its_log():
    # rule_resources.py pairs results/benchmarks/{rule}/X.tsv with logs/{rule}/X.log, where the job logs its inputs
    paths = _rule_paths()
    for rule in CELL_RULES:
        log, bench = paths[rule]
        assert bench is not None, f"rule {rule} has no benchmark: directive"
        assert bench == "results/benchmarks/" + log.removeprefix("logs/").removesuffix(".log") + ".tsv", rule


def test_rule_resources_sets_peak_memory_against_the_inputs(tmp_path):
    sys.path.insert(0, str(REPO / "benchmarks"))
    import rule_resources

    gib = 2**30
    for rule, job, rss_mib, inputs in (("qc", "a", 1500, gib), ("qc", "b", 6000, gib), ("mix", "m/seed0", 100, 0)):
        bench = tmp_path / "results" / "benchmarks" / rule / f"{job}.tsv"
        bench.parent.mkdir(parents=True, exist_ok=True)
        bench.write_text(f"s\th:m:s\tmax_rss\n12.5\t0:00:12\t{rss_mib}\n")
        log = tmp_path / "logs" / rule / f"{job}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(f"INFO rule {rule} reads 2 input file(s), {inputs} bytes (x GiB) in memory\nINFO done\n")
    table = rule_resources.per_rule(rule_resources.jobs(tmp_path)).set_index("rule")
    assert list(table.index) == ["qc", "mix"]  # the DAG's order
    qc = table.loc["qc"]
    assert qc["jobs"] == 2 and qc["wall_s_total"] == 25.0 and qc["jobs_over_3x_plus_1gib"] == 1
    assert abs(qc["peak_rss_gib"] - 6000 / 1024) < 1e-9 and abs(qc["rss_per_input"] - 6000 * 2**20 / gib) < 1e-9
    assert "| qc | 2 |" in rule_resources.markdown(table.reset_index())


def test_study_speed_runs_on_the_cpu_at_a_small_size(tmp_path):
    """The study-scale benchmark end to end on 3,000 simulated cells: scmix alone and two models sharing the device,
    evaluation timed, the study projected; its figures are positive and consistent with each other."""
    out = tmp_path / "study.json"
    proc = _run([sys.executable, str(REPO / "benchmarks" / "study_speed.py"), "--cells", "3000", "--genes", "400",
                 "--epochs", "2", "--device", "cpu", "--models", "2", "--no-peer", "--eval-cells", "500",
                 "--json", str(out)])  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads(out.read_text())
    alone, shared = rows["scmix LDVAE"], rows["scmix LDVAE × 2 sharing the device"]
    for r in (alone, shared):
        assert r["seconds_per_epoch"] > 0 and r["cells_per_second"] > 0 and r["study_hours"] > 0
    assert alone["val_elbo_last"] < alone["val_elbo_first"]  # it trains
    assert shared["models"] == 2 and len(shared["val_elbo_last"]) == 2
    assert rows["evaluation"]["cells"] == 500 and rows["evaluation"]["log_px_100_samples"] > 0
    assert 0 < rows["limit"]["seconds"] < alone["seconds_per_epoch"]  # a lower bound, from rates measured in the run
    assert "measured / limit" in proc.stdout
    assert "load average" in proc.stdout and "| scmix LDVAE |" in proc.stdout


def test_study_speed_on_cuda_without_a_gpu_says_so_in_one_line():
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is visible here")
    proc = _run([sys.executable, str(REPO / "benchmarks" / "study_speed.py"), "--device", "cuda", "--no-peer"])
    assert proc.returncode == 1
    assert proc.stderr.strip().count("\n") == 0 and "sees no CUDA GPU" in proc.stderr, proc.stderr
