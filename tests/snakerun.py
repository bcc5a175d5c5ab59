"""Running the repository's workflow from tests."""

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
