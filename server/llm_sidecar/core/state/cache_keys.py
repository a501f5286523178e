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

from llm_sidecar.core.vocabulary.models import ChatMessage, GenerationParams
from llm_sidecar.core.vocabulary.tools import AUTO, Tool, ToolChoice

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
    tools: tuple[tuple[Tool, ...], ToolChoice, bool | None] = ((), AUTO, None),
) -> str:
    """Return the hex cache key for one request of one user.

    Tools, the tool choice, images (their bytes hashed), tool calls and tool
    results are part of it; a plain text request's key is as it always was.
    """
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
        if not message.plain:
            _field(h, _extras(message))
    if tools != ((), AUTO, None):
        declared, choice, parallel = tools
        _field(
            h,
            json.dumps(
                [
                    [[t.name, t.description, t.parameters] for t in declared],
                    [choice.mode, choice.name],
                    parallel,
                ],
                sort_keys=True,
            ),
        )
    return h.hexdigest()


def _extras(message: ChatMessage) -> str:
    images = [
        [i.url, i.mime_type, blake2b(i.data, digest_size=32).hexdigest() if i.data else ""]
        for i in message.images
    ]
    calls = [[c.id, c.name, c.arguments] for c in message.tool_calls]
    # The order of text and images changes the question ("A:" [a] "B:" [b]).
    layout = [p if isinstance(p, str) else message.images.index(p) for p in message.parts]
    return json.dumps([images, calls, message.tool_call_id, layout])


EMBEDDING_KEY_VERSION = b"llmsc-embedding-v1"


def embedding_key(*, user_id: str, model: str, dimensions: int | None, text: str) -> str:
    """The cache key of one text's vector for one user: by model, dimensions and text
    (no session: a vector does not depend on a conversation). Its own namespace, so it
    never equals a chat key."""
    h = blake2b(EMBEDDING_KEY_VERSION, digest_size=32)
    _field(h, user_id)
    _field(h, model)
    _field(h, "" if dimensions is None else str(dimensions))
    _field(h, text)
    return h.hexdigest()
