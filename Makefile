# Two commands do everything on a fresh machine:
#   make repro   create the environment, install, run `dvc repro` on the generated sample sources
#   make test    create the environment if needed, run the whole test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: repro test env validate bench clean

env: $(STAMP)

# torch==2.13.0 is pinned in pyproject.toml; pip takes the local CPU wheel where one is provided.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

repro: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/a1pipe validate data/converted

# Two test processes (one per core here; -n auto elsewhere); files stay whole so module fixtures run once.
test: $(STAMP)
	$(BIN)/python -m pytest -q -n auto --dist loadfile

bench: $(STAMP)
	$(BIN)/python benchmarks/convert_throughput.py

clean:
	rm -rf $(VENV) data .pytest_cache *.egg-info
