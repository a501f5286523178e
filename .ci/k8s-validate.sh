#!/usr/bin/env bash
# Renders every overlay with kustomize and validates every object offline
# against the Kubernetes 1.30 schemas (strict: unknown fields fail), then loads
# each overlay's sidecar.toml with the sidecar's Settings and checks that every
# app beside the sidecar has its addresses and token (.ci/k8s_configs.py).
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
# The wiring check must catch an app without the token: drop it and expect a failure.
"$PY" - "$work/dev.yaml" "$work/no-token.yaml" <<'PY'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
for d in docs:
    if d["kind"] == "Deployment":
        app = d["spec"]["template"]["spec"]["containers"][0]
        app["env"] = [e for e in app["env"] if e["name"] != "OPENAI_API_KEY"]
yaml.safe_dump_all(docs, open(sys.argv[2], "w"))
PY
if "$PY" .ci/k8s_configs.py "$work/no-token.yaml" > /dev/null 2>&1; then
  echo "an app without the sidecar's token passed the wiring check" >&2
  exit 1
fi
echo "an app without the sidecar's token is rejected, as it should be"
# One image name and tag everywhere it is written: llm-manager-sidecar:<the package's version>.
version=$("$PY" -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
others=$(grep -rhoE 'llm-manager-sidecar:[0-9][0-9A-Za-z.+-]*' k8s docs Makefile README.md \
  | sort -u | grep -vx "llm-manager-sidecar:$version" || true)
if [ -n "$others" ]; then
  echo "image tags that are not llm-manager-sidecar:$version: $others" >&2
  exit 1
fi
echo "the image is named llm-manager-sidecar:$version everywhere"
