"""Fixtures shared by the integration tests of this package."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from llm_sidecar.config import Settings
from llm_sidecar.telemetry.setup import setup_telemetry
from tests.support.redis_server import RedisServer
from tests.support.telemetry import JsonLines, Traced, TracedFactory
from tests.support.upstream import FakeUpstream


@pytest.fixture
async def traced_factory(sidecar_factory) -> TracedFactory:
    async def make(settings: Settings) -> Traced:
        exporter = InMemorySpanExporter()
        reader = InMemoryMetricReader()
        handles = setup_telemetry(
            settings.telemetry, span_exporters=[exporter], metric_readers=[reader]
        )
        sidecar = await sidecar_factory(settings, telemetry=handles)
        return Traced(sidecar, handles, exporter, reader)

    return make


@pytest.fixture
async def pair(upstream_factory) -> tuple[FakeUpstream, FakeUpstream]:
    return await upstream_factory("primary"), await upstream_factory("fallback")


@pytest.fixture
def json_logs() -> Iterator[JsonLines]:
    handler = JsonLines()
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield handler
    root.removeHandler(handler)
    root.setLevel(previous)


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    """A Redis of this test's own, which it may kill and restart (persistent: AOF, fsync)."""
    server = RedisServer(persistent=True).start()
    yield server
    server.stop()
