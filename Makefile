# shoal: the two commands are `make run` and `make test`.
VENV := .venv
BIN := $(VENV)/bin
# Node i of `make run` takes peer port PORT+i and HTTP API port API_PORT-i.
NODES ?= 3
PORT ?= 8001
API_PORT ?= 9999

.PHONY: run demo test lint typecheck pytest bench proto venv dev clean

## make run: install shoal in .venv and run a local 3-node cluster of the SlowDB demo:
## peers on 8001-8003, HTTP API on http://127.0.0.1:9999 (and 9998, 9997); Ctrl-C stops it
run: venv
	$(BIN)/shoal cluster --nodes $(NODES) --port $(PORT) --api-port $(API_PORT) --slowdb

## make demo: a scripted, self-checking tour of a 3-node cluster (free ports; exit 0 if all is well)
demo: venv
	$(BIN)/shoal demo

## make test: install what the tests need, then ruff, mypy and pytest
test: dev lint typecheck pytest

## make proto: regenerate the protobuf code in src/shoal/wire/_pb/ (checked in) from the .proto files
PROTO_DIR := src/shoal/wire
proto: dev
	rm -f $(PROTO_DIR)/_pb/*_pb2.py $(PROTO_DIR)/_pb/*_pb2.pyi
	$(BIN)/python -m grpc_tools.protoc -I $(PROTO_DIR) --python_out=$(PROTO_DIR)/_pb --pyi_out=$(PROTO_DIR)/_pb $(PROTO_DIR)/*.proto

# A current dev install (a superset of the runtime) will do for `run` and `demo`.
venv:
	@if [ -f $(VENV)/.installed-dev ] && [ $(VENV)/.installed-dev -nt pyproject.toml ]; then :; \
	else scripts/venv.sh; fi

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
