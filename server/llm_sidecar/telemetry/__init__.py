"""OpenTelemetry SDK wiring and structured logging (the core sees only the API)."""

from llm_sidecar.telemetry.logs import JsonFormatter, configure_logging
from llm_sidecar.telemetry.setup import TelemetryHandles, setup_telemetry

__all__ = ["JsonFormatter", "TelemetryHandles", "configure_logging", "setup_telemetry"]
