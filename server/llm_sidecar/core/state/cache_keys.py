"""Cache keys: a stable cryptographic digest of everything that changes an answer.

BLAKE2b is keyed by nothing secret here; it is used because it is stable across
processes and machines (unlike Python's salted ``hash``), fast, and collision
resistant, so a key derived for one user can never equal one derived for
another. Fields are length-prefixed so no two field lists share an encoding.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from hashlib import blake2b
from typing import Any

from llm_sidecar.core.models import ChatMessage, GenerationParams

KEY_VERSION = b"llmsc-cache-v1"


def _field(h: Any, value: str) -> None:
    data = value.encode("utf-8")
    h.update(len(data).to_bytes(8, "big"))
    h.update(data)


def cache_key(
    *,
    user_id: str,
    session_id: str | None,
    thread_id: str | None,
    model: str,
    params: GenerationParams,
    messages: Iterable[ChatMessage],
    json_schema: dict[str, Any] | None = None,
) -> str:
    """Return the hex cache key for one request of one user."""
    h = blake2b(KEY_VERSION, digest_size=32)
    _field(h, user_id)
    _field(h, session_id or "")
    _field(h, thread_id or "")
    _field(h, model)
    _field(h, params.canonical())
    _field(h, "" if json_schema is None else json.dumps(json_schema, sort_keys=True))
    for message in messages:
        _field(h, message.role)
        _field(h, message.content)
    return h.hexdigest()
