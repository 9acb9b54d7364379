# cloche: `make demo` and `make test` each set up .venv (idempotent; fast when done) and run.
SHELL := /bin/bash
comma := ,
VENV := .venv
PY := $(VENV)/bin/python
UV_BOOT := .cache/uv-bootstrap
UV := $(shell command -v uv 2>/dev/null || echo $(UV_BOOT)/bin/uv)
# onnx: so that `cloche export` of the demo model works in the demo's install
BASE_EXTRAS := sklearn,onnx
# The `cloche up` image (deploy/Dockerfile): the demo's set plus a PostgreSQL driver for replicas.
IMAGE_EXTRAS := sklearn,onnx,postgres,s3,otlp
TEST_EXTRAS := sklearn,xgboost,lightgbm,onnx,postgres,grpc,ray,s3,otlp,dev,docs,notebook
TORCH := torch==2.13.0
# The locks: every package each install set takes, pinned with hashes (`make lock` refreshes them).
DEMO_LOCK := requirements/demo.txt
IMAGE_LOCK := requirements/image.txt
TEST_LOCK := requirements/test.txt
BUILD_LOCK := requirements/build.txt
# torch comes from this machine's disk through pip; its own dependencies are pinned here.
TORCH_LOCK := requirements/torch.txt
TORCH_DEPS := sympy networkx jinja2 mpmath setuptools
UV_VERSION := 0.13.9
UV_PIN := uv==$(UV_VERSION)
UV_SHARED := $(abspath $(or $(XDG_CACHE_HOME),$(if $(HOME),$(HOME)/.cache,.cache))/cloche/uv-$(UV_VERSION))
LATEST := .venv-latest
LOCK_FLAGS := --universal --python-version 3.11 --generate-hashes -q

.PHONY: demo test test-latest checks lock lint format services clean bench docs docs-serve

demo: $(VENV)/.base-installed
	$(PY) examples/demo.py

test: $(VENV)/.test-installed services
	@$(MAKE) --no-print-directory checks

# The newest versions the ranges in pyproject.toml allow, in a venv of their own: run it before
# `make lock`, and now and then, to see drift before a user who installs without the lock does.
test-latest: services | $(UV)
	rm -rf $(LATEST)
	$(UV) venv -q -p python3 $(LATEST)
	$(UV) pip install -q -p $(LATEST)/bin/python --upgrade -e '.[$(TEST_EXTRAS)]'
	python3 -m pip --python $(LATEST)/bin/python install -q --disable-pip-version-check $(TORCH)
	$(LATEST)/bin/python -m compileall -q -j 0 "$$($(LATEST)/bin/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')" > /dev/null 2>&1 || true
	@$(MAKE) --no-print-directory checks PY=$(LATEST)/bin/python

checks:
	$(PY) -m ruff check cloche tests examples bench
	$(PY) -m ruff format --check cloche tests examples bench
	$(PY) -m mypy
	$(PY) -m compileall -q -j 0 cloche > /dev/null
	$(PY) -m pytest -q -p no:cacheprovider --durations=20 -n 3 --dist loadgroup --no-loadscope-reorder

# Refresh the locks to the newest versions the ranges allow (then run `make test`); the demo's
# and image's sets are constrained by the test set's, so all agree on every version.
lock: | $(UV)
	$(UV) pip compile $(LOCK_FLAGS) --upgrade pyproject.toml $(foreach e,$(subst $(comma), ,$(TEST_EXTRAS)),--extra $(e)) -o $(TEST_LOCK)
	$(UV) pip compile $(LOCK_FLAGS) --upgrade pyproject.toml $(foreach e,$(subst $(comma), ,$(BASE_EXTRAS)),--extra $(e)) -c $(TEST_LOCK) -o $(DEMO_LOCK)
	$(UV) pip compile $(LOCK_FLAGS) --upgrade pyproject.toml $(foreach e,$(subst $(comma), ,$(IMAGE_EXTRAS)),--extra $(e)) -c $(TEST_LOCK) -o $(IMAGE_LOCK)
	echo 'hatchling>=1.25' | $(UV) pip compile $(LOCK_FLAGS) --upgrade - -o $(BUILD_LOCK)
	printf '%s\n' $(TORCH_DEPS) | $(UV) pip compile --universal --python-version 3.11 -q --upgrade --no-annotate - -c $(TEST_LOCK) -o $(TORCH_LOCK)

