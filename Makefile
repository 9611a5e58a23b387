# Two commands matter: `make run` (serve Passgate on SQLite with the dev inbox) and `make test`.
# The first interpreter that actually runs and is 3.11 or newer (a pyenv shim may exist and still fail).
PYTHON ?= $(shell for p in python3 python3.13 python3.12 python3.11; do \
	$$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1 && { echo $$p; break; }; done)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: run test lint unit fuzz bench demo clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit("Passgate needs Python 3.11 or newer (found " + sys.version.split()[0] + ")") if sys.version_info < (3, 11) else None'
	@test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@rm -f $(VENV)/.installed-*
	@touch $(STAMP)

run: $(STAMP)
	$(BIN)/passgate serve

test: $(STAMP) lint
	$(BIN)/python scripts/ensure_browser.py
	$(BIN)/python scripts/ensure_axe.py
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy

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

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache artifacts
