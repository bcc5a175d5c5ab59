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
