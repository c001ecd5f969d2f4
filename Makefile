# The README's two commands: `make serve` and `make test`. Both set everything up first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.tfsfast-installed
PYX    := $(shell find tfsfast -name '*.pyx' -o -name '*.pxd' 2>/dev/null) $(wildcard csrc/*)
MODELS := models

.PHONY: install build serve test test-python bench lint clean package-test

install: $(STAMP) build

# Dependencies first (TensorFlow included), so the runtime extension can compile against the
# installed wheel's C API headers; then tfsfast itself, editable, without a second isolated build.
$(STAMP): requirements.txt requirements-dev.txt pyproject.toml setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -r requirements.txt -r requirements-dev.txt
	$(PIP) install --quiet --no-build-isolation --no-deps -e .
	touch $@

# Rebuilds the compiled modules in place when a .pyx changed (a no-op otherwise).
build: $(STAMP)
	$(PY) setup.py --quiet build_ext --inplace

serve: install
	$(PY) -m tfsfast.demo

test: install
	$(PY) -m pytest -q

test-python: install
	TFSFAST_NO_EXTENSIONS=1 $(PY) -m pytest -q

bench: install
	$(PY) -m bench all

# `pip install .` of a copy of this checkout into a fresh venv with pip's defaults (build
# isolation), then the installed commands, compiled modules and a served model
# (tests/packaging/test_fresh_install.py). Minutes: TensorFlow goes into the build environment
# and into the venv.
package-test: install
	TFSFAST_PACKAGE_TEST=1 $(PY) -m pytest -q tests/packaging/test_fresh_install.py

lint: install
	$(VENV)/bin/ruff check tfsfast tests bench

clean:
	rm -rf build $(VENV) $(MODELS)
	find tfsfast -name '*.so' -delete -o -name '*.c' -path 'tfsfast/*' -delete
