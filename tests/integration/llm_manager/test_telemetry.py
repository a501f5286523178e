"""OpenTelemetry traces, metrics and logs, read back from the SDK's in-memory readers.

Every test drives real RPCs through a real sidecar; spans are taken from what
the sidecar's tracer provider exported, so what is asserted is what an
operator's collector would receive.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Iterator
from concurrent import futures
from dataclasses import dataclass
from typing import Any

import aiohttp
import grpc
import pytest
from llm_manager.v1 import llm_manager_pb2 as pb
from llm_manager.v1 import llm_manager_pb2_grpc as pb_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from llm_manager_client import (
    AsyncLLMManagerClient,
    InvalidArgumentError,
    UnauthenticatedError,
    UserContext,
)
from llm_sidecar import Sidecar
from llm_sidecar.config import Settings
from llm_sidecar.telemetry.logs import JsonFormatter
from llm_sidecar.telemetry.setup import TelemetryHandles, setup_telemetry
from tests.support.sidecar import free_port, make_settings, provider
from tests.support.upstream import FakeUpstream

ASK = "llm_manager.v1.LLMManagerService/Ask"
SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
# Unique strings that must never leave the process unless content capture is on.
PROMPT_MARKER = "zq-prompt-marker-7f3a91"
USER_MARKER = "zq-user-marker-c41d07"


@dataclass
class Traced:
    """A sidecar with in-memory span and metric readers behind it."""

    sidecar: Sidecar
    handles: TelemetryHandles
    exporter: InMemorySpanExporter
    reader: InMemoryMetricReader

    def spans(self) -> list[ReadableSpan]:
        assert self.handles.tracer_provider is not None
        self.handles.tracer_provider.force_flush()
        return list(self.exporter.get_finished_spans())

    def trace_of(self, server_span_name: str, index: int = -1) -> list[ReadableSpan]:
        """All spans of the ``index``-th trace whose root is ``server_span_name``."""
        spans = self.spans()
        roots = [s for s in spans if s.name == server_span_name and s.kind is SpanKind.SERVER]
        trace_id = roots[index].context.trace_id
        return [s for s in spans if s.context.trace_id == trace_id]

    def metric_points(self, name: str) -> list[tuple[dict[str, Any], Any]]:
        data = self.reader.get_metrics_data()
        return [
            (dict(p.attributes or {}), p)
            for rm in (data.resource_metrics if data else [])
            for sm in rm.scope_metrics
            for m in sm.metrics
            if m.name == name
            for p in m.data.data_points
        ]

    def client(self, user: str = "alice", **ctx: Any) -> AsyncLLMManagerClient:
        return AsyncLLMManagerClient(
            f"127.0.0.1:{self.sidecar.port}", UserContext(user, **ctx), timeout=10
        )


TracedFactory = Callable[..., Awaitable[Traced]]


@pytest.fixture
async def traced_factory(sidecar_factory) -> TracedFactory:
    async def make(settings: Settings) -> Traced:
        exporter = InMemorySpanExporter()
        reader = InMemoryMetricReader()
        handles = setup_telemetry(
            settings.telemetry, span_exporters=[exporter], metric_readers=[reader]
        )
        sidecar = await sidecar_factory(settings, telemetry=handles)
        return Traced(sidecar, handles, exporter, reader)

    return make


@pytest.fixture
async def pair(upstream_factory) -> tuple[FakeUpstream, FakeUpstream]:
    return await upstream_factory("primary"), await upstream_factory("fallback")


def _chain(primary: FakeUpstream, fallback: FakeUpstream, **sections: Any) -> Settings:
    return make_settings(
        [provider("primary", primary.url), provider("fallback", fallback.url)],
        failover={"failure_threshold": 1, "cooldown_seconds": 30},
        **sections,
    )


def _children(spans: list[ReadableSpan], parent: ReadableSpan) -> list[ReadableSpan]:
    return [s for s in spans if s.parent is not None and s.parent.span_id == parent.context.span_id]


def _root(spans: list[ReadableSpan]) -> ReadableSpan:
    (root,) = [s for s in spans if s.kind is SpanKind.SERVER]
    return root


def _events(span: ReadableSpan, name: str) -> list[dict[str, Any]]:
    return [dict(e.attributes or {}) for e in span.events if e.name == name]


class _JsonLines(logging.Handler):
    """Formats at emit time, as the production handler does, so trace ids are live."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(JsonFormatter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def json_logs() -> Iterator[_JsonLines]:
    handler = _JsonLines()
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield handler
    root.removeHandler(handler)
    root.setLevel(previous)


