# dlgate — every target sets up what it needs, idempotently.
SHELL := /bin/bash
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.dlgate-installed

.PHONY: demo test lint typecheck unit bench system clean image

$(STAMP): pyproject.toml constraints.txt
	@command -v $(PY) >/dev/null || { echo "Python 3.11 is needed ($(PY) not found)"; exit 2; }
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# The pinned CPU build of torch first: a bare `torch` requirement would pull a CUDA build.
	$(BIN)/python -m pip install -q -c constraints.txt torch==2.13.0
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[torch,service,dev]'
	touch $(STAMP)

venv: $(STAMP)

system:
	@scripts/system-deps.sh

demo: $(STAMP)
	$(BIN)/python scripts/demo.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check dlgate checks service tests bench scripts examples

typecheck: $(STAMP)
	@scripts/typecheck.sh

unit: $(STAMP)
	$(BIN)/pytest -q

test: $(STAMP) system lint typecheck unit

bench: $(STAMP)
	status=0; for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || status=1; done; exit $$status

image: $(STAMP) system
	scripts/build-images.sh

clean:
	rm -rf build .dlgate demo .pytest_cache .mypy_cache .ruff_cache
