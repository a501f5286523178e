"""Tracing and metric instruments the core records into, through the OpenTelemetry API.

The core only sees the API; which SDK, exporters and readers sit behind it is
decided by :mod:`llm_sidecar.telemetry`. With nothing configured every call is
a no-op. Span and metric attributes follow the GenAI semantic conventions and
never carry prompt or completion text unless ``capture_content`` is set.
"""

from __future__ import annotations

import hmac
from hashlib import blake2b
from typing import Literal

from opentelemetry import metrics, trace
from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import TracerProvider

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
        self.tracing = tracer_provider is not None
        self.tracer = (tracer_provider or trace.NoOpTracerProvider()).get_tracer("llm_sidecar")
        meter = (meter_provider or metrics.NoOpMeterProvider()).get_meter("llm_sidecar")
        self.meter = meter
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
        self.cache_lookups = meter.create_counter(
            "llm_sidecar.cache.lookups", unit="{lookup}", description="Response cache lookups"
        )
        self.failovers = meter.create_counter(
            "llm_sidecar.failovers", unit="{failover}", description="Moves to a fallback provider"
        )
        self.alerts = meter.create_counter(
            "llm_sidecar.resource.alerts", unit="{alert}", description="Resource alerts raised"
        )

    def user_ref(self, user_id: str) -> str:
        """The form of a user id that may appear in telemetry."""
        if self.user_id_mode == "raw":
            return user_id
        if self.user_id_mode == "none":
            return ""
        digest = hmac.new(self._pseudonym_key, user_id.encode("utf-8"), blake2b).hexdigest()
        return "u_" + digest[:24]


NOOP = Observability()
