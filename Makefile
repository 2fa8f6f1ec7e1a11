# Fresh-machine entry points. `make sweep` and `make test` create .venv and install everything first.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup sweep test lint clean

setup: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt requirements-aihwkit.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip setuptools
	$(BIN)/pip install -r requirements.txt -r requirements-dev.txt
	# aihwkit asks for torchvision (unusable with CPU torch 2.13) and build tools: install it alone, no deps.
	$(BIN)/pip install --no-deps -r requirements-aihwkit.txt
	$(BIN)/pip install --no-deps --no-build-isolation -e .
	$(BIN)/python -c "import aihwkit, torch, aimc_lsh; print('aihwkit', aihwkit.__version__, 'torch', torch.__version__)"
	touch $(STAMP)

sweep: setup
	$(BIN)/python studies/drift_sweep.py --device pcm $(ARGS)

test: setup
	$(BIN)/python -m pytest $(ARGS)

lint: setup
	$(BIN)/ruff check aimc_lsh tests studies benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
