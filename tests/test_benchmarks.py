"""Smoke tests of the benchmarks: mix_scale.py at a tiny size (every stage runs and reports positive numbers),
dag_scale.sh (the DAG it times has the size it claims).

No timing is asserted: the benchmark reports its speeds as ratios against a peer measured in the same run.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
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


def test_dag_scale_builds_the_500_job_dag():
    """benchmarks/dag_scale.sh: the 10 mixes x 5 seeds x 5 eval sets study dry-runs (its time is reported, not
    asserted)."""
    env = {**os.environ, "SNAKEMAKE": str(Path(sys.executable).with_name("snakemake"))}
    proc = subprocess.run(["bash", str(REPO / "benchmarks" / "dag_scale.sh")], capture_output=True, text=True,
                          timeout=300, env=env)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # 5 datasets x (download, parse, qc, split) + 50 x (mix, train, latent, loadings) + 250 evaluate + summaries
    assert "490 jobs (250 evaluate)" in proc.stdout, proc.stdout
