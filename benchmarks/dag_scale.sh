#!/usr/bin/env bash
# Dry-run time of a study with 10 mixes x 5 seeds x 5 eval sets (one model): builds the DAG only.
#   bash benchmarks/dag_scale.sh            # prints the job count and the seconds of `snakemake -n`
# The config is written to a temporary folder, which is also the working directory (nothing in the repo
# is touched). The peer is `snakemake --version` (start-up alone), measured in the same run.
# A missing tool, a failing snakemake or an output without job counts stops it with one message (exit 1).
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
SNAKEMAKE="${SNAKEMAKE:-$REPO/.venv/bin/snakemake}"
ME="benchmarks/dag_scale.sh"
die() {
  echo "$ME: $*" >&2
  exit 1
}
command -v python3 > /dev/null || die "python3 not found on PATH; install Python 3 (it writes the config and times the runs)"
if [[ "$SNAKEMAKE" == */* ]]; then
  [[ -f "$SNAKEMAKE" && -x "$SNAKEMAKE" ]] \
    || die "snakemake not found at $SNAKEMAKE; run \`make setup\` or set SNAKEMAKE=/path/to/snakemake"
else
  command -v "$SNAKEMAKE" > /dev/null \
    || die "snakemake not found: no '$SNAKEMAKE' on PATH; run \`make setup\` or set SNAKEMAKE=/path/to/snakemake"
fi
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

python3 - "$WORK/config.yaml" << 'PY' || die "could not write the study config to $WORK/config.yaml"
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

# time_of LABEL CMD...: seconds of CMD (its output in $WORK/out.txt). Runs inside $(...), where `set -e` does not
# apply and `exit` leaves only the subshell: every failure is checked here, reported on stderr, returned as 1.
time_of() {
  local label="$1" t0 t1 rc=0 seconds
  shift
  t0=$(date +%s.%N)
  "$@" > "$WORK/out.txt" 2>&1 || rc=$?
  t1=$(date +%s.%N)
  if ((rc != 0)); then
    echo "$ME: \`$label\` failed (exit $rc, SNAKEMAKE=$SNAKEMAKE); last lines of its output:" >&2
    tail -n 15 "$WORK/out.txt" | sed 's/^/    /' >&2
    [[ -s "$WORK/out.txt" ]] || echo "    (none)" >&2
    return 1
  fi
  if ! [[ "$t0" =~ ^[0-9]+\.[0-9]+$ && "$t1" =~ ^[0-9]+\.[0-9]+$ ]]; then
    echo "$ME: \`date +%s.%N\` gave '$t0', not seconds with a fraction; GNU date (coreutils) is needed" >&2
    return 1
  fi
  seconds=$(python3 -c "print(f'{$t1 - $t0:.2f}')") || return 1
  if ! [[ "$seconds" =~ ^[0-9]+\.[0-9][0-9]$ && "$seconds" != "0.00" ]]; then
    echo "$ME: \`$label\` took $seconds s: SNAKEMAKE=$SNAKEMAKE does not look like a real snakemake" >&2
    return 1
  fi
  echo "$seconds"
}
startup=$(time_of "snakemake --version" "$SNAKEMAKE" --version) || exit 1
dry_run=("$SNAKEMAKE" -s "$REPO/Snakefile" --directory "$WORK" --configfile "$WORK/config.yaml" -n --quiet rules)
dry=$(time_of "snakemake -n" "${dry_run[@]}") || exit 1
jobs=$(awk '$1 == "total" {print $2; exit}' "$WORK/out.txt")
evaluate=$(awk '$1 == "evaluate" {print $2; exit}' "$WORK/out.txt")
if ! [[ "$jobs" =~ ^[1-9][0-9]*$ && "$evaluate" =~ ^[1-9][0-9]*$ ]]; then
  echo "$ME: no job counts in the output of \`snakemake -n --quiet rules\` (total: '${jobs}', evaluate:" \
    "'${evaluate}', SNAKEMAKE=$SNAKEMAKE); last lines of its output:" >&2
  tail -n 15 "$WORK/out.txt" | sed 's/^/    /' >&2
  exit 1
fi
echo "10 mixes x 5 seeds x 5 eval sets: ${jobs} jobs (${evaluate} evaluate); dry run ${dry} s; snakemake start-up alone ${startup} s"
