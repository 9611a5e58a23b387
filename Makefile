# Two commands matter: `make run` (serve Passgate on SQLite with the dev inbox) and `make test`.
# The first interpreter that actually runs and is 3.11 or newer (a pyenv shim may exist and still fail).
PYTHON ?= $(shell for p in python3 python3.13 python3.12 python3.11; do \
	$$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1 && { echo $$p; break; }; done)
VENV   := .venv
BIN    := $(VENV)/bin
# Every dependency, pinned with its hashes (`make lock` writes it from pyproject.toml).
LOCK   := requirements-dev.lock
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml $(LOCK) | cksum | cut -d' ' -f1)
HOST   ?= 127.0.0.1
PORT   ?= 8000

.PHONY: run test lint unit fuzz bench demo lock wheel-check clean

$(STAMP): pyproject.toml $(LOCK)
	@$(PYTHON) -c 'import sys; sys.exit("Passgate needs Python 3.11 or newer (found " + sys.version.split()[0] + ")") if sys.version_info < (3, 11) else None'
	@test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes -r $(LOCK)
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	@rm -f $(VENV)/.installed-*
	@touch $(STAMP)

run: $(STAMP)
	$(BIN)/passgate serve --host $(HOST) --port $(PORT)

test: $(STAMP) lint
	$(BIN)/python scripts/ensure_browser.py
	$(BIN)/python scripts/ensure_axe.py
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests bench scripts
	$(BIN)/mypy
	$(BIN)/lint-imports

unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit -q

# The fuzz test at length: FUZZ_EXAMPLES cases per operation and mode (about 90 requests per unit, so
# 230 is some 20,000 requests per database), stopping more generation after FUZZ_SECONDS per database.
# On PostgreSQL too when PASSGATE_TEST_DATABASE_URL is set.
FUZZ_EXAMPLES ?= 230
FUZZ_SECONDS  ?= 1800
fuzz: $(STAMP)
	PASSGATE_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) PASSGATE_FUZZ_SECONDS=$(FUZZ_SECONDS) \
		$(BIN)/python -m pytest tests/functional/test_fuzz.py -q -s -p no:randomly

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

demo: $(STAMP)
	$(BIN)/passgate demo

# Build the wheel, install it into a fresh virtualenv from requirements.lock, check `passgate serve`.
wheel-check: $(STAMP)
	$(BIN)/python scripts/check_wheel.py

# Write requirements.lock (what `passgate` needs) and requirements-dev.lock (plus the dev extra and the
# build backend, which `make run` and `make test` install from) from pyproject.toml, with uv, for every
# platform and Python 3.11 or newer. Versions already pinned are kept; `make lock UPGRADE=1` takes the
# newest each range allows.
LOCK_TOOLS := .cache/lock-tools
UV_COMPILE  = $(LOCK_TOOLS)/bin/uv pip compile --quiet --universal --python-version 3.11 --generate-hashes \
	--custom-compile-command 'make lock' $(if $(UPGRADE),--upgrade)
lock:
	@test -x $(LOCK_TOOLS)/bin/uv || { $(PYTHON) -m venv $(LOCK_TOOLS) && \
		$(LOCK_TOOLS)/bin/python -m pip install --quiet 'uv>=0.9,<1'; }
	$(UV_COMPILE) pyproject.toml -o requirements.lock
	echo 'setuptools>=77' | $(UV_COMPILE) pyproject.toml - --extra dev -o requirements-dev.lock

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache artifacts
