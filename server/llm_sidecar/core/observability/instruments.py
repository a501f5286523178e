"""Tracing and metric instruments the core records into, through the OpenTelemetry API.

The core only sees the API; which SDK, exporters and readers sit behind it is
decided by :mod:`llm_sidecar.telemetry`. With nothing configured every call is
a no-op. Span and metric attributes follow the GenAI semantic conventions and
never carry prompt or completion text unless ``capture_content`` is set.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from hashlib import blake2b
from types import TracebackType
from typing import Any, Literal

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.context import Context
from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import INVALID_SPAN, Span, SpanKind, TracerProvider

UserIdMode = Literal["pseudonym", "raw", "none"]

_DURATION_BUCKETS = [
    0.001,
    0.0025,
    0.005,
    0.01,
    0.02,
    0.04,
    0.08,
    0.16,
    0.32,
    0.64,
    1.28,
    2.56,
    5.12,
    10.24,
    20.48,
    40.96,
    81.92,
]
_TOKEN_BUCKETS = [1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304]


class CurrentSpan:
    """Makes a span current for a block and ends it after.

    The API's ``start_as_current_span`` does the same through two generator
    context managers; this plain class costs a measurable part less per span
    on the request path (see bench_tracing). Exceptions are neither recorded
    nor turned into a status: callers set ``error.type`` and status themselves,
    without exception messages, which could carry user text.
    """

    __slots__ = ("_span", "_token")

    def __init__(self, span: Span) -> None:
        self._span = span
        self._token: object = None

    def __enter__(self) -> Span:
        self._token = otel_context.attach(trace.set_span_in_context(self._span))
        return self._span

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        otel_context.detach(self._token)  # type: ignore[arg-type]
        self._span.end()


class _NoSpan:
    """What :meth:`Observability.span` returns with tracing off: nothing at all."""

    __slots__ = ()

    def __enter__(self) -> Span:
        return INVALID_SPAN

    def __exit__(self, *exc: object) -> None:
        return None


NO_SPAN = _NoSpan()
"""A span context manager that records nothing."""
_PSEUDONYM_CACHE_LIMIT = 65536


class Observability:
    """Tracer, instruments and privacy policy shared by the core's components."""

    def __init__(
        self,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
        *,
        capture_content: bool = False,
        user_id_mode: UserIdMode = "pseudonym",
        pseudonym_key: bytes = b"",
    ) -> None:
        self.capture_content = capture_content
        self.user_id_mode = user_id_mode
        self._pseudonym_key = pseudonym_key or b"llm-sidecar-default-pseudonym-key"
        # HMAC per request showed in profiles; a user's pseudonym never changes.
        self._refs: dict[str, str] = {}
        self.tracing = tracer_provider is not None
        self.tracer = (tracer_provider or trace.NoOpTracerProvider()).get_tracer("llm_sidecar")
        meter = (meter_provider or metrics.NoOpMeterProvider()).get_meter("llm_sidecar")
        self.meter = meter
        self._histograms(meter)
        self._counters(meter)

    def _histograms(self, meter: metrics.Meter) -> None:
        self.operation_duration = meter.create_histogram(
            "gen_ai.client.operation.duration",
            unit="s",
            description="GenAI operation duration",
            explicit_bucket_boundaries_advisory=_DURATION_BUCKETS,
        )
        self.token_usage = meter.create_histogram(
            "gen_ai.client.token.usage",
            unit="{token}",
            description="Measures number of input and output tokens used",
            explicit_bucket_boundaries_advisory=_TOKEN_BUCKETS,
        )
        self.rpc_duration = meter.create_histogram(
            "rpc.server.call.duration",
            unit="s",
            description="Duration of gRPC calls served",
            explicit_bucket_boundaries_advisory=_DURATION_BUCKETS,
        )
        self.http_duration = meter.create_histogram(
            "http.server.request.duration",
            unit="s",
            description="Duration of HTTP requests served",
            explicit_bucket_boundaries_advisory=_DURATION_BUCKETS,
        )

    def _counters(self, meter: metrics.Meter) -> None:
        self.cache_lookups = meter.create_counter(
            "llm_sidecar.cache.lookups", unit="{lookup}", description="Response cache lookups"
        )
        self.failovers = meter.create_counter(
            "llm_sidecar.failovers", unit="{failover}", description="Moves to a fallback provider"
        )
        self.alerts = meter.create_counter(
            "llm_sidecar.resource.alerts", unit="{alert}", description="Resource alerts raised"
        )
        self.quota_refusals = meter.create_counter(
            "llm_sidecar.quota.refusals",
            unit="{request}",
            description="Calls refused by a per-user quota (labelled by quota name only)",
        )
        self.quota_fail_open = meter.create_counter(
            "llm_sidecar.quota.fail_open",
            unit="{request}",
            description="Calls admitted by this sidecar alone while the quota store was down",
        )
        self.tool_calls = meter.create_counter(
            "llm_sidecar.mcp.tool_calls",
            unit="{call}",
            description="MCP tool calls through the gateway, by server and outcome",
        )
        self.guard_detections = meter.create_counter(
            "llm_sidecar.guardrails.detections",
            unit="{value}",
            description="Values the guardrails found, by category and action (counts only)",
        )
        self.cost = meter.create_counter(
            "llm_sidecar.cost",
            unit="{micro_usd}",
            description="What priced providers billed, in micro-USD, by route and provider",
        )

    def span(
        self,
        name: str,
        kind: SpanKind,
        attributes: Mapping[str, Any],
        parent: Context | None = None,
    ) -> CurrentSpan | _NoSpan:
        """A span, current inside the ``with`` block; nothing when tracing is off."""
        if not self.tracing:
            return NO_SPAN
        return CurrentSpan(
            self.tracer.start_span(
                name,
                context=parent,
                kind=kind,
                attributes=attributes,
                record_exception=False,
                set_status_on_exception=False,
            )
        )

    def in_recorded_trace(self) -> bool:
        """Whether the current span records. Attempt spans are only started under a
        recorded request span: under an unsampled one they would record nothing
        either (parent-based sampling), and skipping them saves their set-up."""
        return self.tracing and trace.get_current_span().is_recording()

    def keyed(self, *parts: str) -> str:
        """A keyed pseudonym of ``parts`` for a third party (a provider's cache key): stable
        across pods that share the key, and never the raw values, whatever user_id_mode."""
        data = "\x1f".join(parts).encode("utf-8")
        return hmac.new(self._pseudonym_key, data, blake2b).hexdigest()[:32]

    def user_ref(self, user_id: str) -> str:
        """The form of a user id that may appear in telemetry."""
        if self.user_id_mode == "raw":
            return user_id
        if self.user_id_mode == "none":
            return ""
        ref = self._refs.get(user_id)
        if ref is None:
            digest = hmac.new(self._pseudonym_key, user_id.encode("utf-8"), blake2b).hexdigest()
            ref = "u_" + digest[:24]
            if len(self._refs) >= _PSEUDONYM_CACHE_LIMIT:
                self._refs.clear()
            self._refs[user_id] = ref
        return ref


NOOP = Observability()
