"""``models.NAME.seeds_together``: every seed of a model on a mix trained in one job (rule train_seeds). The DAG keeps
its per-seed targets, the job takes its threads, GPUs and device from the model as rule train does, each seed's
checkpoint and history equal those of a job of its own, and what reruns after a change is the whole job."""

import shutil

import pytest
import yaml
from snakerun import TINY, parse_jobs, snakemake

from scmix.resultdiff import diff_trees


def write(path, cfg):
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))  # a simulated dataset depends on its key order
    return path


def plan(workdir, *args, config) -> list[dict]:
    res = snakemake(workdir, "-n", *args, config=config)
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    return parse_jobs(res.stdout + res.stderr)


def outputs(jobs, rules=None) -> list[str]:
    return sorted(f for j in jobs if rules is None or j["rule"] in rules for f in j["output"])


def model_files(model, mix, seeds) -> list[str]:
    return sorted(f"results/models/{model}/{mix}/seed{s}/{f}" for s in seeds for f in ("model.pt", "history.tsv"))


def test_a_model_with_the_setting_trains_in_one_job_per_mix_and_every_target_stays(tmp_path):
    cfg = yaml.safe_load(TINY.read_text())
    mixes, seeds = list(cfg["mixes"]), cfg["seeds"]
    alone = plan(tmp_path, config=write(tmp_path / "alone.yaml", cfg))
    cfg["models"]["ldvae"].update(seeds_together=True, threads=2, gpu=0, device="cpu")
    together = plan(tmp_path, "--cores", "4", config=write(tmp_path / "together.yaml", cfg))

    jobs = [j for j in together if j["rule"] == "train_seeds"]
    assert sorted(j["wildcards"]["mix"] for j in jobs) == sorted(mixes) and len(seeds) == 2
    for job in jobs:
        assert job["wildcards"]["model"] == "ldvae" and "seed" not in job["wildcards"]
        assert sorted(job["output"]) == model_files("ldvae", job["wildcards"]["mix"], seeds)
        # scheduling from the model's settings, as for rule train
        assert job["threads"] == 2 and job["resources"]["gpu"] == "0" and job["resources"]["device"] == "cpu"
    # the other model keeps a job per seed
    trains = [j for j in together if j["rule"] == "train"]
    assert sorted((j["wildcards"]["model"], j["wildcards"]["mix"], int(j["wildcards"]["seed"])) for j in trains) == (
        sorted(("cvae", mix, seed) for mix in mixes for seed in seeds)
    )
    # the same files; only the jobs that train the ldvae differ, every other job (its outputs, its wildcards) stays
    assert outputs(together) == outputs(alone)
    assert outputs(together, {"train_seeds"}) == outputs([j for j in alone if j["wildcards"].get("model") == "ldvae"],
                                                         {"train"})  # fmt: skip

    def others(jobs):
        return sorted((j["rule"], sorted(j["wildcards"].items()), sorted(j["output"])) for j in jobs
                      if j["rule"] not in ("train", "train_seeds"))  # fmt: skip

    assert others(together) == others(alone)


@pytest.mark.e2e
def test_seeds_trained_together_equal_seeds_trained_alone_and_a_change_reruns_the_whole_job(tiny_run, tmp_path):
    """tiny_run trained each seed of the LDVAE in a job of its own (CPU, one thread); in a copy of it, the LDVAE with
    seeds_together trains both seeds of a mix in one job, which writes the same weights, checkpoint records and
    histories (timings aside). Then what a dry run replans: the job, for a changed training setting or a seed added;
    nothing for threads."""
    full, config = tiny_run
    work = tmp_path / "work"
    shutil.copytree(full, work, symlinks=True)  # copy2: modification times kept, so upstream stays up to date
    cfg = yaml.safe_load(config.read_text())
    seeds = cfg["seeds"]
    cfg["models"]["ldvae"]["seeds_together"] = True
    on = write(tmp_path / "together.yaml", cfg)
    targets = model_files("ldvae", "blood_only", seeds)

    # turning the setting on retrains: the job's inputs (every seed's mix) are not those of a seed's own job
    planned = plan(work, *targets, config=on)
    assert [j["rule"] for j in planned] == ["train_seeds"], planned
    # Snakemake gives "Set of input files has changed", or "Updated input files" where a copied mix's time stamp
    # is as new as the model's
    assert "input files" in planned[0]["reason"], planned[0]["reason"]
    res = snakemake(work, "--cores", "2", *targets, config=on)
    assert res.returncode == 0, res.stderr[-3000:]
    assert [j["rule"] for j in parse_jobs(res.stderr)] == ["train_seeds"]
    # bit-identical on the CPU: every weight, the checkpoint's records, the histories (scmix.resultdiff)
    differences = diff_trees(full, work, targets)
    assert not differences, "seeds trained together differ from seeds trained alone:\n" + "\n".join(differences)
    log = (work / "logs/train_seeds/ldvae/blood_only.log").read_text()
    assert all(f"training ldvae (ldvae, nb likelihood) on mix blood_only seed {s}:" in log for s in seeds), log
    assert (work / "results/benchmarks/train_seeds/ldvae/blood_only.tsv").stat().st_size > 0

    # a training setting reruns the whole job; the model's threads rerun nothing
    cfg["models"]["ldvae"]["epochs"] += 1
    planned = plan(work, *targets, config=write(tmp_path / "epochs.yaml", cfg))
    assert [j["rule"] for j in planned] == ["train_seeds"] and sorted(planned[0]["output"]) == targets
    assert planned[0]["reason"].startswith("Params have changed"), planned[0]["reason"]
    cfg["models"]["ldvae"]["epochs"] -= 1
    cfg["models"]["ldvae"]["threads"] = 2
    assert plan(work, *targets, config=write(tmp_path / "threads.yaml", cfg)) == []
    # a seed added: its mix, then the mix's job again, for every seed
    cfg["seeds"] = [*seeds, 2]
    more = model_files("ldvae", "blood_only", cfg["seeds"])
    planned = plan(work, *more, config=write(tmp_path / "three_seeds.yaml", cfg))
    assert sorted(j["rule"] for j in planned) == ["mix", "train_seeds"]
    assert outputs(planned, {"train_seeds"}) == more
