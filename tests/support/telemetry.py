"""Scaffolding of the telemetry tests: a sidecar with in-memory span and metric readers."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from llm_manager_client import (
    AsyncLLMManagerClient,
    UserContext,
)
from llm_sidecar import Sidecar
from llm_sidecar.config import Settings
from llm_sidecar.telemetry.logs import JsonFormatter
from llm_sidecar.telemetry.setup import TelemetryHandles
from tests.support.sidecar import make_settings, provider
from tests.support.upstream import FakeUpstream

ASK = "llm_manager.v1.LLMManagerService/Ask"
SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
# Unique strings that must never leave the process unless content capture is on.
PROMPT_MARKER = "zq-prompt-marker-7f3a91"
USER_MARKER = "zq-user-marker-c41d07"


@dataclass
class Traced:
    """A sidecar with in-memory span and metric readers behind it."""

    sidecar: Sidecar
    handles: TelemetryHandles
    exporter: InMemorySpanExporter
    reader: InMemoryMetricReader

    def spans(self) -> list[ReadableSpan]:
        assert self.handles.tracer_provider is not None
        self.handles.tracer_provider.force_flush()
        return list(self.exporter.get_finished_spans())

    def trace_of(self, server_span_name: str, index: int = -1) -> list[ReadableSpan]:
        """All spans of the ``index``-th trace whose root is ``server_span_name``."""
        spans = self.spans()
        roots = [s for s in spans if s.name == server_span_name and s.kind is SpanKind.SERVER]
        trace_id = roots[index].context.trace_id
        return [s for s in spans if s.context.trace_id == trace_id]

    def metric_points(self, name: str) -> list[tuple[dict[str, Any], Any]]:
        data = self.reader.get_metrics_data()
        return [
            (dict(p.attributes or {}), p)
            for rm in (data.resource_metrics if data else [])
            for sm in rm.scope_metrics
            for m in sm.metrics
            if m.name == name
            for p in m.data.data_points
        ]

    def client(self, user: str = "alice", **ctx: Any) -> AsyncLLMManagerClient:
        return AsyncLLMManagerClient(
            f"127.0.0.1:{self.sidecar.port}", UserContext(user, **ctx), timeout=10
        )


TracedFactory = Callable[..., Awaitable[Traced]]


def chain_settings(primary: FakeUpstream, fallback: FakeUpstream, **sections: Any) -> Settings:
    return make_settings(
        [provider("primary", primary.url), provider("fallback", fallback.url)],
        failover={"failure_threshold": 1, "cooldown_seconds": 30},
        **sections,
    )


def children(spans: list[ReadableSpan], parent: ReadableSpan) -> list[ReadableSpan]:
    return [s for s in spans if s.parent is not None and s.parent.span_id == parent.context.span_id]


def server_span(spans: list[ReadableSpan]) -> ReadableSpan:
    (root,) = [s for s in spans if s.kind is SpanKind.SERVER]
    return root


def events(span: ReadableSpan, name: str) -> list[dict[str, Any]]:
    return [dict(e.attributes or {}) for e in span.events if e.name == name]


class JsonLines(logging.Handler):
    """Formats at emit time, as the production handler does, so trace ids are live."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(JsonFormatter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))
