"""The OTLP/gRPC span exporter, with the sidecar's own wire encoding."""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan

from llm_sidecar.telemetry.otlp_encoding import encode_spans


class FastOTLPSpanExporter(OTLPSpanExporter):
    """The SDK's OTLP/gRPC exporter (endpoint, TLS, headers, retries from ``OTEL_*``),
    encoding batches with :mod:`llm_sidecar.telemetry.otlp_encoding`."""

    def _translate_data(self, data: Sequence[ReadableSpan]) -> ExportTraceServiceRequest:
        return encode_spans(data)
