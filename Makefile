# The two commands of the README: `make demo` and `make test`. Both set up .venv when missing.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Without a visible NVIDIA GPU: torch==2.13.0, which is the CPU build only where pip finds that CPU
# wheel locally (this repository's CI machines: pip's find-links). Elsewhere PyPI's Linux torch==2.13.0
# is the CUDA build (GBs); there, name PyTorch's CPU index, which then serves torch alone:
#   make test TORCH_INDEX=https://download.pytorch.org/whl/cpu
# Not the default: the CI machines cannot reach that index. Override the spec with e.g.
# `make test TORCH_SPEC="torch==2.14.1"`. Exact versions of the committed results: constraints.txt.
TORCH_SPEC ?= $(if $(shell command -v nvidia-smi 2>/dev/null),torch>=2.4,torch==2.13.0)
TORCH_INDEX ?=
STAMP := $(VENV)/.jepa_kit-installed
PYTEST_ARGS ?=

.PHONY: setup demo test bench clean-venv

$(STAMP): pyproject.toml Makefile
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q "$(TORCH_SPEC)" $(if $(TORCH_INDEX),--index-url "$(TORCH_INDEX)")
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
