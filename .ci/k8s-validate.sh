#!/usr/bin/env bash
# Renders every overlay with kustomize and validates every object offline
# against the Kubernetes 1.30 schemas (strict: unknown fields fail), then loads
# each overlay's sidecar.toml with the sidecar's Settings.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
BIN=$(dirname "$PY")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for overlay in k8s/overlays/*/; do
  name=$(basename "$overlay")
  kubectl kustomize "$overlay" > "$work/$name.yaml"
  "$BIN/kubernetes-validate" -k 1.30.0 --strict --quiet "$work/$name.yaml"
  kinds=$(grep '^kind:' "$work/$name.yaml" | sort | uniq -c | awk '{printf "%s %s, ", $1, $3}')
  echo "k8s/overlays/$name: valid against 1.30 (${kinds%, })"
  "$PY" .ci/k8s_configs.py "$work/$name.yaml"
done
# The validator must catch a wrong field: misspell one and expect a failure.
sed 's/restartPolicy: Always/restartPolicyy: Always/' "$work/dev.yaml" > "$work/broken.yaml"
if "$BIN/kubernetes-validate" -k 1.30.0 --strict --quiet "$work/broken.yaml" > /dev/null 2>&1; then
  echo "kubernetes-validate accepted a misspelt field" >&2
  exit 1
fi
echo "a misspelt field is rejected, as it should be"
