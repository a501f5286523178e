"""The OTLP exporters the sidecar builds from ``OTEL_*`` variables.

Each remembers whether its last export failed, so a shutdown does not wait for a
collector that is known to be unreachable. The OTLP/gRPC span exporter also
encodes batches with :mod:`llm_sidecar.telemetry.otlp_encoding`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
    OTLPMetricExporter as HttpOTLPMetricExporter,
)
from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
    OTLPSpanExporter as HttpOTLPSpanExporter,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan

from llm_sidecar.telemetry.otlp_encoding import encode_spans


class _RemembersFailure:
    """Mixin: ``failing`` is true while the last export did not succeed."""

    failing = False
    _stopped = False

    def export(self, *args: Any, **kwargs: Any) -> Any:
        result = super().export(*args, **kwargs)  # type: ignore[misc]
        self.failing = getattr(result, "name", "") != "SUCCESS"
        return result

    def shutdown(self, *args: Any, **kwargs: Any) -> None:
        # Stopped early by the sidecar's bounded shutdown, then again by its provider:
        # the second time is not worth the SDK's warning.
        if not self._stopped:
            self._stopped = True
            super().shutdown(*args, **kwargs)  # type: ignore[misc]


class FastOTLPSpanExporter(_RemembersFailure, OTLPSpanExporter):
    """The SDK's OTLP/gRPC exporter (endpoint, TLS, headers, retries from ``OTEL_*``),
    encoding batches with :mod:`llm_sidecar.telemetry.otlp_encoding`."""

    def _translate_data(self, data: Sequence[ReadableSpan]) -> ExportTraceServiceRequest:
        return encode_spans(data)


class HttpSpanExporter(_RemembersFailure, HttpOTLPSpanExporter):
    """The SDK's OTLP/HTTP span exporter."""


class GrpcMetricExporter(_RemembersFailure, OTLPMetricExporter):
    """The SDK's OTLP/gRPC metric exporter."""


class HttpMetricExporter(_RemembersFailure, HttpOTLPMetricExporter):
    """The SDK's OTLP/HTTP metric exporter."""
