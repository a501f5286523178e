#!/usr/bin/env bash
# Go stubs: install the generators from Debian's packages (when missing), build
# protoc-gen-go from the packaged sources, generate with buf.gen.go.yaml, and
# compile and vet the result against the packaged grpc-go and protobuf-go.
set -euo pipefail
cd "$(dirname "$0")/.."
# grpc-go 1.33 still goes through github.com/golang/protobuf at run time: a program
# without the 1.5 package builds against the stubs and panics on its first call.
if ! command -v go > /dev/null || ! command -v protoc-gen-go-grpc > /dev/null \
    || [ ! -d /usr/share/gocode/src/google.golang.org/protobuf/cmd/protoc-gen-go ] \
    || [ ! -d /usr/share/gocode/src/github.com/golang/protobuf/ptypes ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    golang-go golang-google-protobuf-dev golang-google-grpc-dev protoc-gen-go-grpc \
    golang-github-golang-protobuf-1-5-dev > /dev/null
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export GO111MODULE=off GOFLAGS=-buildvcs=false GOCACHE="$work/cache"
GOPATH=/usr/share/gocode go build -o "$work/bin/protoc-gen-go" \
  google.golang.org/protobuf/cmd/protoc-gen-go
rm -rf clients/go/gen
PATH="$work/bin:$PATH" clients/ts/node_modules/.bin/buf generate --template buf.gen.go.yaml
mkdir -p "$work/gopath/src/llmmanager"
cp -r clients/go/gen/. "$work/gopath/src/llmmanager/"
cd "$work/gopath/src/llmmanager/llm_manager/v1"
GOPATH="$work/gopath:/usr/share/gocode" go build ./
GOPATH="$work/gopath:/usr/share/gocode" go vet ./
echo "go stubs: $(ls | tr '\n' ' ')built and vetted with $(go version | cut -d' ' -f3)"
