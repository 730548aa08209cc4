# The two commands of the README: `make demo` and `make test`. Both set up .venv when missing.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU wheel where no NVIDIA GPU is visible (it lies on this disk, fast); the CUDA build otherwise.
# Override with e.g. `make test TORCH_SPEC="torch==2.14.1"`.
TORCH_SPEC ?= $(if $(shell command -v nvidia-smi 2>/dev/null),torch>=2.4,torch==2.13.0)
STAMP := $(VENV)/.jepa_kit-installed
PYTEST_ARGS ?=

.PHONY: setup demo test bench clean-venv

$(STAMP): pyproject.toml Makefile
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[notebook,dev]"
	@touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/jepa-kit demo

test: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS)

bench: $(STAMP)
	$(VENV)/bin/jepa-kit bench

clean-venv:
	rm -rf $(VENV)
