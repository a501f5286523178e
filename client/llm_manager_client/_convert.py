"""Request building and response parsing shared by the async and sync clients."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from typing import Any, TypeVar

from llm_manager.v1 import llm_manager_pb2 as pb

from llm_manager_client._agent import Image, Message, Tool, ToolCall
from llm_manager_client._models import (
    AskResult,
    Attempt,
    Conversation,
    Embedding,
    EmbedResult,
    QuotaStatus,
    ResponseMetadata,
    StreamChunk,
    StructuredResult,
    Usage,
    UsageReport,
    UsageRow,
)


def ask_request(
    prompt: str = "",
    *,
    model: str = "",
    system_prompt: str = "",
    skip_history: bool = False,
    skip_cache: bool = False,
    temperature: float | None = None,
    max_tokens: int | None = None,
    top_p: float | None = None,
    stop: Sequence[str] = (),
    seed: int | None = None,
    messages: Sequence[Message] = (),
    tools: Sequence[Tool] = (),
    tool_choice: str | None = None,
    parallel_tool_calls: bool | None = None,
) -> pb.AskRequest:
    """An AskRequest from keyword arguments. ``tool_choice``: "auto", "none",
    "required", or a tool's name (that tool must be called)."""
    request = pb.AskRequest(
        prompt=prompt,
        model=model,
        system_prompt=system_prompt,
        skip_history=skip_history,
        skip_cache=skip_cache,
        params=params(temperature, max_tokens, top_p, stop, seed),
        messages=[message_msg(m) for m in messages],
        tools=[
            pb.Tool(name=t.name, description=t.description, parameters=json.dumps(t.parameters))
            for t in tools
        ],
    )
    if tool_choice is not None:
        mode = tool_choice if tool_choice in ("auto", "none", "required") else "tool"
        request.tool_choice.CopyFrom(
            pb.ToolChoice(mode=mode, name="" if mode != "tool" else tool_choice)
        )
    if parallel_tool_calls is not None:
        request.parallel_tool_calls = parallel_tool_calls
    return request


def _image_msg(image: Image) -> pb.ContentPart:
    return pb.ContentPart(image=pb.Image(url=image.url, data=image.data, mime_type=image.mime_type))


def message_msg(message: Message) -> pb.Message:
    if message.parts:  # the order of text and images is the caller's
        parts = [
            pb.ContentPart(text=p) if isinstance(p, str) else _image_msg(p) for p in message.parts
        ]
        content = ""
    else:
        parts, content = [_image_msg(i) for i in message.images], message.content
    return pb.Message(
        role=message.role,
        content=content,
        parts=parts,
        tool_calls=[
            pb.ToolCall(id=c.id, name=c.name, arguments=c.arguments) for c in message.tool_calls
        ],
        tool_call_id=message.tool_call_id,
    )


def tool_calls(msgs: Sequence[pb.ToolCall]) -> tuple[ToolCall, ...]:
    return tuple(ToolCall(c.id, c.name, c.arguments) for c in msgs)


def message(msg: pb.Message) -> Message:
    ordered: list[str | Image] = [msg.content] if msg.content else []
    for p in msg.parts:
        if p.HasField("image"):
            ordered.append(Image(p.image.url, p.image.data, p.image.mime_type))
        elif p.text:
            ordered.append(p.text)
    texts = [p for p in ordered if isinstance(p, str)]
    images = tuple(p for p in ordered if isinstance(p, Image))
    return Message(
        msg.role,
        "\n".join(texts),
        images,
        tool_calls(msg.tool_calls),
        msg.tool_call_id,
        tuple(ordered) if images else (),
    )


def params(
    temperature: float | None,
    max_tokens: int | None,
    top_p: float | None,
    stop: Sequence[str],
    seed: int | None,
) -> pb.GenerationParams:
    msg = pb.GenerationParams(stop=list(stop))
    if temperature is not None:
        msg.temperature = temperature
    if max_tokens is not None:
        msg.max_tokens = max_tokens
    if top_p is not None:
        msg.top_p = top_p
    if seed is not None:
        msg.seed = seed
    return msg


