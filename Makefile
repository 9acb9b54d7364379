# cloche: `make demo` and `make test` each set up .venv (idempotent; fast when done) and run.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
UV_BOOT := .cache/uv-bootstrap
UV := $(shell command -v uv 2>/dev/null || echo $(UV_BOOT)/bin/uv)
# onnx: so that `cloche export` of the demo model works in the demo's install
BASE_EXTRAS := sklearn,onnx
TEST_EXTRAS := sklearn,xgboost,lightgbm,onnx,postgres,grpc,ray,dev
TORCH := torch==2.13.0

.PHONY: demo test lint format services install-base install-test clean bench

demo: $(VENV)/.base-installed
	$(PY) examples/demo.py

test: $(VENV)/.test-installed services
	$(PY) -m ruff check cloche tests examples bench
	$(PY) -m ruff format --check cloche tests examples bench
	$(PY) -m mypy
	$(PY) -m compileall -q -j 0 cloche > /dev/null
	$(PY) -m pytest -q -p no:cacheprovider --durations=20

lint: $(VENV)/.test-installed
	$(PY) -m ruff check cloche tests examples bench
	$(PY) -m ruff format --check cloche tests examples bench
	$(PY) -m mypy

format: $(VENV)/.test-installed
	$(PY) -m ruff format cloche tests examples bench
	$(PY) -m ruff check --fix cloche tests examples bench

services:
	bash scripts/services.sh

$(UV_BOOT)/bin/uv:
	PIP_ROOT_USER_ACTION=ignore python3 -m pip install -q --disable-pip-version-check --no-deps --no-compile --only-binary=:all: --target $(UV_BOOT) uv 2>&1 | grep -v "^WARNING: Location" || true
	@test -x $(UV_BOOT)/bin/uv || (echo "could not install uv into $(UV_BOOT)" && exit 1)

$(PY): | $(UV)
	$(UV) venv -q -p python3 $(VENV)

$(VENV)/.base-installed: pyproject.toml | $(PY)
	$(UV) pip install -q -p $(PY) -e '.[$(BASE_EXTRAS)]'
	@touch $@

# uv does not look at the CPU build of torch on this machine's disk; pip does.
# compileall: where PYTHONDONTWRITEBYTECODE is set (as here), no import writes a .pyc, so every
# process the suite starts (servers, workers, CLIs) compiled scikit-learn, pandas... anew;
# compiled once here, pytest went from about 11 to 7.2 minutes on a fresh clone.
$(VENV)/.test-installed: pyproject.toml | $(PY)
	$(UV) pip install -q -p $(PY) -e '.[$(TEST_EXTRAS)]'
	$(PY) -c "import torch" 2>/dev/null || python3 -m pip --python $(PY) install -q --disable-pip-version-check $(TORCH)
	$(PY) -m compileall -q -j 0 "$$($(PY) -c 'import sysconfig; print(sysconfig.get_path("purelib"))')" > /dev/null 2>&1 || true
	@touch $@ $(VENV)/.base-installed

bench: $(VENV)/.test-installed
	$(PY) bench/serving.py
	$(PY) bench/time_to_value.py

clean:
	rm -rf $(VENV) .cache .cloche .cloche-demo
