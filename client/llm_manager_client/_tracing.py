"""Trace propagation: the caller's active trace rides along as ``traceparent``.

OpenTelemetry is optional for client users; without it, or with no active
span, the metadata goes out unchanged.
"""

from __future__ import annotations

try:
    from opentelemetry import propagate
except ImportError:  # pragma: no cover - exercised only where OpenTelemetry is absent
    propagate = None  # type: ignore[assignment]

Metadata = tuple[tuple[str, str], ...]


def outgoing(metadata: Metadata) -> Metadata:
    """``metadata`` plus the W3C trace context of the current span, if any."""
    if propagate is None:
        return metadata
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    if not carrier:
        return metadata
    return metadata + tuple(carrier.items())