def structured_request(
    prompt: str, schema: dict[str, Any] | str, **kwargs: Any
) -> pb.AskStructuredRequest:
    """An AskStructuredRequest; ``schema`` as a dict or JSON text."""
    base = ask_request(prompt, **kwargs)
    request = pb.AskStructuredRequest(
        prompt=base.prompt,
        model=base.model,
        params=base.params,
        system_prompt=base.system_prompt,
        skip_history=base.skip_history,
        skip_cache=base.skip_cache,
        json_schema=schema if isinstance(schema, str) else json.dumps(schema),
        messages=base.messages,
        tools=base.tools,
    )
    if base.HasField("tool_choice"):
        request.tool_choice.CopyFrom(base.tool_choice)
    if base.HasField("parallel_tool_calls"):
        request.parallel_tool_calls = base.parallel_tool_calls
    return request


def usage(u: pb.Usage) -> Usage:
    return Usage(
        u.prompt_tokens,
        u.completion_tokens,
        u.total_tokens,
        u.estimated,
        u.cached_input_tokens,
        u.cache_write_input_tokens,
        u.reasoning_tokens,
        u.cost_micro_usd if u.HasField("cost_micro_usd") else None,
    )


def attempts(msgs: Sequence[pb.Attempt]) -> tuple[Attempt, ...]:
    return tuple(Attempt(a.provider, a.outcome, a.latency_ms, a.error_type) for a in msgs)


def metadata(msg: pb.ResponseMetadata) -> ResponseMetadata:
    return ResponseMetadata(
        response_id=msg.response_id,
        provider=msg.provider,
        model=msg.model,
        usage=usage(msg.usage),
        cached=msg.cached,
        latency_ms=msg.latency_ms,
        finish_reason=msg.finish_reason,
        attempts=attempts(msg.attempts),
        request_id=msg.request_id,
    )


def embed_request(
    inputs: str | Sequence[str],
    *,
    model: str = "",
    dimensions: int | None = None,
    skip_cache: bool = False,
) -> pb.EmbedRequest:
    """An EmbedRequest; one text or several."""
    texts = [inputs] if isinstance(inputs, str) else list(inputs)
    request = pb.EmbedRequest(model=model, inputs=texts, skip_cache=skip_cache)
    if dimensions is not None:
        request.dimensions = dimensions
    return request


def embed_result(msg: pb.EmbedResponse) -> EmbedResult:
    m = msg.metadata
    return EmbedResult(
        tuple(Embedding(tuple(e.vector), e.cached) for e in msg.embeddings),
        usage(msg.usage),
        m.provider,
        m.model,
        m.route,
        attempts(m.attempts),
        m.request_id,
        m.latency_ms,
    )


def ask_result(msg: pb.AskFullResponse) -> AskResult:
    return AskResult(msg.text, metadata(msg.metadata), tool_calls(msg.tool_calls))


def structured_result(msg: pb.AskStructuredResponse) -> StructuredResult:
    data = json.loads(msg.json) if msg.json else None
    return StructuredResult(data, msg.json, metadata(msg.metadata), tool_calls(msg.tool_calls))


def stream_chunk(msg: pb.AskStreamChunk) -> StreamChunk:
    return StreamChunk(
        msg.delta,
        msg.index,
        metadata(msg.metadata) if msg.HasField("metadata") else None,
        tool_calls([msg.tool_call])[0] if msg.HasField("tool_call") else None,
    )


def conversation(msg: pb.GetConversationResponse) -> Conversation:
    return Conversation(msg.session_id, msg.thread_id, tuple(message(m) for m in msg.messages))


_Model = TypeVar("_Model", UsageRow, QuotaStatus)


def _same_fields(cls: type[_Model], msg: Any) -> _Model:
    """A model whose fields are the message's fields of the same names."""
    return cls(**{f.name: getattr(msg, f.name) for f in dataclasses.fields(cls)})


def usage_row(msg: pb.UsageRow) -> UsageRow:
    return _same_fields(UsageRow, msg)


def quota_status(msg: pb.QuotaStatus) -> QuotaStatus:
    return _same_fields(QuotaStatus, msg)


def usage_report(msg: pb.GetUsageResponse) -> UsageReport:
    return UsageReport(
        usage_row(msg.total),
        tuple(usage_row(r) for r in msg.rows),
        tuple(quota_status(q) for q in msg.quotas),
    )
