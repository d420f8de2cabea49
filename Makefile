# Two commands do everything on a fresh machine:
#   make repro   create the environment, install, run `dvc repro` on the generated sample sources
#   make test    create the environment if needed, run the whole test suite
PYTHON ?= python3
# Each module's bytecode is written the first time any process imports it (into the venv, and into
# __pycache__ folders that git and DVC ignore): a machine that sets PYTHONDONTWRITEBYTECODE (this one
# does) would otherwise compile every imported module from source in every process. Compiling all of
# site-packages at install time instead (uv's --compile-bytecode) took 66 s of `make env`'s 90 s here,
# mostly for modules no process imports; compiling on first import costs the test run ~50 s.
export PYTHONDONTWRITEBYTECODE :=
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: repro test env chromium validate bench mutation clean

env: $(STAMP)

# uv installs the same packages as pip in about half the time (parallel downloads and unpacking).
# uv does not read pip's configuration, so it is given the same package sources pip is configured
# with (local wheel folders and index mirrors): torch==2.13.0, pinned in pyproject.toml, then comes
# from the local CPU wheel where one is provided. Where uv cannot be installed or fails, pip
# installs instead.
UV_VERSION  := 0.13.9
PIP_SOURCES  = $(foreach l,$(sort $(PIP_FIND_LINKS) $(shell $(PYTHON) -m pip config get global.find-links 2>/dev/null)),--find-links $(l)) \
               $(foreach u,$(sort $(PIP_EXTRA_INDEX_URL) $(shell $(PYTHON) -m pip config get global.extra-index-url 2>/dev/null)),--extra-index-url $(u))

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	( $(BIN)/python -m pip install --quiet uv==$(UV_VERSION) && \
	  $(BIN)/uv pip install --quiet --python $(BIN)/python \
	    --index-strategy unsafe-best-match $(PIP_SOURCES) -e ".[test]" ) || \
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

repro: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/a1pipe validate data/converted

# Two test processes (one per core here; -n auto elsewhere; a third process was slower here: 547 s
# against 520 s); files stay whole so module fixtures run once. The browser installs (apt, ~19 s on a
# machine without it) while the environment does.
test:
	$(MAKE) --no-print-directory -j2 env chromium
	$(BIN)/python -m pytest -q -n auto --dist loadfile

# The report test opens the HTML reports in headless Chromium: Debian's package, installed when absent
# (as root, or through sudo), so a fresh machine runs that test instead of skipping it.
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
chromium:
	command -v chromium >/dev/null || { $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null; }

bench: $(STAMP)
	$(BIN)/python benchmarks/convert_throughput.py

# Mutation testing of one core module (mutmut 3; not in CI or `make test`: minutes per module).
# `make mutation MODULE=manifest.weights`; `make mutation` alone lists the modules
# (benchmarks/mutation.py holds the table of sources and test files; benchmarks/README.md the kill rates).
# The `mutation` extra is installed into the environment the first time.
MODULE ?=
mutation: $(STAMP)
	$(BIN)/python -c "import mutmut" 2>/dev/null || $(BIN)/python -m pip install --quiet -e ".[mutation]"
	nice -n 10 $(BIN)/python benchmarks/mutation.py $(MODULE)

clean:
	rm -rf $(VENV) data .pytest_cache *.egg-info mutants
