"""The built-in simulated provider: deterministic answers, no network, no key.

It exists so the sidecar runs out of the box and demos work offline. It is not
a language model: it echoes a digest of the prompt, and for structured calls
it builds the smallest document its schema allows. Offered tools while the
user spoke last, it calls one (the named one, or the first) with the smallest
arguments its schema allows; after a tool's result it answers in text, so an
agent loop runs end to end with no key and no network.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from hashlib import blake2b, shake_256
from typing import Any

from llm_sidecar.core.turn.structured import canonical_json
from llm_sidecar.core.vocabulary.models import (
    ChatRequest,
    Completion,
    EmbeddingRequest,
    Embeddings,
    Usage,
    pack_vector,
)
from llm_sidecar.core.vocabulary.providers import NO_POOL, Connections
from llm_sidecar.core.vocabulary.tools import ToolCall


def example_for(schema: Any) -> Any:
    """A small instance of ``schema`` (best effort, for demos)."""
    if not isinstance(schema, dict):
        return None
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("oneOf", "anyOf"):
        if schema.get(key):
            return example_for(schema[key][0])
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = kind[0] if kind else None
    if kind == "object" or "properties" in schema:
        props: dict[str, Any] = schema.get("properties") or {}
        required = set(schema.get("required") or props)
        return {name: example_for(sub) for name, sub in props.items() if name in required}
    if kind == "array":
        count = int(schema.get("minItems", 0))
        return [example_for(schema.get("items", {})) for _ in range(count)]
    if kind == "integer":
        return int(schema.get("minimum", 0))
    if kind == "number":
        return float(schema.get("minimum", 0))
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    if kind == "string":
        return "x" * int(schema.get("minLength", 0)) or "example"
    return None


#: The simulated embedding's dimension when a request sets none.
DEFAULT_DIMENSIONS = 256


class SimulatedProvider:
    """Answers "[simulated] <digest of the conversation>" after an optional delay."""

    system = "simulated"

    def __init__(
        self,
        *,
        name: str,
        model: str = "simulated-echo-1",
        latency_ms: float = 0.0,
        dimensions: int = DEFAULT_DIMENSIONS,
    ) -> None:
        self.name = name
        self.model = model
        self._latency = latency_ms / 1000.0
        self._serial = 0
        self._dimensions = dimensions

    def _answer(self, request: ChatRequest) -> Completion:
        digest = blake2b(digest_size=8)
        for message in request.messages:
            digest.update(message.role.encode())
            digest.update(message.content.encode())
        call = _tool_call(request, digest.hexdigest())
        if call is not None:
            return self._called(request, call)
        if request.json_schema is not None:
            text = canonical_json(example_for(request.json_schema))
        else:
            text = (
                f"[simulated] answer {digest.hexdigest()} to a {len(request.messages)}-message chat"
            )
        prompt_tokens = sum(len(m.content.split()) + 1 for m in request.messages)
        completion_tokens = len(text.split())
        self._serial += 1
        return Completion(
            text=text,
            response_id=f"sim-{digest.hexdigest()}-{self._serial}",
            model=self.model,
            finish_reason="stop",
            usage=Usage(prompt_tokens, completion_tokens, prompt_tokens + completion_tokens),
        )

    def _called(self, request: ChatRequest, call: ToolCall) -> Completion:
        self._serial += 1
        prompt_tokens = sum(len(m.content.split()) + 1 for m in request.messages)
        completion_tokens = len(call.arguments.split()) + 1
        return Completion(
            text="",
            response_id=f"sim-{call.id}-{self._serial}",
            model=self.model,
            finish_reason="tool_calls",
            usage=Usage(prompt_tokens, completion_tokens, prompt_tokens + completion_tokens),
            tool_calls=(call,),
        )

    async def complete(self, request: ChatRequest) -> Completion:
        if self._latency:
            await asyncio.sleep(self._latency)
        return self._answer(request)

    async def stream(self, request: ChatRequest) -> AsyncIterator[str | ToolCall | Completion]:
        completion = self._answer(request)
        words = completion.text.split(" ") if completion.text else []
        for i, word in enumerate(words):
            if self._latency:
                await asyncio.sleep(self._latency / max(len(words), 1))
            yield word if i == 0 else " " + word
        for call in completion.tool_calls:
            yield call
        yield completion

    async def embed(self, request: EmbeddingRequest) -> Embeddings:
        """A unit vector per text, derived from a hash of the text: the same text always
        embeds the same, with no model and no network."""
        if self._latency:
            await asyncio.sleep(self._latency)
        dimensions = request.dimensions or self._dimensions
        vectors = tuple(unit_vector(text, dimensions) for text in request.texts)
        tokens = sum(max(1, len(text.split())) for text in request.texts)
        return Embeddings(vectors, self.model, Usage(tokens, 0, tokens))

    async def probe(self) -> None:
        return None

    def connections(self) -> Connections:
        return NO_POOL


def unit_vector(text: str, dimensions: int) -> bytes:
    """A deterministic unit vector of ``dimensions`` float32 values for ``text``."""
    stream = shake_256(text.encode("utf-8")).digest(2 * dimensions)
    values = [
        (int.from_bytes(stream[i : i + 2], "little") - 32767.5) for i in range(0, len(stream), 2)
    ]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return pack_vector([v / norm for v in values])


def _tool_call(request: ChatRequest, digest: str) -> ToolCall | None:
    """The call the simulated model makes: when tools are offered, the choice allows one,
    and the last turn is the user's (after a tool's result it answers in text)."""
    choice = request.tool_choice
    turns = [m for m in request.messages if m.role != "system"]
    if not request.tools or choice.mode == "none" or not turns or turns[-1].role != "user":
        return None
    tool = request.tools[0]
    if choice.mode == "tool":
        tool = next((t for t in request.tools if t.name == choice.name), tool)
    arguments = example_for(tool.parameters)
    return ToolCall(f"call_{digest}", tool.name, canonical_json(arguments or {}))
