"""GenAI semantic-convention spans and metrics of provider attempts.

What one provider attempt puts on its CLIENT span and into the
``gen_ai.client.*`` instruments. Routing policy lives in
:mod:`llm_sidecar.core.routing.router`; this module only describes what
happened, and keeps prompt and completion text out unless
``capture_content`` is on.
"""

from __future__ import annotations

import json
from contextlib import AbstractContextManager
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from llm_sidecar.core.observability import NO_SPAN, Observability
from llm_sidecar.core.vocabulary.errors import ProviderError
from llm_sidecar.core.vocabulary.models import (
    ChatRequest,
    Completion,
    EmbeddingRequest,
    Embeddings,
)
from llm_sidecar.core.vocabulary.providers import Provider

OPERATION = "chat"
EMBEDDINGS = "embeddings"


def _base(provider: Provider, operation: str = OPERATION) -> dict[str, Any]:
    return {
        "gen_ai.operation.name": operation,
        "gen_ai.provider.name": provider.system,
        "gen_ai.request.model": provider.model,
    }


def operation_of(request: ChatRequest | EmbeddingRequest) -> str:
    """The GenAI operation an attempt at ``request`` performs."""
    return EMBEDDINGS if isinstance(request, EmbeddingRequest) else OPERATION


def attempt_span(
    obs: Observability,
    provider: Provider,
    route: str,
    request: ChatRequest | EmbeddingRequest,
) -> AbstractContextManager[Span]:
    """The CLIENT span of one attempt, current inside the block.

    Only started under a recorded request span: under an unsampled one it
    would record nothing either (parent-based sampling).
    """
    if not obs.in_recorded_trace():
        return NO_SPAN
    operation = operation_of(request)
    attributes = _base(provider, operation)
    attributes["llm_sidecar.provider"] = provider.name
    attributes["llm_sidecar.route"] = route
    name = f"{operation} {provider.model}"
    if isinstance(request, EmbeddingRequest):
        if request.dimensions is not None:
            attributes["gen_ai.embeddings.dimension.count"] = request.dimensions
        # The texts themselves are content: never on a span, whatever capture_content says.
        return obs.span(name, SpanKind.CLIENT, attributes)
    if obs.capture_content:
        # Opt-in only: this puts user text on spans.
        attributes["gen_ai.input.messages"] = json.dumps(
            [{"role": m.role, "content": m.content} for m in request.messages]
        )
    params = request.params
    if params.temperature is not None:
        attributes["gen_ai.request.temperature"] = params.temperature
    if params.max_tokens is not None:
        attributes["gen_ai.request.max_tokens"] = params.max_tokens
    return obs.span(name, SpanKind.CLIENT, attributes)


def record_success(
    obs: Observability,
    provider: Provider,
    span: Span,
    completion: Completion | Embeddings,
    seconds: float,
) -> None:
    """Duration and token metrics of a good answer, and its response attributes."""
    if isinstance(completion, Embeddings):
        _embedded(obs, provider, span, completion, seconds)
        return
    attrs = _base(provider)
    attrs["gen_ai.response.model"] = completion.model or provider.model
    obs.operation_duration.record(seconds, attrs)
    usage = completion.usage
    if span.is_recording():
        # One set_attributes call: each call takes the span's lock.
        response: dict[str, Any] = {"gen_ai.response.model": attrs["gen_ai.response.model"]}
        if completion.response_id:
            response["gen_ai.response.id"] = completion.response_id
        if completion.finish_reason:
            response["gen_ai.response.finish_reasons"] = (completion.finish_reason,)
        if completion.tool_calls:
            # How many, never their arguments: those are content.
            response["llm_sidecar.response.tool_calls"] = len(completion.tool_calls)
        if usage is not None:
            response["gen_ai.usage.input_tokens"] = usage.prompt_tokens
            response["gen_ai.usage.output_tokens"] = usage.completion_tokens
            if usage.cached_input_tokens:
                response["gen_ai.usage.cache_read.input_tokens"] = usage.cached_input_tokens
            if usage.cache_write_input_tokens:
                response["gen_ai.usage.cache_creation.input_tokens"] = (
                    usage.cache_write_input_tokens
                )
            if usage.reasoning_tokens:
                response["llm_sidecar.usage.reasoning_tokens"] = usage.reasoning_tokens
        if obs.capture_content:
            response["gen_ai.output.text"] = completion.text
        span.set_attributes(response)
    if usage is not None:
        obs.token_usage.record(usage.prompt_tokens, {**attrs, "gen_ai.token.type": "input"})
        obs.token_usage.record(usage.completion_tokens, {**attrs, "gen_ai.token.type": "output"})


def _embedded(
    obs: Observability, provider: Provider, span: Span, answer: Embeddings, seconds: float
) -> None:
    attrs = _base(provider, EMBEDDINGS)
    attrs["gen_ai.response.model"] = answer.model or provider.model
    obs.operation_duration.record(seconds, attrs)
    usage = answer.usage
    if span.is_recording():
        response: dict[str, Any] = {"gen_ai.response.model": attrs["gen_ai.response.model"]}
        if usage is not None:
            response["gen_ai.usage.input_tokens"] = usage.prompt_tokens
        span.set_attributes(response)
    if usage is not None:
        obs.token_usage.record(usage.prompt_tokens, {**attrs, "gen_ai.token.type": "input"})


def record_failure(
    obs: Observability,
    provider: Provider,
    span: Span,
    error_type: str,
    seconds: float,
    operation: str = OPERATION,
) -> None:
    """Duration metric and span status of a failed or cut attempt."""
    attrs = _base(provider, operation)
    attrs["error.type"] = error_type
    obs.operation_duration.record(seconds, attrs)
    if span.is_recording():
        span.set_attribute("error.type", error_type)
        span.set_status(Status(StatusCode.ERROR, error_type))


def record_http_status(span: Span, error: ProviderError) -> None:
    """The upstream's HTTP status on the attempt span, when there was one."""
    if error.status is not None and span.is_recording():
        span.set_attribute("http.response.status_code", error.status)


def event(name: str, attributes: dict[str, Any]) -> None:
    """An event on the current span (the request span), when it records."""
    span = trace.get_current_span()
    if span.is_recording():
        span.add_event(name, attributes)
