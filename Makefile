# Read me first. `make setup` once, then `make quickstart` or `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.8
# Bytecode cache for every Python process a target starts (tests, kfp.local tasks, servers):
# where the shell sets PYTHONDONTWRITEBYTECODE and the venv holds no .pyc, each process
# compiled TensorFlow and KFP from source again (11 of `import tensorflow`'s 15 CPU s).
export PYTHONPYCACHEPREFIX ?= $(CURDIR)/build/pycache
export PYTHONDONTWRITEBYTECODE :=

.PHONY: help setup quickstart ci test test-fast lint compile wheel docs bench lock clean clean-all containers-setup images test-containers

help:  ## This list
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'


setup:  ## Create .venv from the lock, install the project, the test servers, headless Chromium and wrk
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet uv==$(UV_VERSION)
	$(BIN)/uv pip install --python $(BIN)/python -r requirements.lock
	$(BIN)/uv pip install --python $(BIN)/python --no-deps -e .
	PATH="$(abspath $(BIN)):$$PATH" scripts/setup_label_studio.sh
	scripts/setup_debian_tools.sh

# Images: built here from a Debian base made with debootstrap (no registry needed), PyPI
# through the host's CA bundle. Elsewhere: `make images IMAGE_BASE=public` (digest-pinned
# python:3.11 slim) or scripts/build_images.sh --push to publish.
IMAGE_BASE ?= local
CA_BUNDLE ?= $(wildcard /etc/ssl/certs/ca-certificates.crt)
IMAGE_FLAGS ?= --load --base $(IMAGE_BASE) $(if $(CA_BUNDLE),--ca-bundle $(CA_BUNDLE))

containers-setup:  ## Podman (+ engine settings for VMs) and the Debian-built Python base image
	scripts/setup_podman.sh
	$(if $(filter local,$(IMAGE_BASE)),scripts/base_image.sh)

images:  ## Build the runtime, train-gpu and serving images at this checkout's tag (layer cache reused)
	PYTHON=$(abspath $(BIN)/python) scripts/build_images.sh $(IMAGE_FLAGS)

test-containers:  ## The container tier: both pipelines and the serving image in the built images
	$(BIN)/python -m pytest -q -m containers

quickstart:  ## The whole loop on the bundled data under kfp.local
	$(BIN)/python -m planets_mlops.app.quickstart

# The tests run on two processes (pytest-xdist): a file's tests stay on one worker
# (--dist loadfile), so a module fixture is built once. A venv made before pytest-xdist was
# pinned runs them on one process, and says so (make setup installs it).
TEST_WORKERS ?= 2
XDIST = $(shell $(BIN)/python -c "import xdist" 2>/dev/null && echo "-n $(TEST_WORKERS) --dist loadfile")

ci:  ## What CI runs (.ci/run): set-up, then every tier, the images built meanwhile
	$(MAKE) setup containers-setup
	TEST_WORKERS=$(TEST_WORKERS) scripts/ci_tests.sh

test:  ## The whole test suite, every tier, on two processes (needs `make images` first)
	$(if $(XDIST),,@echo "pytest-xdist is not installed in $(VENV) (make setup): running on one process")
	$(BIN)/python -m pytest -q $(XDIST)

test-fast:  ## Inner loop: the pure and component tiers, on two processes (under a minute)
	$(if $(XDIST),,@echo "pytest-xdist is not installed in $(VENV) (make setup): running on one process")
	$(BIN)/python -m pytest -q -m "pure or component" $(XDIST)

lint:  ## ruff (format check, lint, Google docstrings) and mypy over logic, components and pipelines
	$(BIN)/ruff format --check planets_mlops components pipelines tests scripts benchmarks
	$(BIN)/ruff check planets_mlops components pipelines tests scripts benchmarks
	$(BIN)/python scripts/typecheck.py

compile:  ## Every pipeline and component to build/ (the same entry point as planets-mlops compile)
	$(BIN)/planets-mlops compile

wheel:  ## Build dist/planets_mlops-<version>-py3-none-any.whl (README, Install)
	$(BIN)/uv build --wheel --out-dir dist

docs:  ## Regenerate docs/parameters.md from the compiled IR (a test fails when it is stale)
	$(BIN)/python -m planets_mlops.app.parameter_docs

bench:  ## Benchmarks (print figures; not tests)
	$(BIN)/python -m benchmarks.bench_pipeline

lock:  ## Re-resolve requirements.lock (and the GPU image's derived lock) after editing pyproject.toml
	UV=$(abspath $(BIN)/uv) scripts/lock.sh

# The quickstart keeps its MLflow registry, Label Studio database and data repository in
# .work/quickstart so that a second run continues the loop; only clean-all removes them.
clean:  ## Remove build outputs and scratch folders; keeps .work/quickstart (see clean-all)
	rm -rf build .pytest_cache
	if [ -d .work ]; then find .work -mindepth 1 -maxdepth 1 ! -name quickstart -exec rm -rf {} +; fi
	@if [ -d .work/quickstart ]; then echo "kept .work/quickstart (the quickstart's MLflow registry, Label Studio database and data repository): make clean-all removes it"; fi

clean-all:  ## make clean, and the quickstart's registry, Label Studio database and data repository
	rm -rf build .work .pytest_cache
