"""How messages and usage counters are written into Redis values and fields."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence

import orjson

from llm_sidecar.core.state.responses import StoredResponse
from llm_sidecar.core.state.usage import COUNTERS, UsageRow
from llm_sidecar.core.vocabulary.models import ChatMessage, Role
from llm_sidecar.core.vocabulary.tools import Image, ToolCall

# A stored message is one role letter followed by the content: decoding the
# history is on every turn's path, and this measured far cheaper than JSON.
# Any other role is stored as a JSON array, which starts with "[" (and is read
# back as written, for stores shared with newer versions).
_CODE_ROLES: dict[str, Role] = {"u": "user", "a": "assistant", "s": "system"}
_ROLE_CODES = {role: code for code, role in _CODE_ROLES.items()}

# Usage hash fields are "<json [session, model, provider]><US><counter>".
_FIELD_SEP = "\x1f"
_KNOWN = frozenset(COUNTERS)


def encode_message(message: ChatMessage) -> str:
    """The stored form of a message: a role letter and the text for a plain turn, a JSON
    object (which starts with "{") for one with images, tool calls or a tool result."""
    if not message.plain:
        return json.dumps(
            {
                "role": message.role,
                "content": message.content,
                "images": [
                    [i.url, i.mime_type, base64.b64encode(i.data).decode("ascii")]
                    for i in message.images
                ],
                "tool_calls": [[c.id, c.name, c.arguments] for c in message.tool_calls],
                "tool_call_id": message.tool_call_id,
                # The order of text and images, when it is not text first: each part is
                # its text, or the index of its image.
                "parts": [
                    part if isinstance(part, str) else message.images.index(part)
                    for part in message.parts
                ],
            },
            ensure_ascii=False,
        )
    code = _ROLE_CODES.get(message.role)
    if code is None:
        return json.dumps([message.role, message.content], ensure_ascii=False)
    return code + message.content


def decode_message(raw: bytes | str) -> ChatMessage:
    """A message from its stored form."""
    text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    role = _CODE_ROLES.get(text[:1])
    if role is not None:
        return ChatMessage(role, text[1:])
    if text[:1] == "{":
        item = json.loads(text)
        images = tuple(
            Image(url, base64.b64decode(data), mime) for url, mime, data in item["images"]
        )
        return ChatMessage(
            item["role"],
            item["content"],
            images,
            tuple(ToolCall(*call) for call in item["tool_calls"]),
            item["tool_call_id"],
            tuple(p if isinstance(p, str) else images[p] for p in item.get("parts", ())),
        )
    role, content = json.loads(text)
    return ChatMessage(role, content)


def encode_response(response: StoredResponse) -> bytes:
    """The stored form of a response: one JSON object, its messages as above."""
    return orjson.dumps(
        {
            "id": response.id,
            "s": response.session_id,
            "t": response.created_at,
            "a": response.ancestors,
            "i": [encode_message(m) for m in response.input],
            "o": [encode_message(m) for m in response.output],
            "v": response.view.decode("utf-8"),
        }
    )


def decode_response(raw: bytes | str) -> StoredResponse:
    """A response from its stored form."""
    item = orjson.loads(raw)
    return StoredResponse(
        id=item["id"],
        session_id=item["s"],
        created_at=item["t"],
        ancestors=tuple(item["a"]),
        input=tuple(decode_message(m) for m in item["i"]),
        output=tuple(decode_message(m) for m in item["o"]),
        view=item["v"].encode("utf-8"),
    )


def usage_increments(rows: Sequence[UsageRow]) -> list[str | int]:
    """Field/amount pairs of the counters of ``rows``."""
    pairs: list[str | int] = []
    for row in rows:
        label = json.dumps([row.session_id, row.model, row.provider])
        for name in COUNTERS:
            amount = getattr(row, name)
            if amount:
                pairs += [f"{label}{_FIELD_SEP}{name}", amount]
    return pairs


def usage_rows(raw: dict[bytes | str, bytes | str]) -> list[UsageRow]:
    """Rows from the usage hash as HGETALL returns it."""
    rows: dict[str, UsageRow] = {}
    for field, value in raw.items():
        name = field.decode("utf-8") if isinstance(field, bytes) else field
        label, _, counter = name.rpartition(_FIELD_SEP)
        row = rows.get(label)
        if row is None:
            session, model, provider = json.loads(label)
            row = rows[label] = UsageRow(session, model, provider)
        if counter in _KNOWN:  # a counter of a newer version is kept, not read
            setattr(row, counter, int(value))
    return list(rows.values())
