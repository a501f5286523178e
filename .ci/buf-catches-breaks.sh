#!/usr/bin/env bash
# `buf breaking` must fail on a wire-incompatible change: renumber a field in a
# scratch copy of the contract and expect it to be caught.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r protos "$work/protos"
sed -i 's/  string prompt = 1;/  string prompt = 99;/' "$work/protos/llm_manager/v1/llm_manager.proto"
printf 'version: v2\nmodules:\n  - path: protos\nbreaking:\n  use: [FILE]\n' > "$work/buf.yaml"
if (cd "$work" && "$OLDPWD/clients/ts/node_modules/.bin/buf" breaking \
      --against "$OLDPWD/contract/llm_manager-v1.0.0.binpb" > "$work/out.txt" 2>&1); then
  echo "buf breaking missed a renumbered field" >&2
  exit 1
fi
echo "buf breaking catches a renumbered field: $(head -1 "$work/out.txt" | cut -c1-120)"
