"""OpenTelemetry traces, metrics and logs, read back from the SDK's in-memory readers.

Every test drives real RPCs through a real sidecar; spans are taken from what
the sidecar's tracer provider exported, so what is asserted is what an
operator's collector would receive.
"""

from __future__ import annotations

import json

import grpc
import pytest
from llm_manager.v1 import llm_manager_pb2 as pb
from llm_manager.v1 import llm_manager_pb2_grpc as pb_grpc
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from llm_manager_client import (
    InvalidArgumentError,
    UnauthenticatedError,
)
from llm_sidecar.telemetry.setup import setup_telemetry
from tests.support.sidecar import make_settings, provider
from tests.support.telemetry import (
    ASK,
    PROMPT_MARKER,
    SCHEMA,
    USER_MARKER,
    JsonLines,
    Traced,
    TracedFactory,
    chain_settings,
    children,
    events,
    server_span,
)
from tests.support.upstream import FakeUpstream

# -- span trees ------------------------------------------------------------------


async def test_plain_ask_span_tree(upstream: FakeUpstream, traced_factory: TracedFactory) -> None:
    traced = await traced_factory(make_settings([provider("primary", upstream.url)]))
    async with traced.client("alice") as alice:
        await alice.ask("how many tokens is this")
    spans = traced.trace_of(ASK)
    root = server_span(spans)
    assert root.parent is None
    assert root.attributes is not None
    assert root.attributes["rpc.system"] == "grpc"
    assert root.attributes["rpc.method"] == "Ask"
    assert root.attributes["rpc.service"] == "llm_manager.v1.LLMManagerService"
    assert root.attributes["enduser.pseudo.id"] == traced.handles.observability.user_ref("alice")
    assert root.attributes["llm_sidecar.cache.hit"] is False
    assert events(root, "llm_sidecar.cache.lookup") == [{"llm_sidecar.cache.hit": False}]
    assert root.status.status_code is not StatusCode.ERROR

    (chat,) = children(spans, root)
    assert len(spans) == 2
    assert chat.name == "chat primary-model" and chat.kind is SpanKind.CLIENT
    usage = upstream.usage(upstream.chat_requests[-1].body, "")
    reply_words = len(upstream.answer_text(upstream.chat_requests[-1].body).split())
    assert dict(chat.attributes or {}) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "primary-model",
        "gen_ai.response.model": "primary-model",
        "gen_ai.response.id": "chatcmpl-primary-1",
        "gen_ai.response.finish_reasons": ("stop",),
        "gen_ai.usage.input_tokens": usage["prompt_tokens"],
        "gen_ai.usage.output_tokens": reply_words,
        "llm_sidecar.provider": "primary",
        "llm_sidecar.route": "m",
    }
    assert chat.status.status_code is not StatusCode.ERROR


async def test_cache_hit_span_tree(upstream: FakeUpstream, traced_factory: TracedFactory) -> None:
    traced = await traced_factory(make_settings([provider("primary", upstream.url)]))
    async with traced.client("alice") as alice:
        await alice.ask("same question", skip_history=True)
        await alice.ask("same question", skip_history=True)
    assert len(upstream.chat_requests) == 1
    spans = traced.trace_of(ASK, -1)
    root = server_span(spans)
    assert spans == [root]  # a hit makes no provider attempt
    assert root.attributes is not None and root.attributes["llm_sidecar.cache.hit"] is True
    assert events(root, "llm_sidecar.cache.lookup") == [{"llm_sidecar.cache.hit": True}]


async def test_failover_span_tree(pair, traced_factory: TracedFactory) -> None:
    primary, fallback = pair
    primary.mode = "error"
    traced = await traced_factory(chain_settings(primary, fallback))
    async with traced.client("alice") as alice:
        assert (await alice.ask_full("first")).metadata.provider == "fallback"
        assert (await alice.ask_full("second")).metadata.provider == "fallback"

    # First call: primary failed -> breaker opened -> fallback answered.
    first = traced.trace_of("llm_manager.v1.LLMManagerService/AskFull", 0)
    root = server_span(first)
    failed, answered = sorted(children(first, root), key=lambda s: s.start_time or 0)
    assert failed.name == "chat primary-model"
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.attributes is not None
    assert failed.attributes["error.type"] == "server_error"
    assert failed.attributes["http.response.status_code"] == 503
    assert events(failed, "llm_sidecar.circuit.state_change") == [
        {"llm_sidecar.provider": "primary", "from": "closed", "to": "open"}
    ]
    assert answered.name == "chat fallback-model"
    assert answered.status.status_code is not StatusCode.ERROR
    assert answered.attributes is not None and "error.type" not in answered.attributes
    assert answered.attributes["gen_ai.response.id"].startswith("chatcmpl-fallback-")
    assert events(root, "llm_sidecar.failover") == [
        {
            "llm_sidecar.from_provider": "primary",
            "llm_sidecar.to_provider": "fallback",
            "error.type": "server_error",
        }
    ]
    assert failed.end_time is not None and answered.start_time is not None
    assert failed.end_time <= answered.start_time

    # Second call: the open circuit is skipped, visibly, without an attempt span.
    second = traced.trace_of("llm_manager.v1.LLMManagerService/AskFull", 1)
    root = server_span(second)
    assert [s.name for s in children(second, root)] == ["chat fallback-model"]
    assert events(root, "llm_sidecar.circuit.skipped") == [{"llm_sidecar.provider": "primary"}]
    assert len(primary.chat_requests) == 1


