"""Loads every sidecar.toml found in rendered manifests with the sidecar's own Settings,
so a configuration typo in an overlay fails CI like a wrong Kubernetes field does."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import yaml  # type: ignore[import-untyped]

from llm_sidecar.config import load_settings

os.environ.setdefault("LLM_SIDECAR_TOKEN", "ci-token")
checked = 0
for document in yaml.safe_load_all(Path(sys.argv[1]).read_text()):
    if document and document.get("kind") == "ConfigMap" and "sidecar.toml" in document["data"]:
        with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as f:
            f.write(document["data"]["sidecar.toml"])
        settings = load_settings(f.name)
        os.unlink(f.name)
        routes = ", ".join(f"{m}: {len(r.providers)} providers" for m, r in settings.models.items())
        print(f"  sidecar.toml loads: default {settings.default_model} ({routes}), "
              f"redis.url in the file {'set' if settings.redis.url else 'unset'}")
        checked += 1
assert checked == 1, f"expected one sidecar.toml, found {checked}"
