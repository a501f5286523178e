"""The effective configuration as ``check-config`` prints it: every secret replaced."""

from __future__ import annotations

import re
from typing import Any

from llm_sidecar.config.settings import Settings

_SECRET_NAME = re.compile(r"key|token|secret|password|sig|auth|credential", re.IGNORECASE)
REDACTED = "<redacted>"


def _redact_url(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    userinfo, at, host = rest.rpartition("@")
    if not sep or not at:
        return url
    user, colon, _ = userinfo.partition(":")
    hidden = f"{user}:{REDACTED}" if colon else REDACTED  # "user:pass" or a bare password
    return f"{scheme}://{hidden}@{host}"


def redacted(settings: Settings) -> dict[str, Any]:
    """The effective configuration with every secret replaced: header values, query
    values with secret-like names, and a password in the Redis URL. Variable names stay
    (they are not secrets)."""
    data = settings.model_dump(mode="json")
    data["redis"]["url"] = _redact_url(data["redis"]["url"])
    for route in data["models"].values():
        for provider in route["providers"]:
            provider["headers"] = {name: REDACTED for name in provider["headers"]}
            provider["query"] = {
                name: REDACTED if _SECRET_NAME.search(name) else value
                for name, value in provider["query"].items()
            }
    return data
