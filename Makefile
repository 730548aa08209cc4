# The two commands of the README: `make demo` and `make test`. Both set up .venv when missing.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# PyTorch. With a visible NVIDIA GPU: PyPI's build (CUDA). Without one: torch==2.13.0, the CPU build,
# from PyTorch's CPU index when it answers (any machine with internet); where it does not (this
# repository's CI machines, which reach only PyPI, Debian and npm), from pip's usual sources, where
# pip finds that CPU wheel locally. TORCH_INDEX=URL names the index yourself (TORCH_INDEX=pypi: none);
# `make test TORCH_SPEC="torch==2.14.1"` changes the version. Exact versions of the committed
# results: constraints.txt.
TORCH_SPEC ?= $(if $(shell command -v nvidia-smi 2>/dev/null),torch>=2.4,torch==2.13.0)
CPU_INDEX := https://download.pytorch.org/whl/cpu
DETECT_INDEX = $(if $(shell command -v nvidia-smi 2>/dev/null),pypi,$(shell $(PYTHON) -c \
	"import urllib.request as u; u.urlopen('$(CPU_INDEX)/torch/', timeout=5); print('$(CPU_INDEX)')" 2>/dev/null \
	|| echo pypi))
ifeq ($(origin TORCH_INDEX),undefined)
# asked once, when the install needs it (not on every make)
TORCH_INDEX = $(eval TORCH_INDEX := $(DETECT_INDEX))$(TORCH_INDEX)
endif
STAMP := $(VENV)/.jepa_kit-installed
PYTEST_ARGS ?=
# tests/test_browser.py draws notebook 03 in headless Chromium. BROWSER=auto installs Debian's
# chromium where apt-get runs as root (this repository's CI machines) and the tests skip, saying
# so, where there is none; BROWSER=none never installs. JEPA_KIT_CHROMIUM names another Chromium.
BROWSER ?= auto
HAVE_CHROMIUM = command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 \
	|| command -v google-chrome >/dev/null 2>&1 || test -n "$$JEPA_KIT_CHROMIUM"
APT_CHROMIUM = DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1

.PHONY: setup demo test bench browser clean-venv

$(STAMP): pyproject.toml Makefile
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "PyTorch: $(TORCH_SPEC) from $(if $(filter pypi,$(TORCH_INDEX)),pip's usual sources,$(TORCH_INDEX))"
	$(PY) -m pip install -q "$(TORCH_SPEC)" $(if $(filter-out pypi,$(TORCH_INDEX)),--index-url "$(TORCH_INDEX)")
	$(PY) -m pip install -q -e ".[notebook,dev]"
	@touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/jepa-kit demo

test: $(STAMP) browser
	$(PY) -m pytest -q $(PYTEST_ARGS)

browser:
ifeq ($(BROWSER),auto)
	@if $(HAVE_CHROMIUM); then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing Debian's chromium for tests/test_browser.py (BROWSER=none: don't)"; \
	  { $(APT_CHROMIUM) || { apt-get update -q >/dev/null 2>&1 && $(APT_CHROMIUM); }; } \
	    || echo "note: chromium could not be installed: tests/test_browser.py will skip"; \
	else echo "note: no Chromium here: tests/test_browser.py will skip (install chromium, or set JEPA_KIT_CHROMIUM)"; fi
endif

bench: $(STAMP)
	$(VENV)/bin/jepa-kit bench

clean-venv:
	rm -rf $(VENV)