lint: $(VENV)/.test-installed
	$(PY) -m ruff check cloche tests examples bench
	$(PY) -m ruff format --check cloche tests examples bench
	$(PY) -m mypy

format: $(VENV)/.test-installed
	$(PY) -m ruff format cloche tests examples bench
	$(PY) -m ruff check --fix cloche tests examples bench

services:
	bash scripts/services.sh

# uv is bootstrapped once per user, beside uv's own cache, and linked into each clone: pip took
# 2-7 s to fetch and parse uv's 2 MB index page, on every fresh clone's critical path.
# Installed into a folder of its own first, so two clones bootstrapping at once do not mix.
$(UV_BOOT)/bin/uv:
	@$(UV_SHARED)/bin/uv --version 2>/dev/null | grep -q "^uv $(UV_VERSION)\b" || { \
	  echo "bootstrapping $(UV_PIN) into $(UV_SHARED)" && mkdir -p $(dir $(UV_SHARED)) && \
	  tmp=$$(mktemp -d "$(UV_SHARED).XXXXXX") && \
	  { PIP_ROOT_USER_ACTION=ignore python3 -m pip install -q --disable-pip-version-check --no-deps --no-compile --only-binary=:all: --target "$$tmp" $(UV_PIN) 2>&1 | grep -v "^WARNING: Location" || true; } && \
	  { mv -T "$$tmp" $(UV_SHARED) 2>/dev/null || rm -rf "$$tmp"; }; }
	@test -x $(UV_SHARED)/bin/uv || (echo "could not install uv into $(UV_SHARED)" && exit 1)
	mkdir -p $(UV_BOOT)/bin && ln -sfn $(UV_SHARED)/bin/uv $@

$(PY): | $(UV)
	$(UV) venv -q -p python3 $(VENV)

# Exactly the lock, hashes checked; then cloche itself, built with the locked hatchling.
$(VENV)/.base-installed: pyproject.toml $(DEMO_LOCK) | $(PY)
	$(UV) pip install -q -p $(PY) --require-hashes -r $(DEMO_LOCK)
	$(UV) pip install -q -p $(PY) --no-deps --build-constraint $(BUILD_LOCK) -e .
	@touch $@

# uv does not look at the CPU build of torch on this machine's disk; pip does.
# compileall: where PYTHONDONTWRITEBYTECODE is set (as here), no import writes a .pyc, so every
# process the suite starts (servers, workers, CLIs) compiled scikit-learn, pandas... anew;
# compiled once here, pytest went from about 11 to 7.2 minutes on a fresh clone.
$(VENV)/.test-installed: pyproject.toml $(TEST_LOCK) | $(PY)
	$(UV) pip install -q -p $(PY) --require-hashes -r $(TEST_LOCK)
	$(UV) pip install -q -p $(PY) --no-deps --build-constraint $(BUILD_LOCK) -e .
	$(PY) -c "import torch" 2>/dev/null || python3 -m pip --python $(PY) install -q --disable-pip-version-check -c $(TORCH_LOCK) $(TORCH)
	$(PY) -m compileall -q -j 0 "$$($(PY) -c 'import sysconfig; print(sysconfig.get_path("purelib"))')" > /dev/null 2>&1 || true
	@touch $@ $(VENV)/.base-installed

# The docs site (mkdocs.yml): built into site/ with --strict, so a broken link or reference fails.
# NO_MKDOCS_2_WARNING: Material prints an end-of-life banner for MkDocs 1.x on every build.
docs: $(VENV)/.test-installed
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --site-dir site

docs-serve: $(VENV)/.test-installed
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs serve --dev-addr 127.0.0.1:8000

bench: $(VENV)/.test-installed
	$(PY) bench/serving.py
	$(PY) bench/time_to_value.py

clean:
	rm -rf $(VENV) $(LATEST) .cache .cloche .cloche-demo site
