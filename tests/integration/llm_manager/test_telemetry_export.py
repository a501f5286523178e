"""OpenTelemetry metrics, logs and export: what an operator's collector receives."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent import futures

import aiohttp
import grpc
import pytest
from llm_manager.v1 import llm_manager_pb2 as pb
from llm_manager.v1 import llm_manager_pb2_grpc as pb_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from llm_manager_client import (
    AsyncLLMManagerClient,
    UserContext,
)
from llm_sidecar.telemetry.setup import setup_telemetry
from tests.support.sidecar import free_port, make_settings, provider
from tests.support.telemetry import (
    ASK,
    PROMPT_MARKER,
    USER_MARKER,
    JsonLines,
    TracedFactory,
    chain_settings,
)
from tests.support.upstream import FakeUpstream


async def test_genai_rpc_and_sidecar_metrics(pair, traced_factory: TracedFactory) -> None:
    primary, fallback = pair
    traced = await traced_factory(chain_settings(primary, fallback))
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
    upstream: FakeUpstream, traced_factory: TracedFactory, json_logs: JsonLines
) -> None:
    traced = await traced_factory(make_settings([provider("primary", upstream.url)]))
    async with grpc.aio.insecure_channel(f"127.0.0.1:{traced.sidecar.port}") as channel:
        with pytest.raises(grpc.aio.AioRpcError):
            await pb_grpc.LLMManagerServiceStub(channel).Ask(
                pb.AskRequest(prompt="who am i"), metadata=(("x-user-id", "null"),), timeout=5
            )
    entries = [json.loads(line) for line in json_logs.lines]
    (failed,) = [e for e in entries if e["logger"] == "llm_sidecar.access"]
    (span,) = [s for s in traced.spans() if s.name == ASK]
    assert failed["trace_id"] == format(span.context.trace_id, "032x")
    assert failed["span_id"] == format(span.context.span_id, "016x")
    assert failed["status"] == "INVALID_ARGUMENT" and failed["level"] == "INFO"
    assert failed["reason"] == "INVALID_USER_CONTEXT"


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
    settings = chain_settings(primary, fallback, telemetry={"service_name": "sidecar-under-test"})
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