# -- span trees ------------------------------------------------------------------


async def test_plain_ask_span_tree(upstream: FakeUpstream, traced_factory: TracedFactory) -> None:
    traced = await traced_factory(make_settings([provider("primary", upstream.url)]))
    async with traced.client("alice") as alice:
        await alice.ask("how many tokens is this")
    spans = traced.trace_of(ASK)
    root = _root(spans)
    assert root.parent is None
    assert root.attributes is not None
    assert root.attributes["rpc.system"] == "grpc"
    assert root.attributes["rpc.method"] == "Ask"
    assert root.attributes["rpc.service"] == "llm_manager.v1.LLMManagerService"
    assert root.attributes["enduser.pseudo.id"] == traced.handles.observability.user_ref("alice")
    assert root.attributes["llm_sidecar.cache.hit"] is False
    assert _events(root, "llm_sidecar.cache.lookup") == [{"llm_sidecar.cache.hit": False}]
    assert root.status.status_code is not StatusCode.ERROR

    (chat,) = _children(spans, root)
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
    root = _root(spans)
    assert spans == [root]  # a hit makes no provider attempt
    assert root.attributes is not None and root.attributes["llm_sidecar.cache.hit"] is True
    assert _events(root, "llm_sidecar.cache.lookup") == [{"llm_sidecar.cache.hit": True}]


