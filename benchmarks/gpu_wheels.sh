#!/usr/bin/env bash
# Wheels for the GPU machine (its image has Python 3.12, torch, lightning, numba, pandas, scipy, h5py, xarray,
# seaborn, statsmodels, pytest but not scvi-tools and the scverse packages it needs), into .gpu-wheels/
# (ignored by git; name it in the device run's `carry`). Run here, where the package registry is reachable:
#     bash benchmarks/gpu_wheels.sh && echo /.gpu-wheels/ >> .git/info/exclude
# benchmarks/gpu_check.sh installs them there with `pip install --no-index --no-deps`.
set -euo pipefail
cd "$(dirname "$0")/.."
PIP="${PIP:-.venv/bin/python -m pip}"
DEST=.gpu-wheels
mkdir -p "$DEST"
PLATFORM=(--python-version 3.12 --implementation cp --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64
          --platform manylinux_2_28_x86_64 --only-binary=:all: --no-deps -d "$DEST")
# native wheels for cp312
$PIP download -q "${PLATFORM[@]}" numcodecs==0.16.6 crc32c scikit-misc==0.5.3
# pure-Python ones (docrep is an sdist only: built into a wheel here)
$PIP wheel -q --no-deps -w "$DEST" docrep==0.3.2
$PIP download -q --no-deps --only-binary=:all: -d "$DEST" scvi-tools==1.4.2 anndata==0.12.19 mudata==0.3.10 \
    ml-collections==1.1.0 pyro-ppl==1.9.2 pyro-api==0.1.2 sparse==0.19.3 scanpy==1.11.5 array-api-compat==1.16.0 \
    legacy-api-wrap==1.5 natsort==8.4.0 scverse-misc==0.0.3 zarr==3.1.6 donfig==0.8.1.post1 session-info2==0.4.1 \
    umap-learn==0.5.12 pynndescent==0.7.0
du -sh "$DEST"
