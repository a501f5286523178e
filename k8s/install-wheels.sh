#!/bin/sh
# The image's final install step, shared with CI (.ci/image-steps.sh) so that CI
# runs exactly what the image runs: install the sidecar from the wheels the
# build stage made, offline, then remove them. Usage: install-wheels.sh WHEEL_DIR [PYTHON]
set -eu
wheels="$1"
python="${2:-python}"
"$python" -m pip install --no-cache-dir --no-index --find-links "$wheels" \
  "llm-manager-sidecar==0.1.0"
"$python" -m pip check
