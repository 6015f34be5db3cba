# shoal: the two commands are `make run` and `make test`.
VENV := .venv
BIN := $(VENV)/bin
# Node i of `make run` takes peer port PORT+i and HTTP API port API_PORT-i.
NODES ?= 3
PORT ?= 8001
API_PORT ?= 9999
# How the nodes of `make run` find each other: static (a member list), etcd or gossip.
MEMBERSHIP ?= static
# SECURE=1: `make run` with TLS, mutual TLS between the nodes, API tokens and (gossip) a keyring.
SECURE ?=

.PHONY: run demo test lint typecheck pytest docs docs-check fuzz bench proto venv dev clean

## make run: install shoal in .venv and run a local 3-node cluster of the SlowDB demo:
## peers on 8001-8003, HTTP API on http://127.0.0.1:9999 (and 9998, 9997); Ctrl-C stops it.
## MEMBERSHIP=etcd: the nodes register in an etcd started for the cluster;
## MEMBERSHIP=gossip: they gossip on UDP 8001-8003 (local timers), joining node 0;
## SECURE=1: every port speaks TLS (mutual TLS between the nodes), the API wants a token,
## gossip is sealed; the banner says where the CA and tokens are
run: venv
	@if [ "$(MEMBERSHIP)" = etcd ]; then scripts/venv.sh etcd; \
	    command -v etcd >/dev/null 2>&1 || scripts/system-deps.sh; fi
	$(BIN)/shoal cluster --nodes $(NODES) --port $(PORT) --api-port $(API_PORT) --slowdb \
	    --membership $(MEMBERSHIP) $(if $(filter gossip,$(MEMBERSHIP)),--gossip-timers local) \
	    $(if $(SECURE),--secure)

## make demo: a scripted, self-checking tour of a 3-node cluster (free ports; exit 0 if all is well)
demo: venv
	$(BIN)/shoal demo

## make test: install what the tests need, then ruff, mypy, pytest and the docs build
test: dev lint typecheck pytest docs-check

## make proto: regenerate the protobuf code in src/shoal/wire/_pb/ (checked in) from the .proto files
## (groupcache.proto, geekcache.proto, shoal.proto) with the pinned grpcio-tools
PROTO_DIR := src/shoal/wire
proto: dev
	rm -f $(PROTO_DIR)/_pb/*_pb2.py $(PROTO_DIR)/_pb/*_pb2.pyi
	$(BIN)/python -m grpc_tools.protoc -I $(PROTO_DIR) --python_out=$(PROTO_DIR)/_pb --pyi_out=$(PROTO_DIR)/_pb $(PROTO_DIR)/*.proto

# A current dev install (a superset of the runtime) will do for `run` and `demo`.
venv:
	@if [ -f $(VENV)/.installed-dev ] && [ $(VENV)/.installed-dev -nt pyproject.toml ]; then :; \
	else scripts/venv.sh; fi

# The dev install also brings the Debian packages the tests and benchmarks use
# (wrk, Go and golang/groupcache's sources, a C compiler); a no-op when they are
# there. They come first: the install compiles shoal's C extension.
dev:
	@scripts/system-deps.sh
	@scripts/venv.sh dev

lint: dev
	$(BIN)/ruff check src tests bench examples hatch_build.py
	$(BIN)/ruff format --check src tests bench examples hatch_build.py
	$(BIN)/lint-imports --no-cache --no-logo
	$(BIN)/pytest -q -p no:cacheprovider tests/test_architecture.py tests/test_http_layers.py tests/test_serving.py

# The tests import each other from the tests folder (pytest's pythonpath), and every
# folder has its own conftest.py: mypy gets the same root and names modules by path.
typecheck: dev
	$(BIN)/mypy src bench
	MYPYPATH=tests $(BIN)/mypy --explicit-package-bases tests
	for app in examples/*/app.py; do $(BIN)/mypy "$$app" || exit 1; done

pytest: dev
	$(BIN)/pytest -q

## make docs: build the documentation site (MkDocs, docs/ and mkdocs.yml) into site/
docs: dev
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

# The docs build of `make test`: strict (a broken link, an unknown anchor, a page
# missing from the nav or a missing API name fails), into a directory removed after.
docs-check: dev
	@out=$$(mktemp -d) && trap 'rm -rf "$$out"' EXIT && \
	    NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir "$$out"

## make fuzz: a long fuzz run: FUZZ_EXAMPLES (default 5000) arbitrary and out-of-range
## messages per property on every route of live nodes (HTTP and gRPC) and through the
## decoders' round-trip properties (`make test` runs a few hundred), then FUZZ_TIME
## seconds (default 60) of coverage-guided fuzzing of every decoder (atheris); a
## finding is written to $TMPDIR/shoal-fuzz-crash-*
FUZZ_EXAMPLES ?= 5000
FUZZ_TIME ?= 60
FUZZ_TESTS := tests/cluster/test_fuzz_live.py tests/test_inbound_properties.py tests/wire/test_inbound.py
fuzz: dev
	SHOAL_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/pytest -q --timeout=0 $(FUZZ_TESTS)
	$(BIN)/python tests/fuzz_decoders.py -max_total_time=$(FUZZ_TIME) \
	    -artifact_prefix=$${TMPDIR:-/tmp}/shoal-fuzz-

## make bench: every benchmark, short runs (see bench/README.md for full runs)
bench: dev
	for b in local_hits sync_node stampede memory server http_protocol ring_balance cluster grpc_transport membership policies writes; do $(BIN)/python bench/$$b.py --quick || exit 1; done

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis site src/shoal/_speedups*.so
