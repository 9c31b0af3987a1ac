# fmriscaling — two commands on a fresh machine: `make demo`, `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CORES ?= all
# CPU build where no NVIDIA driver answers, PyPI's default CUDA build where one does.
# Override with `make TORCH=cuda ...` or `make TORCH=cpu ...`.
TORCH ?= $(shell command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && echo cuda || echo cpu)
TORCH_CPU_SPEC ?= torch==2.13.0
TORCH_CUDA_SPEC ?= torch>=2.3,<3

.PHONY: venv demo report view test lint unit workflow format clean-demo demo-diff plan slurm-profile

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "installing PyTorch ($(TORCH) build) into $(VENV)"
	$(BIN)/python -m pip install -q "$(if $(filter cuda,$(TORCH)),$(TORCH_CUDA_SPEC),$(TORCH_CPU_SPEC))"
	@# the rest through uv (parallel downloads, a shared cache: 57 s instead of 106 s with pip on
	@# 2 cores); the torch just installed satisfies the package's range, so uv keeps it. Bytecode
	@# is compiled at install time, as pip does: where PYTHONDONTWRITEBYTECODE is set, nothing
	@# would cache it and every job would compile pandas, transformers, ... again
	$(BIN)/python -m pip install -q "uv>=0.5,<1"
	$(BIN)/uv pip install -q --compile-bytecode --python $(BIN)/python -e ".[dev]"
	@# the library too (an editable install): jobs read its bytecode, a changed module is
	@# compiled in memory
	$(BIN)/python -m compileall -q fmriscaling
	@touch $@

demo: venv
	$(BIN)/snakemake --cores $(CORES) --workflow-profile config/profiles/default --configfile config/config.yaml

# results/report.html: the final outputs of the demo (or of CONFIG=config/lebel2023.yaml) with
# their captions; brings them up to date first (nothing to do after `make demo`)
CONFIG ?= config/config.yaml
report: venv
	$(BIN)/snakemake --cores $(CORES) --workflow-profile config/profiles/default --configfile $(CONFIG)
	$(BIN)/snakemake --cores 1 --workflow-profile config/profiles/default --configfile $(CONFIG) \
	    --report results/report.html

# the interactive viewers (pycortex WebGL per subject, nilearn pages per group map) and the
# report, served from results/ on 127.0.0.1 (pycortex's viewer loads its surfaces over HTTP:
# from file:// it stays on "Loading brain..."); prints their URLs. VIEW_PORT=0: any free port
VIEW_PORT ?= 8000
view: venv
	$(BIN)/python -m fmriscaling.viewers results --port $(VIEW_PORT)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/snakefmt --check Snakefile rules/
	$(BIN)/snakemake --lint --configfile config/config.yaml
	$(BIN)/snakemake --lint --configfile config/lebel2023.yaml
	$(BIN)/snakemake --lint --configfile config/algonauts2023.yaml
	$(BIN)/snakemake --lint --configfile config/cluster_check.yaml

# one test file per worker, a worker more than the cores (the SLURM module mostly waits for its
# status polls), the long modules first (tests/conftest.py); `make test PYTEST_ARGS=-n0` runs in
# one process
PYTEST_WORKERS ?= $(shell echo $$(( $$(nproc) + 1 )))
PYTEST_ARGS ?= -n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder
test: venv lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# the demo's tables at REF and at HEAD, cell for cell (timings left out): make demo-diff REF=<commit>
demo-diff: venv
	@test -n "$(REF)" || { echo "usage: make demo-diff REF=<commit>"; exit 2; }
	$(BIN)/python tests/demo_diff.py --ref $(REF)

# jobs per rule, GPU-hours and disk of a study before you submit it (every job the Study
# plans, priced; no data needed: what is not on disk yet is assumed, and the plan says what):
#   make plan CONFIG=config/lebel2023.yaml
#   make plan CONFIG=config/algonauts2023.yaml
#   make plan MEASURED=results/benchmarks       # the demo, against the times a run measured
CONFIG ?= config/config.yaml
plan: venv
	$(BIN)/python -m fmriscaling.plan --configfile config/config.yaml $(CONFIG) \
	    $(if $(MEASURED),--benchmarks $(MEASURED))

# one-time step for `snakemake --profile slurm`: Snakemake looks for a profile by name in the
# working directory and in its user config directory; link config/profiles/slurm there
SNAKEMAKE_PROFILES ?= $(or $(XDG_CONFIG_HOME),$(HOME)/.config)/snakemake
slurm-profile:
	@mkdir -p "$(SNAKEMAKE_PROFILES)"
	@if [ -e "$(SNAKEMAKE_PROFILES)/slurm" ] && [ ! -L "$(SNAKEMAKE_PROFILES)/slurm" ]; then \
	  echo "$(SNAKEMAKE_PROFILES)/slurm exists and is not a link: move it away, or use" \
	       "--profile $(CURDIR)/config/profiles/slurm"; exit 1; fi
	ln -sfn "$(CURDIR)/config/profiles/slurm" "$(SNAKEMAKE_PROFILES)/slurm"

format: venv
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .
	$(BIN)/snakefmt Snakefile rules/

clean-demo:
	rm -rf results/data/demo results/models/tiny-* results/stimuli/demo results/features/demo \
	       results/encoding/demo results/noise_ceiling/demo results/tables/demo results/figures/demo \
	       results/rois/demo results/report.html results/logs results/benchmarks
