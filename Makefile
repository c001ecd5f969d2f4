# The README's two commands: `make serve` and `make test`. Both set everything up first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.tfsfast-installed
PYX    := $(shell find tfsfast -name '*.pyx' -o -name '*.pxd' 2>/dev/null) $(wildcard csrc/*)
MODELS := models

.PHONY: install build serve test test-packages test-python bench lint clean image image-cpu image-gpu \
	image-test image-test-gpu package-test

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

test: install test-packages
	$(PY) -m pytest -q

# Debian packages the tests start as real components: Prometheus, which scrapes a test server
# (tests/integration/test_prometheus_metrics.py), and libb64, which Triton's perf_analyzer links
# (tests/integration/test_perf_analyzer.py; the binary itself comes from a tritonclient wheel,
# see tfsfast/testing/perf_analyzer.py). Installed when missing and this user can (root,
# apt-get); otherwise the test that needs one fails, saying what to install.
test-packages:
	@set -- $$(command -v prometheus >/dev/null || echo prometheus) \
		$$(dpkg -s libb64-0d >/dev/null 2>&1 || echo libb64-0d); \
	[ $$# = 0 ] || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
		&& apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
		"$$@" >/dev/null; } || echo "make: $$* not installed; install (Debian: apt-get \
		install $$*) for tests/integration/test_prometheus_metrics.py (prometheus) and \
		tests/integration/test_perf_analyzer.py (libb64-0d)"

test-python: install test-packages
	TFSFAST_NO_EXTENSIONS=1 $(PY) -m pytest -q

bench: install
	$(PY) -m bench all

# Container images: docker or podman, whichever the machine has. IMAGE_BUILD_FLAGS passes extra
# build flags (a proxy's CA bundle, --network=host); see .ci/image-build-flags.
ENGINE    ?= $(shell command -v podman || command -v docker)
IMAGE     ?= tfsfast:latest
IMAGE_GPU ?= tfsfast:latest-gpu

image: image-cpu image-gpu

image-cpu:
	$(ENGINE) build $(IMAGE_BUILD_FLAGS) -f Dockerfile -t $(IMAGE) .

image-gpu:
	$(ENGINE) build $(IMAGE_BUILD_FLAGS) -f Dockerfile.gpu -t $(IMAGE_GPU) .

# Runs the images as TF Serving's image is run (tests/image), against the engine that built them.
image-test: install image-cpu
	TFSFAST_CONTAINER_ENGINE=$(ENGINE) TFSFAST_IMAGE=$(IMAGE) $(PY) -m pytest -q tests/image

image-test-gpu: install image-gpu
	TFSFAST_CONTAINER_ENGINE=$(ENGINE) TFSFAST_IMAGE=$(IMAGE_GPU) TFSFAST_IMAGE_GPU=1 \
		$(PY) -m pytest -q tests/image

# `pip install .` of a copy of this checkout into a fresh venv with pip's defaults (build
# isolation), then the installed commands, compiled modules and a served model
# (tests/packaging/test_fresh_install.py). Minutes: TensorFlow goes into the build environment
# and into the venv.
package-test: install
	TFSFAST_PACKAGE_TEST=1 $(PY) -m pytest -q tests/packaging/test_fresh_install.py

lint: install
	$(VENV)/bin/ruff check tfsfast tests bench
	$(VENV)/bin/mypy

clean:
	rm -rf build $(VENV) $(MODELS)
	find tfsfast -name '*.so' -delete -o -name '*.c' -path 'tfsfast/*' -delete
