# The two commands the README starts with: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
CORES  ?= 2
BIN    := $(VENV)/bin
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: setup system demo test lint dag clean bench-setup bench

setup: system $(VENV)/.installed

# Debian packages, installed when run as root: R with edgeR (the recount3 source), Chromium (the report test).
system:
	@if Rscript -e 'library(edgeR)' >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq r-base-core r-bioc-edger >/dev/null; \
	else echo "note: R with edgeR is missing; the recount3 source needs: apt-get install r-base-core r-bioc-edger"; fi
	@if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else echo "note: Chromium is missing; tests/test_report.py (the report in a headless browser) will skip"; fi

# torch is installed first and pinned: an unpinned torch pulls several GB of CUDA packages.
$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -r requirements.txt
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $@

demo: setup
	$(BIN)/snakemake --cores $(CORES)

test: setup
	$(BIN)/python -m pytest -rs --durations=12 tests

lint: setup
	$(BIN)/snakemake --lint
	$(BIN)/snakefmt --check .
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

dag: setup
	$(BIN)/snakemake --rulegraph | dot -Tpng > rulegraph.png

# benchmarks/train_speed.py against scvi-tools: a separate venv, so scvi-tools never enters the runtime one.
bench-setup: .venv-bench/.installed

.venv-bench/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv .venv-bench
	.venv-bench/bin/python -m pip install -q torch==2.13.0
	.venv-bench/bin/python -m pip install -q -r requirements.txt
	.venv-bench/bin/python -m pip install -q --no-deps -e .
	.venv-bench/bin/python -m pip install -q scvi-tools==1.4.2
	touch $@

bench: bench-setup
	.venv-bench/bin/python benchmarks/train_speed.py

clean:
	rm -rf results logs .snakemake
