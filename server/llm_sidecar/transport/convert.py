"""Protobuf messages <-> core value types."""

from __future__ import annotations

from typing import Any

from llm_manager.v1 import llm_manager_pb2 as pb

from llm_sidecar.core.errors import AttemptRecord
from llm_sidecar.core.models import (
    DEFAULT_PARAMS,
    AskInput,
    AskResult,
    ChatMessage,
    GenerationParams,
    Usage,
)
from llm_sidecar.core.state.usage import UsageRow


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


def ask_input(
    msg: pb.AskRequest | pb.AskStructuredRequest, json_schema: dict[str, Any] | None = None
) -> AskInput:
    """The core request for an Ask-family message."""
    return AskInput(
        prompt=msg.prompt,
        model=msg.model,
        params=params_from(msg.params),
        system_prompt=msg.system_prompt,
        skip_history=msg.skip_history,
        skip_cache=msg.skip_cache,
        json_schema=json_schema,
    )


def usage_msg(usage: Usage) -> pb.Usage:
    return pb.Usage(
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        total_tokens=usage.total_tokens,
        estimated=usage.estimated,
        cached_input_tokens=usage.cached_input_tokens,
        cache_write_input_tokens=usage.cache_write_input_tokens,
        reasoning_tokens=usage.reasoning_tokens,
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
        usage=usage_msg(result.usage),
        cached=result.cached,
        latency_ms=result.latency_ms,
        finish_reason=result.finish_reason,
        attempts=[attempt_msg(a) for a in result.attempts],
        request_id=result.request_id,
    )


def message_msg(message: ChatMessage) -> pb.Message:
    return pb.Message(role=message.role, content=message.content)


def usage_row_msg(row: UsageRow) -> pb.UsageRow:
    return pb.UsageRow(
        session_id=row.session_id,
        model=row.model,
        provider=row.provider,
        requests=row.requests,
        cache_hits=row.cache_hits,
        prompt_tokens=row.prompt_tokens,
        completion_tokens=row.completion_tokens,
        total_tokens=row.total_tokens,
        estimated_requests=row.estimated_requests,
        cached_input_tokens=row.cached_input_tokens,
        cache_write_input_tokens=row.cache_write_input_tokens,
        reasoning_tokens=row.reasoning_tokens,
    )
