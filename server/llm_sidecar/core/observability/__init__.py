"""Telemetry as the core records it, through the OpenTelemetry API only: the tracer,
the instruments and the privacy policy (:mod:`.instruments`), and the GenAI semantic
conventions of provider attempts (:mod:`.genai`)."""

from llm_sidecar.core.observability.instruments import NO_SPAN, NOOP, CurrentSpan, Observability

__all__ = ["NOOP", "NO_SPAN", "CurrentSpan", "Observability"]