async def test_stream_span_tree(upstream: FakeUpstream, traced_factory: TracedFactory) -> None:
    traced = await traced_factory(make_settings([provider("primary", upstream.url)]))
    async with traced.client("alice") as alice:
        chunks = [c async for c in alice.ask_stream("tell me a story in pieces")]
    assert chunks[-1].metadata is not None
    spans = traced.trace_of("llm_manager.v1.LLMManagerService/AskStream")
    root = server_span(spans)
    (chat,) = children(spans, root)
    assert chat.name == "chat primary-model" and chat.kind is SpanKind.CLIENT
    assert chat.attributes is not None
    assert chat.attributes["gen_ai.response.model"] == "primary-model"
    usage = upstream.usage(upstream.chat_requests[-1].body, "")
    assert chat.attributes["gen_ai.usage.input_tokens"] == usage["prompt_tokens"]
    assert chat.status.status_code is not StatusCode.ERROR
    assert root.end_time is not None and chat.end_time is not None
    assert chat.end_time <= root.end_time


async def test_rejected_request_spans(
    upstream: FakeUpstream, traced_factory: TracedFactory
) -> None:
    traced = await traced_factory(
        make_settings([provider("primary", upstream.url)], server={"max_prompt_chars": 100})
    )
    async with grpc.aio.insecure_channel(f"127.0.0.1:{traced.sidecar.port}") as channel:
        stub = pb_grpc.LLMManagerServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.Ask(pb.AskRequest(prompt="hi"), timeout=5)
        assert info.value.code() is grpc.StatusCode.UNAUTHENTICATED
    async with traced.client("alice") as alice:
        with pytest.raises(InvalidArgumentError):
            await alice.ask("x" * 101)
    rejected = [s for s in traced.spans() if s.name == ASK]
    assert len(rejected) == 2
    unauthenticated, too_long = rejected
    for span, code, reason in (
        (unauthenticated, grpc.StatusCode.UNAUTHENTICATED, "INVALID_USER_CONTEXT"),
        (too_long, grpc.StatusCode.INVALID_ARGUMENT, "REQUEST_TOO_LARGE"),
    ):
        assert span.status.status_code is StatusCode.ERROR
        assert span.status.description == code.name
        assert span.attributes is not None
        assert span.attributes["rpc.grpc.status_code"] == code.value[0]
        assert span.attributes["error.type"] == reason
    assert "enduser.pseudo.id" not in (unauthenticated.attributes or {})
    # Rejected before any provider was asked.
    assert all(s.kind is SpanKind.SERVER for s in traced.spans())
    assert upstream.chat_requests == []


# -- trace context -----------------------------------------------------------------


async def test_traceparent_from_metadata_is_continued(
    upstream: FakeUpstream, traced_factory: TracedFactory
) -> None:
    traced = await traced_factory(make_settings([provider("primary", upstream.url)]))
    trace_id, parent_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    async with grpc.aio.insecure_channel(f"127.0.0.1:{traced.sidecar.port}") as channel:
        await pb_grpc.LLMManagerServiceStub(channel).Ask(
            pb.AskRequest(prompt="continue my trace"),
            metadata=(("x-user-id", "alice"), ("traceparent", f"00-{trace_id}-{parent_id}-01")),
            timeout=5,
        )
    spans = traced.trace_of(ASK)
    root = server_span(spans)
    assert format(root.context.trace_id, "032x") == trace_id
    assert root.parent is not None and root.parent.is_remote
    assert format(root.parent.span_id, "016x") == parent_id
    assert all(format(s.context.trace_id, "032x") == trace_id for s in spans)
    assert len(spans) == 2


async def test_client_propagates_its_active_trace(
    upstream: FakeUpstream, traced_factory: TracedFactory
) -> None:
    traced = await traced_factory(make_settings([provider("primary", upstream.url)]))
    caller_exporter = InMemorySpanExporter()
    caller = TracerProvider()
    caller.add_span_processor(SimpleSpanProcessor(caller_exporter))
    async with traced.client("alice") as alice:
        with caller.get_tracer("backend").start_as_current_span("handle user request") as span:
            await alice.ask("traced from the backend")
            chunks = [c async for c in alice.ask_stream("and streamed")]
        assert chunks
        outside = await alice.ask("no trace around this one")
    assert outside
    server_spans = [s for s in traced.spans() if s.kind is SpanKind.SERVER]
    assert len(server_spans) == 3
    inside, streamed, untraced = server_spans
    for received in (inside, streamed):
        assert received.context.trace_id == span.get_span_context().trace_id
        assert received.parent is not None
        assert received.parent.span_id == span.get_span_context().span_id
    assert untraced.parent is None
    assert untraced.context.trace_id != span.get_span_context().trace_id


