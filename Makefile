# shoal: the two commands are `make run` and `make test`.
VENV := .venv
BIN := $(VENV)/bin
PORTS ?= --api-port 9999

.PHONY: run test lint typecheck pytest bench venv dev clean

## make run: install shoal in .venv and serve the SlowDB demo on http://127.0.0.1:9999
run: venv
	$(BIN)/shoal serve $(PORTS) --slowdb

## make test: install what the tests need, then ruff, mypy and pytest
test: dev lint typecheck pytest

venv:
	@scripts/venv.sh

dev:
	@scripts/venv.sh dev

lint: dev
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: dev
	$(BIN)/mypy src tests/typing bench

pytest: dev
	$(BIN)/pytest -q

## make bench: every benchmark, short runs (see bench/README.md for full runs)
bench: dev
	@scripts/system-deps.sh
	for b in local_hits stampede memory server; do $(BIN)/python bench/$$b.py --quick || exit 1; done

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
