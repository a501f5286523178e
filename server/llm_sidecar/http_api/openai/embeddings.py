"""OpenAI's Embeddings API (``POST /v1/embeddings``): its handler, through the same
service call as gRPC's Embed (the same pipeline, per-user cache, quotas and bill), and
its bodies in and out of the core.

A request's ``input`` is one text or an array of texts; token arrays are refused
(the sidecar caches and bills by text, and a token array is one tokenizer's view of
a text that the next provider may not share). Vectors go out as the API gives them:
JSON numbers (``encoding_format: "float"``), or base64 of little-endian float32
(``"base64"``, what the OpenAI SDKs ask for by default and decode themselves). The
core already holds vectors as those bytes, so base64 costs one encoding per vector.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any, Literal

from aiohttp import web

from llm_sidecar.core.vocabulary.errors import InvalidRequestError
from llm_sidecar.core.vocabulary.models import EmbedInput, EmbedResult, unpack_vector
from llm_sidecar.http_api.edge import HttpCall
from llm_sidecar.http_api.endpoints import Endpoints
from llm_sidecar.http_api.fields import Fields

Encoding = Literal["float", "base64"]


@dataclass(frozen=True, slots=True)
class EmbeddingsCall:
    """One parsed request: what the core is asked, and how to encode the vectors."""

    inp: EmbedInput
    model: str
    encoding: Encoding


def parse(body: Fields) -> EmbeddingsCall:
    """The core request for an Embeddings body; InvalidRequestError naming the field."""
    model = body.text("model", max_length=256)
    encoding = body.text("encoding_format", "float")
    if encoding not in ("float", "base64"):
        raise InvalidRequestError("encoding_format", 'must be "float" or "base64"')
    inp = EmbedInput(
        texts=_texts(body),
        model=model,
        dimensions=body.integer("dimensions", minimum=1),
    )
    return EmbeddingsCall(inp, model, encoding)  # type: ignore[arg-type]  # checked above


def _texts(body: Fields) -> tuple[str, ...]:
    value = body.raw("input")
    if value is None:
        raise InvalidRequestError("input", "is required")
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, list) or not value:
        raise InvalidRequestError("input", "must be a string or a non-empty array of strings")
    for index, item in enumerate(value):
        if not isinstance(item, str):
            why = (
                "token arrays are not supported: send the text"
                if isinstance(item, int | list)
                else "must be a string"
            )
            raise InvalidRequestError(f"input[{index}]", why)
    return tuple(value)


def response(result: EmbedResult, call: EmbeddingsCall) -> dict[str, Any]:
    """A ``list`` of ``embedding`` objects, in the order of the inputs, with usage."""
    encode = _base64 if call.encoding == "base64" else unpack_vector
    tokens = result.usage.prompt_tokens
    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": index, "embedding": encode(vector)}
            for index, vector in enumerate(result.vectors)
        ],
        "model": call.model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def _base64(vector: bytes) -> str:
    return base64.b64encode(vector).decode("ascii")


class Embeddings(Endpoints):
    """``POST /v1/embeddings``."""

    async def handle(self, call: HttpCall) -> web.StreamResponse:
        assert call.body is not None and call.ctx is not None
        spec = parse(call.body)
        call.same_user(call.body.raw("user"), "user")
        deadline = self._deadline(call)  # read once the batch is checked: a 400 first
        result = await self._service.embed(call.ctx, spec.inp, deadline, field="input")
        call.embedded(result)
        return call.json(response(result, spec))
