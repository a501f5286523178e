#!/usr/bin/env bash
# Installs only the client distribution into a fresh virtualenv and calls a
# running sidecar (started from the dev virtualenv) with it.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'kill "${sidecar:-0}" 2>/dev/null || true; rm -rf "$work"' EXIT
python3 -m venv "$work/venv"
"$work/venv/bin/python" -m pip install -q ./client
"$work/venv/bin/python" -m pip list --format=freeze > "$work/installed.txt"
echo "client-only venv: $(tr '\n' ' ' < "$work/installed.txt")"
.venv/bin/python -m llm_sidecar --port -1 --unix-socket "$work/sidecar.sock" 2> "$work/sidecar.log" &
sidecar=$!
for _ in $(seq 100); do [ -S "$work/sidecar.sock" ] && break; sleep 0.1; done
(cd "$work" && "$work/venv/bin/python" "$OLDPWD/.ci/client_smoke.py" "unix:$work/sidecar.sock")
