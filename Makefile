# The two commands: `make run` (whole pipeline on the bundled sample) and `make test` (`make lint`: the linters).
# Both bootstrap .venv from requirements.lock + requirements-dev.lock first.
SHELL := /bin/bash
export TF_USE_LEGACY_KERAS := 1
export PYTHONWARNINGS := ignore::FutureWarning
VENV := .venv/bin
CONFIG ?= configs/local.yaml

.PHONY: bootstrap run test test-all test-fast lint lock pin-images chromium clean docs

bootstrap:
	@infra/bootstrap.sh

# The demo: a refusal by the release gate is a result here, not a failure (synthdetect run alone
# exits 3 for it; see README "Use in CI/CD").
run: bootstrap
	$(VENV)/synthdetect run --config $(CONFIG) --allow-unblessed

# Tests run in parallel worker processes (pytest-xdist), one per logical CPU, at most 4; a module's tests
# stay on one worker (tests/conftest.py groups them). TEST_WORKERS=0 runs them in this process.
# --no-loadscope-reorder: groups are handed out in collection order, which tests/conftest.py makes
# longest first (xdist's own order, by number of tests, started the longest group last).
TEST_WORKERS ?= logical
XDIST := -n $(TEST_WORKERS) --maxprocesses 4 --dist loadgroup --no-loadscope-reorder

# Default suite: unit tests plus real end-to-end pipeline runs at tiny image size (CI runs this).
test: bootstrap chromium
	$(VENV)/python -m pytest -m "not slow" $(XDIST) $(PYTEST_ARGS)

# Everything, including slow tests over ../shared/data/eval-v1.
test-all: bootstrap chromium
	$(VENV)/python -m pytest $(XDIST) $(PYTEST_ARGS)

# ruff and mypy, configured in pyproject.toml (CI runs this before the tests).
lint: bootstrap
	$(VENV)/ruff check . && $(VENV)/mypy

# Unit tests only (no pipeline run).
test-fast: bootstrap
	$(VENV)/python -m pytest -m "not slow and not e2e" $(XDIST) $(PYTEST_ARGS)

# Re-resolve the lock files (needs the package registry): requirements.lock (runtime: the images install it),
# requirements-dev.lock (runtime pins + tests and curation; .venv), infra/requirements-gpu.lock (runtime + CUDA).
# The two the images install carry every file's sha256 (the images install them with --require-hashes).
# Pins already in a lock are kept (uv prefers them); `make lock UV_UPGRADE=--upgrade` moves them.
UV_COMPILE := uv pip compile --python-version 3.10 --python-platform x86_64-manylinux_2_28 $(UV_UPGRADE)
lock:
	$(UV_COMPILE) requirements.in --excludes infra/runtime-excludes.txt --generate-hashes -o requirements.lock
	$(UV_COMPILE) requirements-dev.in -c requirements.lock -o requirements-dev.lock
	$(UV_COMPILE) infra/requirements-gpu.in -c requirements.lock --excludes infra/runtime-excludes.txt --generate-hashes -o infra/requirements-gpu.lock

# Pin the Dockerfiles' base images by digest (needs Docker Hub and ghcr.io; see infra/pin_images.py).
pin-images:
	python3 infra/pin_images.py

# Headless Chromium for the FiftyOne App browser test (best effort: the test says what is missing).
chromium:
	@infra/ensure_chromium.sh >/dev/null || echo "warning: no chromium; the FiftyOne App browser test will fail" >&2

clean:
	rm -rf runs registry test-artifacts .pytest_cache

# The docs site (mkdocs.yml, docs/) into site/ (git-ignored); --strict fails on a broken link.
docs:
	.venv/bin/mkdocs build --strict
