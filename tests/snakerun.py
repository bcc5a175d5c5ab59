"""Running the repository's workflow from tests."""

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "tests" / "configs" / "tiny.yaml"


def snakemake(workdir, *args, config=TINY):
    """Run the workflow in ``workdir`` with ``config`` (a subprocess; output captured)."""
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(workdir),
           "--configfile", str(config), *args]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True)


def parse_jobs(text: str) -> list[dict]:
    """The job blocks of a Snakemake dry run or log: rule, jobid, wildcards, outputs, reason, threads and resources
    of each."""
    jobs, job = [], None
    for line in text.splitlines():
        if m := re.match(r"(?:local)?rule (\w+):$", line):
            job = {"rule": m[1], "jobid": None, "wildcards": {}, "output": [], "reason": "", "threads": 1,
                   "resources": {}}  # fmt: skip
            jobs.append(job)
        elif job is not None and line.startswith("    "):
            key, _, value = line.strip().partition(": ")
            if key in ("wildcards", "resources"):
                job[key] = dict(kv.split("=", 1) for kv in value.split(", "))
            elif key == "output":
                job["output"] = value.split(", ")
            elif key == "reason":
                job["reason"] = value
            elif key in ("jobid", "threads"):
                job[key] = int(value)
        else:
            job = None
    return jobs


def live_group_members(pgid: int) -> list[int]:
    """Processes of a process group that are still running (zombies excluded), from /proc: the jobs a stopped
    Snakemake left behind (tests/workflow/test_operations.py, benchmarks/resume_determinism.py)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            pids.append(int(stat.parent.name))
    return pids
