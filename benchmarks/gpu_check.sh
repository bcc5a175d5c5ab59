#!/usr/bin/env bash
# Every GPU check and benchmark of scmix in one run on a CUDA machine; logs and tables go to $OUT (default gpu-out).
#
# Prepare here (the package registry and ../shared are reachable here, not there):
#     bash benchmarks/gpu_wheels.sh                       # scvi-tools and the scverse packages, into .gpu-wheels/
#     mkdir -p .gpu-data/pbmc3k && cp ../shared/data/pbmc3k/{pbmc3k_filtered_gene_bc_matrices.tar.gz,cell_types.csv} .gpu-data/pbmc3k/
# Then one device run: carry [".gpu-wheels", ".gpu-data"], command `bash benchmarks/gpu_check.sh`, timeout ~560 s.
#
# 1. tests/models/test_steps.py: the captured step against the fixed-shape step op by op for every architecture,
#    models sharing the GPU against each alone, the padded batches against the eager ones (real PBMC 3k cells);
# 2. benchmarks/gpu_models.py: every variant's outputs and gradients on the GPU against the CPU, training there,
#    LDVAE epoch time GPU against the machine's CPU;
# 3. benchmarks/study_speed.py at the study's size (204,000 x 19,000): scmix alone, 4 and 8 models sharing the
#    GPU, LinearSCVI on the same GPU, the limit estimate, evaluation of 20,000 cells, the 40-model projection.
set -u
cd "$(dirname "$0")/.."
OUT="${OUT:-gpu-out}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
export PYTHONPATH="$PWD" SCMIX_SHARED_DATA="$PWD/.gpu-data"
{ date -u; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  "$PY" -c "import torch, sys; print(sys.version.split()[0], torch.__version__, torch.cuda.get_device_name(0))"
  uptime; } > "$OUT/machine.txt" 2>&1
if ! "$PY" -c "import scvi" > /dev/null 2>&1 && ls .gpu-wheels/*.whl > /dev/null 2>&1; then
    "$PY" -m pip install -q --no-index --no-deps .gpu-wheels/*.whl > "$OUT/pip.txt" 2>&1
fi
step() {  # name, timeout, command...
    local name=$1 limit=$2; shift 2
    local t0=$SECONDS
    timeout "$limit" "$@" > "$OUT/$name.txt" 2>&1
    echo "$name: exit $? in $((SECONDS - t0)) s (load $(cut -d' ' -f1-3 /proc/loadavg))" | tee -a "$OUT/steps.txt"
}
step test_steps 150 "$PY" -m pytest -q -p no:cacheprovider -rs tests/models/test_steps.py
step gpu_models 90 "$PY" benchmarks/gpu_models.py --out "$OUT/gpu_models.tsv"
step study_speed 330 "$PY" benchmarks/study_speed.py --device cuda --threads 16 --epochs 3 --peer-epochs 2 \
    --models 4 8 --json "$OUT/study_speed.json"
tail -n 25 "$OUT"/test_steps.txt "$OUT"/gpu_models.txt "$OUT"/study_speed.txt
