# Every target uses the project's virtualenv (make setup creates it).
VENV   ?= .venv
PY     ?= $(VENV)/bin/python
PROTO_SRC := protos
PROTO_OUT := client
PROTOS := $(shell find $(PROTO_SRC) -name '*.proto')

BUF    := clients/ts/node_modules/.bin/buf
#: The last released wire contract; `buf breaking` compares against it.
CONTRACT := contract/llm_manager-v1.0.0.binpb

.PHONY: image setup proto proto-check stubs go-stubs contract-check deploy-check docs run test test-stress soak lint bench clean

setup:
	python3 -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e ./client -e '.[dev]'
	npm ci --prefix clients/ts --no-audit --no-fund

# Generated code lives in client/llm_manager/ only; never edit it by hand.
proto:
	rm -rf $(PROTO_OUT)/llm_manager
	$(PY) -m grpc_tools.protoc -I$(PROTO_SRC) \
	  --plugin=protoc-gen-mypy=$(VENV)/bin/protoc-gen-mypy \
	  --plugin=protoc-gen-mypy_grpc=$(VENV)/bin/protoc-gen-mypy_grpc \
	  --python_out=$(PROTO_OUT) --grpc_python_out=$(PROTO_OUT) \
	  --mypy_out=$(PROTO_OUT) --mypy_grpc_out=$(PROTO_OUT) $(PROTOS)
	touch $(PROTO_OUT)/llm_manager/__init__.py $(PROTO_OUT)/llm_manager/v1/__init__.py \
	  $(PROTO_OUT)/llm_manager/py.typed

# Fails when client/llm_manager/ does not match protos/ (CI runs it).
proto-check: proto
	git diff --exit-code --stat -- $(PROTO_OUT)/llm_manager && \
	  test -z "$$(git status --porcelain -- $(PROTO_OUT)/llm_manager)" || \
	  (echo "client/llm_manager/ is stale: run 'make proto' and commit" >&2; exit 1)

# Stubs for other languages (buf.gen.yaml): TypeScript in clients/ts/gen.
stubs:
	rm -rf clients/ts/gen
	$(BUF) generate --template buf.gen.yaml

# Go stubs in clients/go/gen (not committed), compiled and vetted (.ci/go-stubs.sh).
go-stubs:
	bash .ci/go-stubs.sh

# buf lint, buf breaking against the released contract (and proof that it would
# catch a break), and generated stubs up to date.
contract-check: stubs
	$(BUF) lint
	$(BUF) breaking --against $(CONTRACT)
	@echo "buf lint: clean; buf breaking against $(CONTRACT): no breaking change"
	bash .ci/buf-catches-breaks.sh
	git diff --exit-code --stat -- clients/ts/gen && \
	  test -z "$$(git status --porcelain -- clients/ts/gen)" || \
	  (echo "clients/ts/gen is stale: run 'make stubs' and commit" >&2; exit 1)

# Kubernetes overlays validated, Dockerfile linted, the image's steps run, and
# the lean client installed alone and used against a running sidecar.
deploy-check:
	bash .ci/k8s-validate.sh
	$(VENV)/bin/hadolint k8s/Dockerfile && echo "hadolint k8s/Dockerfile: clean"
	bash .ci/image-steps.sh
	bash .ci/client-only.sh

# The documentation site (docs/, mkdocs.yml); --strict fails on a broken link or anchor.
docs:
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet
	@echo "docs: built into site/ with mkdocs build --strict"

run:
	$(PY) -m llm_sidecar

# The sidecar's image (needs a Docker engine); PYTHON_IMAGE=...@sha256:... pins the base.
IMAGE ?= llm-manager-sidecar:0.1.0
PYTHON_IMAGE ?= python:3.11-slim-bookworm
image:
	docker build -f k8s/Dockerfile --build-arg PYTHON_IMAGE=$(PYTHON_IMAGE) -t $(IMAGE) .

test:
	$(PY) tests/unified_test_runner.py

# The suite with two CPU hogs beside it (a busy CI machine).
test-stress:
	bash .ci/test-stress.sh

# Minutes of chaos on several sidecars sharing one Redis, then the books (not in `make test`).
SOAK_MINUTES ?= 3
soak:
	$(PY) -m tests.soak --minutes $(SOAK_MINUTES)

lint:
	$(PY) -m ruff check server client tests bench
	$(PY) -m ruff format --check server client tests bench
	$(PY) -m mypy server/llm_sidecar client/llm_manager_client
	$(PY) .ci/structure.py

bench:
	$(PY) -m bench

clean:
	rm -rf .pytest_cache .mypy_cache .ruff_cache build *.egg-info site
