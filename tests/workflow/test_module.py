"""scmix used by another workflow as a Snakemake module: ``module scmix: snakefile: ...`` and ``use rule * from
scmix as scmix_*`` in a host workflow in another folder plan the whole study and build its tables, the same as a
run of scmix itself."""

import subprocess
import sys

import pandas as pd
import yaml
from snakerun import REPO, TINY, snakemake

HOST = f"""configfile: "config.yaml"


module scmix:
    snakefile:
        "{REPO}/Snakefile"
    config:
        config


use rule * from scmix as scmix_*
"""
TABLE = "results/summary/reconstruction_accuracy.tsv"


def test_a_host_workflow_in_another_folder_runs_scmix_as_a_module(tmp_path):
    config = yaml.safe_load(TINY.read_text())
    config["seeds"] = [0]
    config["mixes"] = {"blood_only": config["mixes"]["blood_only"]}
    config["models"] = {"ldvae": config["models"]["ldvae"]}
    host = tmp_path / "host"
    host.mkdir()
    (host / "config.yaml").write_text(yaml.safe_dump(config))
    (host / "Snakefile").write_text(HOST)

    def host_snakemake(*args):
        return subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=host, capture_output=True, text=True)

    plan = host_snakemake("-n")
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert "scmix_train " in plan.stdout and "scmix_all " in plan.stdout, plan.stdout
    run = host_snakemake("--cores", "2", TABLE)
    assert run.returncode == 0, run.stdout + run.stderr
    # the same study run by scmix itself gives the same table
    (tmp_path / "direct").mkdir()
    (tmp_path / "direct.yaml").write_text(yaml.safe_dump(config))
    direct = snakemake(tmp_path / "direct", "--cores", "2", TABLE, config=tmp_path / "direct.yaml")
    assert direct.returncode == 0, direct.stdout + direct.stderr
    ours, theirs = pd.read_csv(host / TABLE, sep="\t"), pd.read_csv(tmp_path / "direct" / TABLE, sep="\t")
    assert len(ours) > 3 and set(ours["eval_set"]) == {"blood", "tumour"}
    pd.testing.assert_frame_equal(ours, theirs)
