# Two commands do everything on a fresh machine:
#   make repro   create the environment, install, run `dvc repro` on the generated sample sources
#   make test    create the environment if needed, run the whole test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: repro test env chromium validate bench clean

env: $(STAMP)

# uv installs the same packages as pip in about half the time (parallel downloads and unpacking,
# byte-compiled in parallel: PYTHONDONTWRITEBYTECODE machines would otherwise pay for uncompiled
# modules in every process). uv does not read pip's configuration, so it is given the same package
# sources pip is configured with (local wheel folders and index mirrors): torch==2.13.0, pinned in
# pyproject.toml, then comes from the local CPU wheel where one is provided. Where uv cannot be
# installed or fails, pip installs instead.
UV_VERSION  := 0.13.9
PIP_SOURCES  = $(foreach l,$(sort $(PIP_FIND_LINKS) $(shell $(PYTHON) -m pip config get global.find-links 2>/dev/null)),--find-links $(l)) \
               $(foreach u,$(sort $(PIP_EXTRA_INDEX_URL) $(shell $(PYTHON) -m pip config get global.extra-index-url 2>/dev/null)),--extra-index-url $(u))

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	( $(BIN)/python -m pip install --quiet uv==$(UV_VERSION) && \
	  $(BIN)/uv pip install --quiet --python $(BIN)/python --compile-bytecode \
	    --index-strategy unsafe-best-match $(PIP_SOURCES) -e ".[test]" ) || \
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

repro: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/a1pipe validate data/converted

# Two test processes (one per core here; -n auto elsewhere); files stay whole so module fixtures run once.
test: $(STAMP) chromium
	$(BIN)/python -m pytest -q -n auto --dist loadfile

# The report test opens the HTML reports in headless Chromium: Debian's package, installed when absent
# (as root, or through sudo), so a fresh machine runs that test instead of skipping it.
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
chromium:
	command -v chromium >/dev/null || { $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null; }

bench: $(STAMP)
	$(BIN)/python benchmarks/convert_throughput.py

clean:
	rm -rf $(VENV) data .pytest_cache *.egg-info
