"""Checks one rendered overlay beyond its Kubernetes schema: its sidecar.toml loads with
the sidecar's own Settings (a typo fails CI like a wrong field does), and every pod
with the sidecar is wired so that its app can call it: the app container has the
sidecar's addresses and, when the sidecar requires a token, the same token from the
same Secret (the backend that lacked it got 401 on every call), and the sidecar's
image is named as everywhere else. Exit 1, naming what is missing."""

from __future__ import annotations

import os
import sys
import tempfile
import tomllib
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]

from llm_sidecar.config import Settings, load_settings

ROOT = Path(__file__).resolve().parents[1]
SIDECAR = "llm-sidecar"
IMAGE = "llm-manager-sidecar"
#: Variables the app's SDKs read, with the token the sidecar requires.
TOKEN_VARIABLES = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY")


def sidecar_settings(documents: list[dict[str, Any]]) -> Settings:
    found = [
        d["data"]["sidecar.toml"]
        for d in documents
        if d.get("kind") == "ConfigMap" and "sidecar.toml" in d.get("data", {})
    ]
    assert len(found) == 1, f"expected one sidecar.toml, found {len(found)}"
    with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as f:
        f.write(found[0])
    try:
        return load_settings(f.name)
    finally:
        os.unlink(f.name)


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


def secret_ref(entry: dict[str, Any] | None) -> tuple[str, str] | None:
    ref = (entry or {}).get("valueFrom", {}).get("secretKeyRef")
    return (ref["name"], ref["key"]) if ref else None


def pod_problems(deployment: dict[str, Any], settings: Settings, version: str) -> list[str]:
    """What keeps this Deployment's app from calling its sidecar."""
    name = deployment["metadata"]["name"]
    pod = deployment["spec"]["template"]["spec"]
    sidecars = [c for c in pod.get("initContainers", []) if c["name"] == SIDECAR]
    if not sidecars:
        return []
    sidecar, app = sidecars[0], pod["containers"][0]
    where = f"Deployment {name}, container {app['name']}"
    problems = []
    if sidecar.get("restartPolicy") != "Always":
        problems.append(f"Deployment {name}: {SIDECAR} is not a native sidecar")
    image = sidecar["image"]
    if image.rsplit("/", 1)[-1] != f"{IMAGE}:{version}":
        problems.append(f"Deployment {name}: the sidecar's image {image} is not {IMAGE}:{version}")
    app_env = env_of(app)
    http = f"http://127.0.0.1:{settings.http.port}"
    for variable, value in (("OPENAI_BASE_URL", f"{http}/v1"), ("ANTHROPIC_BASE_URL", http)):
        if app_env.get(variable, {}).get("value") != value:
            problems.append(f"{where}: {variable} is not {value}")
    if settings.server.auth_token_env:
        token = secret_ref(env_of(sidecar).get(settings.server.auth_token_env))
        if token is None:
            problems.append(f"Deployment {name}: the sidecar's token variable is unset")
        for variable in TOKEN_VARIABLES:
            if secret_ref(app_env.get(variable)) != token:
                problems.append(
                    f"{where}: {variable} must hold the sidecar's token "
                    f"(secretKeyRef {token}), or every HTTP call gets 401"
                )
    return problems


def main(path: str) -> int:
    documents = [d for d in yaml.safe_load_all(Path(path).read_text()) if d]
    os.environ.setdefault("LLM_SIDECAR_TOKEN", "ci-token")
    settings = sidecar_settings(documents)
    routes = ", ".join(f"{m}: {len(r.providers)} providers" for m, r in settings.models.items())
    print(
        f"  sidecar.toml loads: default {settings.default_model} ({routes}), "
        f"redis.url in the file {'set' if settings.redis.url else 'unset'}"
    )
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    deployments = [d for d in documents if d.get("kind") == "Deployment"]
    problems = [p for d in deployments for p in pod_problems(d, settings, version)]
    for problem in problems:
        print(f"  {problem}", file=sys.stderr)
    if problems:
        return 1
    wired = sum(
        any(c["name"] == SIDECAR for c in d["spec"]["template"]["spec"].get("initContainers", []))
        for d in deployments
    )
    assert wired, "no Deployment carries the sidecar"
    print(f"  {wired} Deployment(s): the app has the sidecar's addresses and token")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
