# The two commands the README starts with: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
CORES  ?= 2
# pytest-xdist workers: one more than the cores, as much of the suite waits on subprocesses (Snakemake, R, SLURM)
TEST_WORKERS ?= 3
BIN    := $(VENV)/bin
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: setup system demo test lint dag clean bench

setup: system $(VENV)/.installed

# Debian packages, installed when run as root: R with edgeR (the recount3 source), R's SingleCellExperiment and
# SeuratObject (the rdata source: R data objects, read through rpy2), Chromium (the report test).
R_PACKAGES := r-base-core r-bioc-edger r-bioc-singlecellexperiment r-cran-seuratobject
system:
	@if Rscript -e 'library(edgeR); library(SingleCellExperiment); library(SeuratObject)' >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(R_PACKAGES) >/dev/null; \
	else echo "note: R or an R package is missing; the recount3 and rdata sources need: apt-get install $(R_PACKAGES)"; fi
	@if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else echo "note: Chromium is missing; tests/workflow/test_report.py (the report in a headless browser) will skip"; fi

# torch is installed first and pinned: an unpinned torch pulls several GB of CUDA packages.
$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -r requirements.txt
	$(BIN)/python -m pip install -q --no-deps -e .
	# the optional extra scvi (architectures scvi and scvi_linear, the speed benchmark's peer), held to the pins
	$(BIN)/python -m pip install -q -c requirements.txt -e '.[scvi]'
	# the optional extra rdata (R data objects through rpy2): rpy2 builds against R, so only where R is
	@if command -v R >/dev/null 2>&1; then $(BIN)/python -m pip install -q -c requirements.txt -e '.[rdata]'; \
	else echo "note: R is missing; the rdata source needs R, then: $(BIN)/python -m pip install -e '.[rdata]'"; fi
	touch $@

demo: setup
	$(BIN)/snakemake --cores $(CORES)

test: setup
	$(BIN)/python -m pytest -n $(TEST_WORKERS) -rs --durations=12 tests

lint: setup
	$(BIN)/snakemake --lint
	$(BIN)/snakefmt --check .
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

dag: setup
	$(BIN)/snakemake --rulegraph | dot -Tpng > rulegraph.png

bench: setup
	$(BIN)/python benchmarks/train_speed.py

clean:
	rm -rf results logs .snakemake
