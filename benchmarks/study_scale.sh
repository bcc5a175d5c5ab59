#!/usr/bin/env bash
# A simulated study at scale, end to end: writes the config, runs the workflow, prints per rule the wall time,
# peak RSS, the inputs of the job with the largest peak and RSS / input (benchmarks/rule_resources.py).
#   bash benchmarks/study_scale.sh                        # 200,000 cells x 8,000 genes over 2 datasets, 3 epochs
#   bash benchmarks/study_scale.sh --cells 20000 --genes 2000 --epochs 1   # a quick check
# Options: --cells N (all datasets together), --genes G, --datasets D (>= 2), --epochs E, --cores C (2),
# --mix-cells M (cells per mix, default 40 % of a dataset),
# --workdir DIR (default a temporary folder, removed at the end; a given one is kept and reused).
# The study: D simulated datasets of N/D cells each (the second with a programme shift), 10 % held out; mixes
# d0 alone and d0+d1 1:1 of M cells each, one seed; an LDVAE and a cell-type-conditioned cVAE (so rule
# synthetic runs), batch 128; every eval set; 20 importance samples for the held-out likelihood.
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
SNAKEMAKE="${SNAKEMAKE:-$REPO/.venv/bin/snakemake}"
PYTHON="${PYTHON:-$REPO/.venv/bin/python}"
ME="benchmarks/study_scale.sh"
die() {
  echo "$ME: $*" >&2
  exit 1
}
CELLS=200000 GENES=8000 DATASETS=2 EPOCHS=3 CORES=2 MIX_CELLS="" WORK=""
while (($#)); do
  case "$1" in
    --cells | --genes | --datasets | --epochs | --cores | --mix-cells | --workdir)
      (($# >= 2)) || die "$1 needs a value"
      case "$1" in
        --cells) CELLS="$2" ;; --genes) GENES="$2" ;; --datasets) DATASETS="$2" ;;
        --epochs) EPOCHS="$2" ;; --cores) CORES="$2" ;; --mix-cells) MIX_CELLS="$2" ;; --workdir) WORK="$2" ;;
      esac
      shift 2
      ;;
    *) die "unknown option '$1' (options: --cells --genes --datasets --epochs --cores --mix-cells --workdir)" ;;
  esac
done
for v in CELLS GENES DATASETS EPOCHS CORES; do
  [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || die "--${v,,} must be a positive integer, not '${!v}'"
done
((DATASETS >= 2)) || die "--datasets must be at least 2 (the mix d0+d1)"
((CELLS / DATASETS >= 1000)) || die "--cells must give every dataset at least 1,000 cells"
MIX_CELLS="${MIX_CELLS:-$((CELLS / DATASETS * 2 / 5))}"
[[ "$MIX_CELLS" =~ ^[1-9][0-9]*$ ]] || die "--mix-cells must be a positive integer, not '$MIX_CELLS'"
[[ -x "$SNAKEMAKE" ]] || die "snakemake not found at $SNAKEMAKE; run \`make setup\` or set SNAKEMAKE=/path/to/snakemake"
[[ -x "$PYTHON" ]] || die "python not found at $PYTHON; run \`make setup\` or set PYTHON=/path/to/python"
if [[ -z "$WORK" ]]; then
  WORK="$(mktemp -d)"
  trap 'rm -rf "$WORK"' EXIT
fi
mkdir -p "$WORK" || die "cannot create the work folder $WORK"

"$PYTHON" - "$WORK/config.yaml" "$CELLS" "$GENES" "$DATASETS" "$EPOCHS" "$MIX_CELLS" << 'PY' || die "could not write $WORK/config.yaml"
import sys

path, cells, genes, n_datasets, epochs, total = sys.argv[1], *map(int, sys.argv[2:])
per = cells // n_datasets
types = "{T: 0.4, B: 0.15, NK: 0.1, Mono: 0.25, DC: 0.1}"
lines = ["seeds: [0]", f"simulation: {{n_genes: {genes}, seed: 3}}", "datasets:"]
for i in range(n_datasets):
    shift = ", programme_shift: {sd: 0.8, gene_fraction: 0.2}" if i % 2 else ""
    lines.append(f"  d{i}: {{source: simulated, n_cells: {per}, donors: 6, cell_types: {types}{shift}}}")
lines += [
    "qc: {min_genes: 150, min_counts: 300, max_pct_mito: 20, min_cells: 3}",
    "split: {eval_fraction: 0.1, seed: 0}",
    "mixes:",
    f"  d0_alone: {{total_cells: {total}, datasets: {{d0: 1.0}}}}",
    f"  d0+d1: {{total_cells: {total}, datasets: {{d0: 0.5, d1: 0.5}}}}",
    "models:",
    f"  ldvae: {{architecture: ldvae, n_latent: 10, hidden: [128, 128], epochs: {epochs}, batch_size: 128, "
    "kl_warmup_epochs: 1, patience: 0, threads: 2}",
    f"  cvae: {{architecture: cvae, conditions: [cell_type], n_latent: 10, hidden: [128, 128], epochs: {epochs}, "
    "batch_size: 128, kl_warmup_epochs: 1, patience: 0, threads: 2}",
    "evaluation: {n_top_genes: 1000, likelihood_samples: 20}",
]
open(path, "w").write("\n".join(lines) + "\n")
PY

echo "study: $CELLS cells x $GENES genes over $DATASETS datasets, mixes of $MIX_CELLS cells, $EPOCHS epochs, $CORES cores; work folder $WORK"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
t0=$(date +%s)
if ! "$SNAKEMAKE" -s "$REPO/Snakefile" --directory "$WORK" --configfile "$WORK/config.yaml" --cores "$CORES" \
  > "$WORK/snakemake.log" 2>&1; then
  echo "$ME: the workflow failed; last lines of $WORK/snakemake.log:" >&2
  tail -n 20 "$WORK/snakemake.log" | sed 's/^/    /' >&2
  exit 1
fi
t1=$(date +%s)
echo "workflow: $((t1 - t0)) s wall; load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
"$PYTHON" "$REPO/benchmarks/rule_resources.py" "$WORK"
