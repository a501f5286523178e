"""Protobuf messages <-> core value types."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from typing import Any

from llm_manager.v1 import llm_manager_pb2 as pb

from llm_sidecar.core.admission.quotas import QuotaTotals, QuotaView
from llm_sidecar.core.state.usage import UsageRow
from llm_sidecar.core.vocabulary.errors import InvalidRequestError
from llm_sidecar.core.vocabulary.models import (
    DEFAULT_PARAMS,
    AskInput,
    AskResult,
    AttemptRecord,
    ChatMessage,
    EmbedInput,
    EmbedResult,
    GenerationParams,
    Usage,
)
from llm_sidecar.core.vocabulary.tools import Image, Tool, ToolCall, ToolChoice


def params_from(msg: pb.GenerationParams) -> GenerationParams:
    """Sampling parameters; an all-default message maps to the shared default object."""
    if not msg.ByteSize():
        return DEFAULT_PARAMS
    return GenerationParams(
        temperature=msg.temperature if msg.HasField("temperature") else None,
        max_tokens=msg.max_tokens if msg.HasField("max_tokens") else None,
        top_p=msg.top_p if msg.HasField("top_p") else None,
        stop=tuple(msg.stop),
        seed=msg.seed if msg.HasField("seed") else None,
    )


_ROLES = frozenset({"system", "user", "assistant", "tool"})


def message_from(msg: pb.Message, field: str) -> ChatMessage:
    """A caller-supplied turn: ``content``, then the parts in their order (text parts and
    images keep their order; text parts are joined by newlines in ``content``)."""
    if msg.role not in _ROLES:
        raise InvalidRequestError(f"{field}.role", "must be system, user, assistant or tool")
    calls = tuple(ToolCall(c.id, c.name, c.arguments) for c in msg.tool_calls)
    if not msg.parts:
        return ChatMessage(msg.role, msg.content, (), calls, msg.tool_call_id)  # type: ignore[arg-type]
    parts: list[str | Image] = [msg.content] if msg.content else []
    for part in msg.parts:
        if part.HasField("image"):
            image = part.image
            parts.append(Image(image.url, image.data, image.mime_type))
        elif part.text:
            parts.append(part.text)
    turn = ChatMessage.from_parts(msg.role, parts)  # type: ignore[arg-type]  # checked above
    return dataclasses.replace(turn, tool_calls=calls, tool_call_id=msg.tool_call_id)


def tools_from(msgs: Sequence[pb.Tool]) -> tuple[Tool, ...]:
    """Tool declarations; each ``parameters`` must be a JSON object (a JSON Schema)."""
    tools = []
    for i, tool in enumerate(msgs):
        parameters: Any = {"type": "object", "properties": {}}
        if tool.parameters.strip():
            try:
                parameters = json.loads(tool.parameters)
            except ValueError:
                raise InvalidRequestError(f"tools[{i}].parameters", "is not JSON") from None
        if not isinstance(parameters, dict):
            raise InvalidRequestError(f"tools[{i}].parameters", "must be a JSON Schema object")
        tools.append(Tool(tool.name, tool.description, parameters))
    return tuple(tools)


def ask_input(
    msg: pb.AskRequest | pb.AskStructuredRequest, json_schema: dict[str, Any] | None = None
) -> AskInput:
    """The core request for an Ask-family message."""
    inp = AskInput(
        prompt=msg.prompt,
        model=msg.model,
        params=params_from(msg.params),
        system_prompt=msg.system_prompt,
        skip_history=msg.skip_history,
        skip_cache=msg.skip_cache,
        json_schema=json_schema,
    )
    if not (msg.messages or msg.tools or msg.HasField("tool_choice")):
        return inp  # a plain prompt: nothing more to read
    choice = msg.tool_choice
    return dataclasses.replace(
        inp,
        messages=tuple(message_from(m, f"messages[{i}]") for i, m in enumerate(msg.messages)),
        tools=tools_from(msg.tools),
        tool_choice=ToolChoice(choice.mode or "auto", choice.name),  # type: ignore[arg-type]
        parallel_tool_calls=(
            msg.parallel_tool_calls if msg.HasField("parallel_tool_calls") else None
        ),
    )


def tool_call_msg(call: ToolCall) -> pb.ToolCall:
    return pb.ToolCall(id=call.id, name=call.name, arguments=call.arguments)


def usage_msg(usage: Usage, cost_micro_usd: int | None) -> pb.Usage:
    return pb.Usage(
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        total_tokens=usage.total_tokens,
        estimated=usage.estimated,
        cached_input_tokens=usage.cached_input_tokens,
        cache_write_input_tokens=usage.cache_write_input_tokens,
        reasoning_tokens=usage.reasoning_tokens,
        cost_micro_usd=cost_micro_usd,
    )


def attempt_msg(attempt: AttemptRecord) -> pb.Attempt:
    return pb.Attempt(
        provider=attempt.provider,
        outcome=attempt.outcome,
        latency_ms=attempt.latency_ms,
        error_type=attempt.error_type,
    )


def metadata_msg(result: AskResult) -> pb.ResponseMetadata:
    """Response metadata of one call."""
    return pb.ResponseMetadata(
        response_id=result.response_id,
        provider=result.provider,
        model=result.model,
        usage=usage_msg(result.usage, result.cost_micro_usd),
        cached=result.cached,
        latency_ms=result.latency_ms,
        finish_reason=result.finish_reason,
        attempts=[attempt_msg(a) for a in result.attempts],
        request_id=result.request_id,
    )


def message_msg(message: ChatMessage) -> pb.Message:
    """A stored turn: plain text in ``content``; a turn with images as its parts in order
    (text parts and images), so the order a caller gave them is what it reads back."""
    if message.plain:
        return pb.Message(role=message.role, content=message.content)
    ordered = message.ordered() if message.images else ()
    return pb.Message(
        role=message.role,
        content="" if ordered else message.content,
        parts=[
            pb.ContentPart(text=part)
            if isinstance(part, str)
            else pb.ContentPart(
                image=pb.Image(url=part.url, data=part.data, mime_type=part.mime_type)
            )
            for part in ordered
        ],
        tool_calls=[tool_call_msg(c) for c in message.tool_calls],
        tool_call_id=message.tool_call_id,
    )


def usage_row_msg(row: UsageRow) -> pb.UsageRow:
    # The row's counters and labels are the message's fields, by the same names.
    return pb.UsageRow(**{name: getattr(row, name) for name in UsageRow.__slots__})


def quota_status_msg(view: QuotaView) -> pb.QuotaStatus:
    return pb.QuotaStatus(
        name=view.name,
        unit=view.unit,
        limit=view.limit,
        used=view.used,
        reserved=view.reserved,
        remaining=view.remaining,
        resets_in_seconds=view.resets_in_seconds,
    )


def quota_totals_msg(totals: QuotaTotals) -> pb.QuotaTotals:
    return pb.QuotaTotals(
        name=totals.name,
        limit=totals.limit,
        admitted=totals.admitted,
        refused=totals.refused,
        admitted_locally=totals.admitted_locally,
        reservations_in_flight=totals.in_flight,
    )


def embed_input(msg: pb.EmbedRequest) -> EmbedInput:
    """The core request for an EmbedRequest."""
    return EmbedInput(
        texts=tuple(msg.inputs),
        model=msg.model,
        dimensions=msg.dimensions if msg.HasField("dimensions") else None,
        skip_cache=msg.skip_cache,
    )


def embedding_msg(vector: bytes, cached: bool) -> pb.Embedding:
    """An Embedding from a vector's little-endian float32 bytes. A packed ``repeated
    float`` is those very bytes on the wire, so the message is parsed from them rather
    than built float by float (13x less CPU for a batch of 1536-float vectors)."""
    wire = b"\x0a" + _varint(len(vector)) + vector + (b"\x10\x01" if cached else b"")
    return pb.Embedding.FromString(wire)


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def embed_response(result: EmbedResult) -> pb.EmbedResponse:
    """An EmbedResponse: the vectors in order, usage with cost, and the metadata."""
    return pb.EmbedResponse(
        embeddings=[
            embedding_msg(vector, cached)
            for vector, cached in zip(result.vectors, result.cached, strict=True)
        ],
        usage=usage_msg(result.usage, result.cost_micro_usd),
        metadata=pb.EmbedMetadata(
            provider=result.provider,
            model=result.model,
            attempts=[attempt_msg(a) for a in result.attempts],
            request_id=result.request_id,
            route=result.route,
            latency_ms=result.latency_ms,
        ),
    )
