# Set-up is part of every target: a fresh clone needs only `make demo` or `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: demo test lint typecheck install clean

$(STAMP): pyproject.toml requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# CPU torch first, pinned (see requirements-dev.txt), so nothing pulls a CUDA build.
	$(BIN)/python -m pip install -q -r requirements-dev.txt
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	rm -rf runs/demo
	$(BIN)/evalkit score examples/checkpoints/tiny-base --suite transfer --out runs/demo --no-progress
	@echo "demo run: runs/demo"
	$(BIN)/evalkit report runs/demo --out reports/demo

lint: $(STAMP)
	$(BIN)/ruff check evalkit tests benchmarks examples
	$(BIN)/ruff format --check evalkit tests benchmarks examples

typecheck: $(STAMP)
	$(BIN)/mypy evalkit

test: lint typecheck
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
