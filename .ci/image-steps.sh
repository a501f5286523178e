#!/usr/bin/env bash
# No base image can be pulled here, so CI runs the image's steps the way the
# Dockerfile does: the build stage's `pip wheel` in one fresh venv, then the
# final stage's own script (k8s/install-wheels.sh, offline, wheels only) into
# another, standing in for the base image's interpreter; then it starts the
# result from an empty directory with the embedded defaults and checks health.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'kill "${sidecar:-0}" 2>/dev/null || true; rm -rf "$work"' EXIT
python3 -m venv "$work/build"
"$work/build/bin/python" -m pip wheel -q --no-cache-dir --wheel-dir "$work/wheels" ./client .
python3 -m venv "$work/image"
sh k8s/install-wheels.sh "$work/wheels" "$work/image/bin/python" | tail -1
mkdir "$work/run"
cd "$work/run"
PYTHONDONTWRITEBYTECODE=1 "$work/image/bin/python" -m llm_sidecar --port -1 \
  --unix-socket "$work/run/sidecar.sock" 2> "$work/sidecar.log" &
sidecar=$!
for _ in $(seq 100); do [ -S "$work/run/sidecar.sock" ] && break; sleep 0.1; done
"$work/image/bin/python" - "$work/run/sidecar.sock" <<'PY'
import sys
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
with grpc.insecure_channel(f"unix:{sys.argv[1]}") as channel:
    reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
assert reply.status == health_pb2.HealthCheckResponse.SERVING, reply
print("image steps: wheels built, installed offline, sidecar SERVING from an empty directory")
PY
