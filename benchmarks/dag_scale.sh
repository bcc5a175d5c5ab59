#!/usr/bin/env bash
# Dry-run time of a study with 10 mixes x 5 seeds x 5 eval sets (one model): builds the DAG only.
#   bash benchmarks/dag_scale.sh            # prints the job count and the seconds of `snakemake -n`
# The config is written to a temporary folder, which is also the working directory (nothing in the repo
# is touched). The peer is `snakemake --version` (start-up alone), measured in the same run.
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
SNAKEMAKE="${SNAKEMAKE:-$REPO/.venv/bin/snakemake}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

python3 - "$WORK/config.yaml" <<'PY'
import sys
datasets = [f"d{i}" for i in range(5)]
mixes = {}
for i in range(5):
    mixes[f"d{i}_alone"] = {"total_cells": 200, "datasets": {f"d{i}": 1.0}}
    mixes[f"d{i}+d{(i + 1) % 5}"] = {"total_cells": 200, "datasets": {f"d{i}": 0.5, f"d{(i + 1) % 5}": 0.5}}
lines = ["seeds: [0, 1, 2, 3, 4]", "simulation: {n_genes: 500, seed: 1}", "datasets:"]
lines += [f"  {d}: {{source: simulated, n_cells: 500, cell_types: {{T: 0.5, B: 0.5}}}}" for d in datasets]
lines += ["mixes:"]
for m, r in mixes.items():
    parts = ", ".join(f"{d}: {f}" for d, f in r["datasets"].items())
    lines.append(f"  \"{m}\": {{total_cells: 200, datasets: {{{parts}}}}}")
lines += ["models:", "  ldvae: {architecture: ldvae, epochs: 5}"]
open(sys.argv[1], "w").write("\n".join(lines) + "\n")
PY

time_of() {
  local t0 t1
  t0=$(date +%s.%N)
  "$@" > "$WORK/out.txt" 2>&1
  t1=$(date +%s.%N)
  python3 -c "print(f'{$t1 - $t0:.2f}')"
}
startup=$(time_of "$SNAKEMAKE" --version)
dry=$(time_of "$SNAKEMAKE" -s "$REPO/Snakefile" --directory "$WORK" --configfile "$WORK/config.yaml" -n --quiet rules)
jobs=$(awk '$1 == "total" {print $2; exit}' "$WORK/out.txt")
evaluate=$(awk '$1 == "evaluate" {print $2; exit}' "$WORK/out.txt")
echo "10 mixes x 5 seeds x 5 eval sets: ${jobs} jobs (${evaluate} evaluate); dry run ${dry} s; snakemake start-up alone ${startup} s"