# -- privacy -----------------------------------------------------------------------


def _everything_exported(traced: Traced, logs: JsonLines) -> str:
    spans = "\n".join(s.to_json() for s in traced.spans())
    data = traced.reader.get_metrics_data()
    metrics = data.to_json() if data is not None else ""
    return "\n".join([spans, metrics, *logs.lines])


async def test_no_prompt_or_raw_user_id_in_telemetry(
    pair, traced_factory: TracedFactory, json_logs: JsonLines
) -> None:
    primary, fallback = pair
    traced = await traced_factory(
        chain_settings(primary, fallback, server={"max_prompt_chars": 2000})
    )
    user = f"{USER_MARKER}@example.com"
    async with traced.client(user, session_id="s1") as client:
        await client.ask(f"plain {PROMPT_MARKER}")
        await client.ask(f"plain {PROMPT_MARKER}")  # a cache hit
        await client.ask_full(f"full {PROMPT_MARKER}")
        await client.ask_structured(f"structured {PROMPT_MARKER}", SCHEMA)
        assert [c async for c in client.ask_stream(f"stream {PROMPT_MARKER}")]
        primary.mode = "error"  # failover, breaker opening, skipped circuit
        await client.ask(f"failover {PROMPT_MARKER}")
        await client.ask(f"skipped {PROMPT_MARKER}")
        fallback.mode = "bad_request"  # a provider refusing the request
        with pytest.raises(InvalidArgumentError):
            await client.ask(f"refused {PROMPT_MARKER}")
        with pytest.raises(InvalidArgumentError):
            await client.ask(f"too long {PROMPT_MARKER}" * 200)
        await client.get_conversation()
        await client.get_usage()
        await client.end_session()
    async with traced.client(f"{USER_MARKER} *bad") as bad:
        with pytest.raises((InvalidArgumentError, UnauthenticatedError)):
            await bad.ask(f"bad id {PROMPT_MARKER}")

    exported = _everything_exported(traced, json_logs)
    # The run produced real telemetry to search through.
    assert len(traced.spans()) >= 12 and json_logs.lines
    assert traced.metric_points("gen_ai.client.token.usage")
    assert PROMPT_MARKER not in exported
    assert USER_MARKER not in exported
    pseudonym = traced.handles.observability.user_ref(user)
    assert pseudonym.startswith("u_") and pseudonym in exported


async def test_content_capture_is_opt_in(
    upstream: FakeUpstream, traced_factory: TracedFactory
) -> None:
    settings = make_settings(
        [provider("primary", upstream.url)],
        telemetry={"capture_content": True, "user_id_mode": "raw"},
    )
    traced = await traced_factory(settings)
    async with traced.client("alice") as alice:
        answer = await alice.ask(f"opted in {PROMPT_MARKER}", temperature=0.25, max_tokens=64)
    spans = traced.trace_of(ASK)
    root = server_span(spans)
    (chat,) = children(spans, root)
    assert root.attributes is not None and root.attributes["enduser.id"] == "alice"
    assert chat.attributes is not None
    messages = json.loads(str(chat.attributes["gen_ai.input.messages"]))
    assert messages[-1] == {"role": "user", "content": f"opted in {PROMPT_MARKER}"}
    assert chat.attributes["gen_ai.output.text"] == answer
    assert chat.attributes["gen_ai.request.temperature"] == 0.25
    assert chat.attributes["gen_ai.request.max_tokens"] == 64


async def test_pseudonyms_are_stable_keyed_and_distinct(
    upstream: FakeUpstream, traced_factory: TracedFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLM_SIDECAR_PSEUDONYM_KEY", "operator-secret")
    settings = make_settings([provider("primary", upstream.url)])
    one, two = await traced_factory(settings), await traced_factory(settings)
    for traced in (one, two):
        for user in ("alice", "bob"):
            async with traced.client(user) as client:
                await client.ask("hello", skip_history=True)
    refs = [
        [(s.attributes or {})["enduser.pseudo.id"] for s in t.spans() if s.name == ASK]
        for t in (one, two)
    ]
    assert refs[0] == refs[1]  # the same user maps to the same pseudonym in every process
    assert refs[0][0] != refs[0][1]
    monkeypatch.setenv("LLM_SIDECAR_PSEUDONYM_KEY", "another-secret")
    other = setup_telemetry(settings.telemetry)
    assert other.observability.user_ref("alice") != refs[0][0]


# -- metrics -----------------------------------------------------------------------
