"""OpenTelemetry SDK wiring: providers and exporters from the standard OTEL_* variables.

``OTEL_TRACES_EXPORTER`` and ``OTEL_METRICS_EXPORTER`` take ``otlp``,
``console`` or ``none`` (the default here, so nothing needs a collector);
``OTEL_EXPORTER_OTLP_PROTOCOL`` picks ``grpc`` (default) or ``http/protobuf``;
endpoints, headers and sampling follow the SDK's own variables. A Prometheus
``/metrics`` endpoint is served when ``telemetry.metrics_port`` is set.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter, MeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    MetricExporter,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

from llm_sidecar.config import TelemetrySettings
from llm_sidecar.core.observability import Observability

#: Longest a shutdown waits for telemetry still buffered to reach its collector.
FLUSH_SECONDS = 1.0


@dataclass
class TelemetryHandles:
    """What was built, so it can be flushed and shut down."""

    observability: Observability
    tracer_provider: TracerProvider | None = None
    meter_provider: MeterProvider | None = None
    extra: list[Any] = field(default_factory=list)
    #: The exporters behind the providers, stopped before the providers are.
    exporters: list[Any] = field(default_factory=list)

    def shutdown(self, flush_seconds: float = FLUSH_SECONDS) -> None:
        """Flush what is buffered for at most ``flush_seconds``, then stop exporting.

        The SDK's own shutdown exports what is left and retries an unreachable
        collector for up to its export timeout (10 s) per provider. Here a
        collector that failed its last export is not waited for at all, and any
        other only as long as the bound: stopping the exporters first ends their
        retries, so the providers' shutdown drops what is left instead of waiting.
        """
        providers = [p for p in (self.tracer_provider, self.meter_provider) if p is not None]
        if providers and not any(getattr(e, "failing", False) for e in self.exporters):
            # The SDK's force_flush waits for an export in progress whatever its timeout
            # says, so it runs aside and is waited for only as long as the bound.
            flush = threading.Thread(
                target=lambda: [p.force_flush() for p in providers],
                name="telemetry-flush",
                daemon=True,
            )
            flush.start()
            flush.join(flush_seconds)
        for exporter in self.exporters:
            exporter.shutdown()
        if self.tracer_provider is not None:
            self.tracer_provider.shutdown()
        if self.meter_provider is not None:
            self.meter_provider.shutdown()
        for item in self.extra:
            item.shutdown()
            item.server_close()


def _protocol() -> str:
    return os.environ.get(
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    )


def span_exporter(name: str) -> SpanExporter | None:
    """The SDK exporter an ``OTEL_TRACES_EXPORTER`` value names, or None."""
    if name == "console":
        return ConsoleSpanExporter()
    if name == "otlp":
        from llm_sidecar.telemetry.exporters import FastOTLPSpanExporter, HttpSpanExporter

        return HttpSpanExporter() if _protocol().startswith("http") else FastOTLPSpanExporter()
    return None


def metric_exporter(name: str) -> MetricExporter | None:
    """The SDK exporter an ``OTEL_METRICS_EXPORTER`` value names, or None."""
    if name == "console":
        return ConsoleMetricExporter()
    if name == "otlp":
        from llm_sidecar.telemetry.exporters import GrpcMetricExporter, HttpMetricExporter

        return HttpMetricExporter() if _protocol().startswith("http") else GrpcMetricExporter()
    return None


def _pseudonym_key(settings: TelemetrySettings) -> bytes:
    key = os.environ.get(settings.pseudonym_key_env, "")
    return key.encode() if key else os.urandom(32)


def setup_telemetry(
    settings: TelemetrySettings,
    *,
    span_exporters: list[SpanExporter] | None = None,
    metric_readers: list[MetricReader] | None = None,
) -> TelemetryHandles:
    """Build the SDK behind the core's :class:`Observability`.

    ``span_exporters`` and ``metric_readers`` add to what the environment asks
    for (tests pass in-memory ones).
    """
    resource = Resource.create({"service.name": settings.service_name})
    exporters = list(span_exporters or [])
    env_exporter = span_exporter(os.environ.get("OTEL_TRACES_EXPORTER", "none").strip().lower())
    if env_exporter is not None:
        exporters.append(env_exporter)
    readers = list(metric_readers or [])
    env_metrics = metric_exporter(os.environ.get("OTEL_METRICS_EXPORTER", "none").strip().lower())
    if env_metrics is not None:
        readers.append(PeriodicExportingMetricReader(env_metrics))
    extra: list[Any] = []
    if settings.metrics_port >= 0:
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from prometheus_client import start_http_server

        server, _thread = start_http_server(settings.metrics_port, addr=settings.metrics_host)
        extra.append(server)
        readers.append(PrometheusMetricReader())

    tracer_provider = None
    if settings.tracing and exporters:
        # No exit hook: the sidecar shuts its providers down itself, bounded (the SDK's
        # hook would retry an unreachable collector at interpreter exit, unbounded).
        tracer_provider = TracerProvider(resource=resource, shutdown_on_exit=False)
        for exporter in exporters:
            tracer_provider.add_span_processor(BatchSpanProcessor(exporter))
    meter_provider = None
    if readers:
        # Exemplars (trace-linked samples on every histogram point) doubled the
        # cost of a metric record in profiles; on only when asked for through
        # the standard OTEL_METRICS_EXEMPLAR_FILTER variable.
        exemplars = (
            None if "OTEL_METRICS_EXEMPLAR_FILTER" in os.environ else AlwaysOffExemplarFilter()
        )
        meter_provider = MeterProvider(
            resource=resource,
            metric_readers=readers,
            exemplar_filter=exemplars,
            shutdown_on_exit=False,
        )
    observability = Observability(
        tracer_provider,
        meter_provider,
        capture_content=settings.capture_content,
        user_id_mode=settings.user_id_mode,
        pseudonym_key=_pseudonym_key(settings),
    )
    built = [e for e in (env_exporter, env_metrics) if e is not None]
    return TelemetryHandles(observability, tracer_provider, meter_provider, extra, built)
