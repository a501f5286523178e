"""The sidecar's OTLP span encoding against the SDK's own encoder, message for message."""

from __future__ import annotations

import enum

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans as sdk_encode
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
    set_span_in_context,
)

from llm_sidecar.telemetry.otlp_encoding import encode_request, encode_spans


class Color(enum.StrEnum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 3


VALUES = {
    "s": "text",
    "unicode": "grüße ✓",
    "empty": "",
    "t": True,
    "f": False,
    "zero": 0,
    "i": 42,
    "neg": -7,
    "big": 2**62,
    "fl": 0.25,
    "negfl": -1.5,
    "strs": ("a", "b"),
    "ints": (1, -2, 3),
    "bools": (True, False),
    "floats": (0.5, 1.0),
    "long": "x" * 300,
    "str_subclass": Color.RED,
    "int_subclass": Level.HIGH,
}


def _spans() -> list[ReadableSpan]:
    exporter = InMemorySpanExporter()
    spans: list[ReadableSpan] = []
    for service in ("one", "two"):
        provider = TracerProvider(
            resource=Resource.create({"service.name": service, "n": 1}),
            span_limits=SpanLimits(max_span_attributes=20, max_events=2, max_links=1),
        )
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        for scope in ("llm_sidecar", "other"):
            tracer = provider.get_tracer(scope, "1.2.3", schema_url="https://example/schema")
            remote = SpanContext(
                0x4BF92F3577B34DA6A3CE929D0E0E4736,
                0x00F067AA0BA902B7,
                is_remote=True,
                trace_flags=TraceFlags(1),
                trace_state=TraceState([("vendor", "value")]),
            )
            with tracer.start_as_current_span(
                "server",
                context=set_span_in_context(NonRecordingSpan(remote)),
                kind=SpanKind.SERVER,
            ) as root:
                root.set_attributes(VALUES)
                for i in range(4):  # more than max_events: some are dropped
                    root.add_event(f"event {i}", {"k": i, "hit": i % 2 == 0})
                for kind in SpanKind:
                    with tracer.start_as_current_span(
                        f"child {kind.name}",
                        kind=kind,
                        links=[Link(remote, {"why": "because"}), Link(remote)],
                    ) as child:
                        child.set_status(Status(StatusCode.ERROR, "timeout"))
                        child.set_attribute("same", 1)  # same key, int then bool below
                with tracer.start_as_current_span("ok") as ok:
                    ok.set_status(Status(StatusCode.OK))
                    for i in range(25):  # more than max_span_attributes
                        ok.set_attribute(f"a{i}", i)
                    ok.set_attribute("same", True)
        spans.extend(exporter.get_finished_spans())
        exporter.clear()
    return spans


def test_encoding_matches_the_sdk_encoder() -> None:
    spans = _spans()
    assert len(spans) >= 20
    ours = encode_spans(spans)
    theirs = sdk_encode(spans)
    assert ours == theirs
    # Byte for byte too, once both are put in canonical field order.
    assert ours.SerializeToString(deterministic=True) == theirs.SerializeToString(
        deterministic=True
    )


def test_encoding_is_stable_across_calls_and_cache_states() -> None:
    spans = _spans()
    first = encode_request(spans)
    assert encode_request(spans) == first
    assert encode_request(list(reversed(spans))) != first  # order is kept, not sorted
    parsed = ExportTraceServiceRequest.FromString(first)
    values = {
        kv.key: kv.value
        for rs in parsed.resource_spans[:1]
        for ss in rs.scope_spans[:1]
        for span in ss.spans
        if span.name == "ok"
        for kv in span.attributes
    }
    assert values["same"].bool_value is True and values["same"].WhichOneof("value") == "bool_value"


def test_empty_batch() -> None:
    assert encode_spans([]) == sdk_encode([])


def test_the_exporter_uses_this_encoding() -> None:
    # The hook overridden is the SDK exporter's own; if a release renamed it,
    # the override would silently stop applying.
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    from llm_sidecar.telemetry.exporters import FastOTLPSpanExporter

    assert "_translate_data" in vars(OTLPSpanExporter)
    spans = _spans()
    encoded: list[int] = []

    class Counting(FastOTLPSpanExporter):
        def _translate_data(self, data):  # type: ignore[no-untyped-def]
            encoded.append(len(data))
            return super()._translate_data(data)

    # Nothing listens on port 9: the export fails, but only after the batch was encoded,
    # through the hook, on the SDK's own export path.
    exporter = Counting(endpoint="http://127.0.0.1:9", insecure=True, timeout=0.3)
    try:
        assert exporter._translate_data(spans) == sdk_encode(spans)
        encoded.clear()
        exporter.export(spans)
        assert encoded and encoded[0] == len(spans)
    finally:
        exporter.shutdown()
