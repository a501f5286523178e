#!/usr/bin/env bash
# Build and run a Go program that uses the contract's stubs, with the toolchain the docs
# name: Debian's Go and grpc-go in GOPATH mode (see docs/contract.md, "Go").
#   bash .ci/go-run.sh path/to/main.go
# The stubs are generated as `make go-stubs` does (into clients/go/gen) and put on a
# GOPATH as llmmanager/llm_manager/v1, beside the program's own package.
set -euo pipefail
program=$(realpath "$1")
cd "$(dirname "$0")/.."
if [ ! -f clients/go/gen/llm_manager/v1/llm_manager_grpc.pb.go ]; then
  bash .ci/go-stubs.sh > /dev/null
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export GO111MODULE=off GOFLAGS=-buildvcs=false GOCACHE="$work/cache"
mkdir -p "$work/gopath/src/llmmanager" "$work/gopath/src/example"
cp -r clients/go/gen/. "$work/gopath/src/llmmanager/"
cp "$program" "$work/gopath/src/example/main.go"
cd "$work/gopath/src/example"
GOPATH="$work/gopath:/usr/share/gocode" go build -o "$work/example" .
"$work/example"