async def test_failover_span_tree(pair, traced_factory: TracedFactory) -> None:
    primary, fallback = pair
    primary.mode = "error"
    traced = await traced_factory(_chain(primary, fallback))
    async with traced.client("alice") as alice:
        assert (await alice.ask_full("first")).metadata.provider == "fallback"
        assert (await alice.ask_full("second")).metadata.provider == "fallback"

    # First call: primary failed -> breaker opened -> fallback answered.
    first = traced.trace_of("llm_manager.v1.LLMManagerService/AskFull", 0)
    root = _root(first)
    failed, answered = sorted(_children(first, root), key=lambda s: s.start_time or 0)
    assert failed.name == "chat primary-model"
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.attributes is not None
    assert failed.attributes["error.type"] == "server_error"
    assert failed.attributes["http.response.status_code"] == 503
    assert _events(failed, "llm_sidecar.circuit.state_change") == [
        {"llm_sidecar.provider": "primary", "from": "closed", "to": "open"}
    ]
    assert answered.name == "chat fallback-model"
    assert answered.status.status_code is not StatusCode.ERROR
    assert answered.attributes is not None and "error.type" not in answered.attributes
    assert answered.attributes["gen_ai.response.id"].startswith("chatcmpl-fallback-")
    assert _events(root, "llm_sidecar.failover") == [
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
    root = _root(second)
    assert [s.name for s in _children(second, root)] == ["chat fallback-model"]
    assert _events(root, "llm_sidecar.circuit.skipped") == [{"llm_sidecar.provider": "primary"}]
    assert len(primary.chat_requests) == 1


async def test_stream_span_tree(upstream: FakeUpstream, traced_factory: TracedFactory) -> None:
    traced = await traced_factory(make_settings([provider("primary", upstream.url)]))
    async with traced.client("alice") as alice:
        chunks = [c async for c in alice.ask_stream("tell me a story in pieces")]
    assert chunks[-1].metadata is not None
    spans = traced.trace_of("llm_manager.v1.LLMManagerService/AskStream")
    root = _root(spans)
    (chat,) = _children(spans, root)
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
    root = _root(spans)
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
    for server_span in (inside, streamed):
        assert server_span.context.trace_id == span.get_span_context().trace_id
        assert server_span.parent is not None
        assert server_span.parent.span_id == span.get_span_context().span_id
    assert untraced.parent is None
    assert untraced.context.trace_id != span.get_span_context().trace_id


# -- privacy -----------------------------------------------------------------------


def _everything_exported(traced: Traced, logs: _JsonLines) -> str:
    spans = "\n".join(s.to_json() for s in traced.spans())
    data = traced.reader.get_metrics_data()
    metrics = data.to_json() if data is not None else ""
    return "\n".join([spans, metrics, *logs.lines])


async def test_no_prompt_or_raw_user_id_in_telemetry(
    pair, traced_factory: TracedFactory, json_logs: _JsonLines
) -> None:
    primary, fallback = pair
    traced = await traced_factory(_chain(primary, fallback, server={"max_prompt_chars": 2000}))
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
    root = _root(spans)
    (chat,) = _children(spans, root)
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


async def test_genai_rpc_and_sidecar_metrics(pair, traced_factory: TracedFactory) -> None:
    primary, fallback = pair
    traced = await traced_factory(_chain(primary, fallback))
    async with traced.client("alice") as alice:
        await alice.ask("counted", skip_history=True)
        await alice.ask("counted", skip_history=True)
        primary.mode = "error"
        await alice.ask("after failure", skip_history=True)

    reported = {"input": 0, "output": 0}
    for up in (primary, fallback):
        for rec in up.chat_requests:
            if up is primary and rec is primary.chat_requests[-1]:
                continue  # the failed attempt reported nothing
            text = up.answer_text(rec.body)
            usage = up.usage(rec.body, text)
            reported["input"] += usage["prompt_tokens"]
            reported["output"] += usage["completion_tokens"]
    tokens = traced.metric_points("gen_ai.client.token.usage")
    by_type = {
        kind: sum(p.sum for a, p in tokens if a["gen_ai.token.type"] == kind)
        for kind in ("input", "output")
    }
    assert by_type == reported
    assert {a["gen_ai.provider.name"] for a, _ in tokens} == {"openai"}
    assert {a["gen_ai.response.model"] for a, _ in tokens} == {"primary-model", "fallback-model"}

    durations = traced.metric_points("gen_ai.client.operation.duration")
    errors = [p.count for a, p in durations if a.get("error.type") == "server_error"]
    successes = sum(p.count for a, p in durations if "error.type" not in a)
    assert errors == [1] and successes == 2

    rpc = traced.metric_points("rpc.server.call.duration")
    asks = [p.count for a, p in rpc if a["rpc.method"] == "Ask" and a["rpc.grpc.status_code"] == 0]
    assert asks == [3]

    lookups = {
        a["llm_sidecar.cache.hit"]: p.value
        for a, p in traced.metric_points("llm_sidecar.cache.lookups")
    }
    assert lookups == {False: 2, True: 1}
    assert [p.value for _, p in traced.metric_points("llm_sidecar.failovers")] == [1]
    circuits = {
        a["llm_sidecar.provider"]: p.value
        for a, p in traced.metric_points("llm_sidecar.circuit.state")
    }
    assert circuits == {"primary": 2, "fallback": 0}
    assert [p.value for _, p in traced.metric_points("llm_sidecar.managers.active")] == [1]
    (memory,) = traced.metric_points("process.memory.usage")
    assert memory[1].value > 10 * 2**20


async def test_prometheus_endpoint_serves_metrics(upstream: FakeUpstream, sidecar_factory) -> None:
    port = free_port()
    settings = make_settings([provider("primary", upstream.url)], telemetry={"metrics_port": port})
    sidecar = await sidecar_factory(settings)
    async with AsyncLLMManagerClient(
        f"127.0.0.1:{sidecar.port}", UserContext(USER_MARKER), timeout=10
    ) as client:
        await client.ask(f"scraped {PROMPT_MARKER}")
    url = f"http://127.0.0.1:{port}/metrics"
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 200
        body = await response.text()
    assert "gen_ai_client_token_usage" in body
    assert "gen_ai_client_operation_duration" in body
    assert "llm_sidecar_managers_active" in body
    assert "rpc_server_call_duration" in body
    assert PROMPT_MARKER not in body and USER_MARKER not in body


# -- logs ----------------------------------------------------------------------------


async def test_json_logs_carry_trace_ids(
    upstream: FakeUpstream, traced_factory: TracedFactory, json_logs: _JsonLines
) -> None:
    traced = await traced_factory(make_settings([provider("primary", upstream.url)]))
    async with grpc.aio.insecure_channel(f"127.0.0.1:{traced.sidecar.port}") as channel:
        with pytest.raises(grpc.aio.AioRpcError):
            await pb_grpc.LLMManagerServiceStub(channel).Ask(
                pb.AskRequest(prompt="who am i"), metadata=(("x-user-id", "null"),), timeout=5
            )
    entries = [json.loads(line) for line in json_logs.lines]
    (failed,) = [e for e in entries if e["msg"] == "rpc failed"]
    (span,) = [s for s in traced.spans() if s.name == ASK]
    assert failed["trace_id"] == format(span.context.trace_id, "032x")
    assert failed["span_id"] == format(span.context.span_id, "016x")
    assert failed["grpc_code"] == "INVALID_ARGUMENT" and failed["level"] == "INFO"


# -- OTLP ----------------------------------------------------------------------------


class _Receiver(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self) -> None:
        self.requests: list[trace_service_pb2.ExportTraceServiceRequest] = []

    def Export(self, request, context):
        self.requests.append(request)
        return trace_service_pb2.ExportTraceServiceResponse()


@pytest.fixture
def otlp_receiver() -> Iterator[tuple[str, _Receiver]]:
    """A real OTLP/gRPC TraceService in a thread pool (the exporter blocks while it sends)."""
    receiver = _Receiver()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(receiver, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"http://127.0.0.1:{port}", receiver
    server.stop(None)


async def test_spans_export_to_a_real_otlp_receiver(
    pair,
    sidecar_factory,
    otlp_receiver: tuple[str, _Receiver],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    endpoint, receiver = otlp_receiver
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_INSECURE", "true")
    primary, fallback = pair
    primary.mode = "error"
    settings = _chain(primary, fallback, telemetry={"service_name": "sidecar-under-test"})
    handles = setup_telemetry(settings.telemetry)
    sidecar = await sidecar_factory(settings, telemetry=handles)
    async with AsyncLLMManagerClient(
        f"127.0.0.1:{sidecar.port}", UserContext(USER_MARKER), timeout=10
    ) as client:
        await client.ask(f"exported {PROMPT_MARKER}")
    assert handles.tracer_provider is not None
    assert handles.tracer_provider.force_flush(10_000)

    spans = [
        (resource_spans.resource, span)
        for request in receiver.requests
        for resource_spans in request.resource_spans
        for scope in resource_spans.scope_spans
        for span in scope.spans
    ]
    names = sorted(span.name for _, span in spans)
    assert names == sorted([ASK, "chat fallback-model", "chat primary-model"])
    services = {
        attr.value.string_value
        for resource, _ in spans
        for attr in resource.attributes
        if attr.key == "service.name"
    }
    assert services == {"sidecar-under-test"}
    (failed,) = [span for _, span in spans if span.name == "chat primary-model"]
    attrs = {a.key: a.value for a in failed.attributes}
    assert attrs["error.type"].string_value == "server_error"
    (server,) = [span for _, span in spans if span.name == ASK]
    assert [e.name for e in server.events] == [
        "llm_sidecar.cache.lookup",
        "llm_sidecar.failover",
    ]
    wire = b"".join(r.SerializeToString() for r in receiver.requests)
    assert PROMPT_MARKER.encode() not in wire and USER_MARKER.encode() not in wire


@pytest.fixture(autouse=True)
def _no_leaked_exporter_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # The default needs no collector; tests that want one set it themselves.
    for name in ("OTEL_TRACES_EXPORTER", "OTEL_METRICS_EXPORTER"):
        monkeypatch.delenv(name, raising=False)


async def test_ratio_sampling_still_follows_a_sampled_caller(
    upstream: FakeUpstream, traced_factory: TracedFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A sampler that records nothing of its own accord: only callers' sampled
    # traces are recorded, whole (server span and attempt span).
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0")
    traced = await traced_factory(make_settings([provider("primary", upstream.url)]))
    trace_id = "0af7651916cd43dd8448eb211c80319c"
    async with grpc.aio.insecure_channel(f"127.0.0.1:{traced.sidecar.port}") as channel:
        stub = pb_grpc.LLMManagerServiceStub(channel)
        for i in range(5):
            await stub.Ask(pb.AskRequest(prompt=f"unsampled {i}"), metadata=(("x-user-id", "a"),))
        for flags, prompt in (("01", "sampled by the caller"), ("00", "declined by the caller")):
            await stub.Ask(
                pb.AskRequest(prompt=prompt),
                metadata=(
                    ("x-user-id", "a"),
                    ("traceparent", f"00-{trace_id}-b7ad6b7169203331-{flags}"),
                ),
            )
    assert len(upstream.chat_requests) == 7
    spans = traced.spans()
    assert sorted(s.name for s in spans) == ["chat primary-model", ASK]
    assert {format(s.context.trace_id, "032x") for s in spans} == {trace_id}
