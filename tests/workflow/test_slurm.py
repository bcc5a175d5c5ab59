"""The SLURM profile on a real scheduler: slurmctld + slurmd + slurmdbd (tests/slurm/localcluster.sh) on
localhost, the tiny config's jobs submitted through `snakemake --executor slurm --profile profiles/slurm`.

Skips, saying why, only when the scheduler cannot start here (not root, no apt, a real SLURM present)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import anndata as ad
import numpy as np
import pytest
import torch
import yaml

REPO = Path(__file__).resolve().parents[2]
CLUSTER = REPO / "tests" / "slurm" / "localcluster.sh"
PROFILE = REPO / "profiles" / "slurm"

# seed 0 of one mix, every model, both eval sets: one job of every per-job rule kind (20 jobs);
# the whole tiny config (72 jobs) took 6 min 11 s on 2 cores through SLURM (1 min 55 s locally), too long for the suite
MIX, SEED = "blood_only", 0


def profile_resources(rule):
    return yaml.safe_load((PROFILE / "config.yaml").read_text())["set-resources"][rule]


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    """A running single-node cluster: the environment in which sbatch, sacct and srun reach it."""
    state = tmp_path_factory.mktemp("slurm")
    gpu_model = profile_resources("train")["gpu_model"]
    res = subprocess.run(["bash", str(CLUSTER), "start", str(state), gpu_model], capture_output=True, text=True)
    if res.returncode == 3:
        pytest.skip(f"the SLURM test cluster cannot start here: {res.stderr.strip().splitlines()[-1]}")
    assert res.returncode == 0, res.stderr
    env = {**os.environ, "SLURM_CONF": str(state / "etc" / "slurm.conf")}
    yield env
    subprocess.run(["bash", str(CLUSTER), "stop", str(state)], capture_output=True)


def targets(cfg):
    models = list(cfg["models"])
    eval_sets = list(cfg["datasets"])
    out = [f"results/models/{m}/{MIX}/seed{SEED}/model.pt" for m in models]
    out += [f"results/models/ldvae/{MIX}/seed{SEED}/loadings.tsv"]
    out += [f"results/eval/{m}/{MIX}/seed{SEED}/{e}.{t}.tsv" for m in models for e in eval_sets
            for t in ("summary", "cells", "likelihood", "genes", "gene_summary", "ppc")]  # fmt: skip
    out += [f"results/synthetic/cvae/{MIX}/seed{SEED}/{e}.tsv" for e in eval_sets]
    out += [f"results/latent/{m}/{MIX}/seed{SEED}/{f}" for m in models for f in ("latent.h5ad", "scores.tsv")]
    return out


def sacct(env, *fields):
    # -S: sacct lists jobs since midnight by default, so a run across midnight lost its first jobs
    res = subprocess.run(["sacct", "-X", "-n", "-P", "-a", "-S", "2000-01-01", "-o", ",".join(fields)], env=env,
                         capture_output=True, text=True, check=True)  # fmt: skip
    return [dict(zip(fields, line.split("|"), strict=True)) for line in res.stdout.splitlines() if line]


def test_the_slurm_profile_runs_the_tiny_config_through_sbatch_with_the_results_of_a_local_run(
    slurm, tiny_run, tmp_path
):
    local, config = tiny_run
    cfg = yaml.safe_load(config.read_text())
    wanted = targets(cfg)
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(tmp_path),
           "--configfile", str(config), "--executor", "slurm", "--profile", str(PROFILE),
           # poll the scheduler every 2 s, not after 40 s (a real cluster's defaults suit a real cluster)
           "--slurm-init-seconds-before-status-checks", "2", "--seconds-between-status-checks", "2",
           *wanted]  # fmt: skip
    res = subprocess.run(cmd, env=slurm, capture_output=True, text=True, timeout=1200)
    assert res.returncode == 0, res.stderr[-5000:]

    # every job went through sbatch, and the accounting database has each one, completed
    submitted = dict(re.findall(r"Job (\d+) has been submitted with SLURM jobid (\d+)", res.stderr))
    ran = re.search(r"(\d+) of \1 steps \(100%\) done", res.stderr)
    assert ran and len(submitted) == int(ran[1])
    jobs = {j["jobid"]: j for j in sacct(slurm, "jobid", "partition", "state", "alloctres", "comment")}
    assert set(submitted.values()) <= set(jobs)
    mine = [jobs[i] for i in submitted.values()]
    assert all(j["state"] == "COMPLETED" for j in mine), [j for j in mine if j["state"] != "COMPLETED"]
    rules = [re.match(r"rule_(\w+?)_wildcards", j["comment"])[1] for j in mine]
    assert sorted(set(rules)) == ["download", "evaluate", "loadings", "mix", "parse", "qc", "split",
                                  "synthetic", "train"]  # fmt: skip
    # the GPU rule went to the gpu partition with the model's GPU (of the profile's model) and cpus_per_gpu
    train = profile_resources("train")
    for job, rule in zip(mine, rules, strict=True):
        if rule == "train":
            assert job["partition"] == train["slurm_partition"], job
            assert "gres/gpu=1" in job["alloctres"] and f"cpu={train['cpus_per_gpu']}" in job["alloctres"], job
        else:
            assert job["partition"] == "main" and "gres/gpu" not in job["alloctres"], job
    assert rules.count("train") == len(cfg["models"])

    # the same results as the local run of the same config
    for target in wanted:
        if target.endswith(".tsv"):
            assert (tmp_path / target).read_bytes() == (local / target).read_bytes(), target
    for model in cfg["models"]:
        path = f"results/models/{model}/{MIX}/seed{SEED}/model.pt"
        a, b = (torch.load(d / path, weights_only=True)["state_dict"] for d in (tmp_path, local))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), path
    for target in (t for t in wanted if t.endswith("latent.h5ad")):
        a, b = (ad.read_h5ad(d / target) for d in (tmp_path, local))
        assert (a.obs_names == b.obs_names).all() and np.array_equal(a.obsm["X_scmix"], b.obsm["X_scmix"]), target
        np.testing.assert_allclose(a.obsm["X_umap"], b.obsm["X_umap"], atol=1e-5, err_msg=target)
    a, b = (ad.read_h5ad(d / f"results/mixes/{MIX}/seed{SEED}.h5ad") for d in (tmp_path, local))
    assert (a.obs_names == b.obs_names).all() and (a.var_names == b.var_names).all()
    assert np.array_equal(a.X.toarray(), b.X.toarray())
