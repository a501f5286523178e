"""Logs an operator can act on: one access line per call, request ids in and out, and a
line for each routing event, all without any content or raw user id."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path
from typing import Any

import grpc
import pytest
from llm_manager.v1 import llm_manager_pb2 as pb
from llm_manager.v1 import llm_manager_pb2_grpc as pb_grpc

from llm_manager_client import InvalidArgumentError, UnavailableError
from tests.support.failover import chain_settings, client_for
from tests.support.sidecar import (
    SidecarProcess,
    debug_process,
    free_port,
    make_settings,
    provider,
    write_process_config,
)
from tests.support.telemetry import JsonLines
from tests.support.upstream import FakeUpstream
from tests.support.waiting import eventually

SERVICE = "llm_manager.v1.LLMManagerService"
PROMPT = "zq-access-prompt-51c2"
USER = "zq-access-user-0b7e"


def access_lines(logs: JsonLines) -> list[dict[str, Any]]:
    entries = [json.loads(line) for line in logs.lines]
    return [e for e in entries if e["logger"] == "llm_sidecar.access"]


def routing_lines(logs: JsonLines) -> list[dict[str, Any]]:
    entries = [json.loads(line) for line in logs.lines]
    return [e for e in entries if e["logger"] == "llm_sidecar.routing"]


async def test_one_access_line_per_call_without_content(
    upstream: FakeUpstream, sidecar_factory, json_logs: JsonLines
) -> None:
    sidecar = await sidecar_factory(make_settings([provider("primary", upstream.url)]))
    async with await client_for(sidecar, USER, session_id="s") as client:
        full = await client.ask_full(PROMPT)
        hit = await client.ask_full(PROMPT, skip_history=True)
        hit = await client.ask_full(PROMPT, skip_history=True)
        chunks = [c async for c in client.ask_stream(PROMPT + " streamed")]
        with pytest.raises(InvalidArgumentError):
            await client.ask(PROMPT, model="no-such-model")
        await client.get_usage()
    lines = access_lines(json_logs)
    assert [line["method"] for line in lines] == [
        f"{SERVICE}/{m}" for m in ("AskFull", "AskFull", "AskFull", "AskStream", "Ask", "GetUsage")
    ]
    first, _, cached, streamed, refused, usage = lines
    assert first["status"] == "OK" and first["route"] == "m" and first["provider"] == "primary"
    assert first["attempts"] == 1 and first["cached"] is False
    assert first["prompt_tokens"] == full.metadata.usage.prompt_tokens > 0
    assert first["completion_tokens"] == full.metadata.usage.completion_tokens > 0
    assert first["request_id"] == full.metadata.request_id != ""
    assert first["duration_ms"] > 0
    assert cached["cached"] is True and cached["prompt_tokens"] == 0
    assert cached["request_id"] == hit.metadata.request_id
    assert streamed["cached"] is False and streamed["provider"] == "primary"
    assert streamed["request_id"] == chunks[-1].metadata.request_id
    assert refused["status"] == "INVALID_ARGUMENT" and refused["reason"] == "UNKNOWN_MODEL"
    assert usage["status"] == "OK" and "cached" not in usage
    # The user only as its pseudonym, the same on every line; no content anywhere.
    assert len({line["user"] for line in lines}) == 1
    assert lines[0]["user"].startswith("u_")
    everything = json.dumps(lines)
    assert PROMPT not in everything and USER not in everything


async def test_request_ids_are_returned_and_logged(
    upstream: FakeUpstream, sidecar_factory, json_logs: JsonLines
) -> None:
    sidecar = await sidecar_factory(make_settings([provider("primary", upstream.url)]))
    async with grpc.aio.insecure_channel(f"127.0.0.1:{sidecar.port}") as channel:
        stub = pb_grpc.LLMManagerServiceStub(channel)
        given = stub.Ask(
            pb.AskRequest(prompt="hi"), metadata=(("x-user-id", "a"), ("x-request-id", "req-42"))
        )
        await given
        assert ("x-request-id", "req-42") in tuple(await given.trailing_metadata())
        made = stub.Ask(pb.AskRequest(prompt="hi"), metadata=(("x-user-id", "a"),))
        await made
        made_id = dict(await made.trailing_metadata())["x-request-id"]
        assert made_id.startswith("sc-")
        failed = stub.Ask(pb.AskRequest(prompt=""), metadata=(("x-user-id", "a"),))
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await failed
        failed_id = dict(refused.value.trailing_metadata())["x-request-id"]
        assert failed_id.startswith("sc-") and failed_id != made_id
        stream = stub.AskStream(pb.AskRequest(prompt="hi"), metadata=(("x-user-id", "a"),))
        streamed_id = dict(await stream.initial_metadata())["x-request-id"]
        chunks = [chunk async for chunk in stream]
        assert chunks[-1].metadata.request_id == streamed_id
    logged = [line["request_id"] for line in access_lines(json_logs)]
    assert logged == ["req-42", made_id, failed_id, streamed_id]


@pytest.mark.parametrize(
    ("settings", "logged"),
    [({"access_log": False}, []), ({"access_log_sample_rate": 0.0}, ["INVALID_ARGUMENT"])],
    ids=["off", "failures-only"],
)
async def test_access_log_off_or_sampled(
    upstream: FakeUpstream,
    sidecar_factory,
    json_logs: JsonLines,
    settings: dict[str, Any],
    logged: list[str],
) -> None:
    sidecar = await sidecar_factory(
        make_settings([provider("primary", upstream.url)], telemetry=settings)
    )
    async with await client_for(sidecar) as client:
        for i in range(5):
            await client.ask(f"call {i}")
        with pytest.raises(InvalidArgumentError):
            await client.ask("x", model="nope")
    assert [line["status"] for line in access_lines(json_logs)] == logged


async def test_routing_events_are_logged_once_with_provider_and_route(
    pair: tuple[FakeUpstream, FakeUpstream], sidecar_factory, json_logs: JsonLines
) -> None:
    primary, fallback = pair
    settings = chain_settings(
        primary, fallback, failover={"failure_threshold": 2, "cooldown_seconds": 60}
    )
    sidecar = await sidecar_factory(settings)
    primary.mode, primary.error_status = "error", 401
    async with await client_for(sidecar) as client:
        for i in range(3):
            assert (await client.ask_full(f"q{i}")).metadata.provider == "fallback"
        fallback.mode, fallback.retry_after = "rate_limited", "7"
        with pytest.raises(UnavailableError):
            await client.ask("held")
    events = [
        (e["msg"], e.get("provider"), e.get("route"), e["level"]) for e in routing_lines(json_logs)
    ]
    auth = ("provider refused the credentials", "primary", "m", "WARNING")
    assert events.count(auth) == 2  # the two calls that reached it, then its circuit opened
    assert ("circuit open", "primary", "m", "WARNING") in events
    assert events.count(("circuit open", "primary", "m", "WARNING")) == 1
    failovers = [e for e in routing_lines(json_logs) if e["msg"] == "failover"]
    assert [(f["from_provider"], f["to_provider"], f["error_type"]) for f in failovers] == [
        ("primary", "fallback", "auth")
    ] * 2
    assert ("provider held (Retry-After)", "fallback", "m", "WARNING") in events


async def test_debug_level_shows_the_sidecar_not_the_libraries(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    process = debug_process(tmp_path, [provider("primary", upstream.url)])
    try:
        await process.wait_ready()
        port = process.port
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.LLMManagerServiceStub(channel)
            await stub.Ask(pb.AskRequest(prompt="hello"), metadata=(("x-user-id", "a"),))
            with pytest.raises(grpc.aio.AioRpcError):
                await stub.Ask(pb.AskRequest(prompt=""), metadata=(("x-user-id", "a"),))

        def access_logged() -> bool:
            return process.output().count(b'"llm_sidecar.access"') == 2

        await eventually(access_logged, what="the call's access line")
    finally:
        process.stop()
    entries = [json.loads(line) for line in process.output().splitlines() if line.startswith(b"{")]
    loggers = {entry["logger"] for entry in entries}
    assert loggers and all(name.startswith("llm_sidecar") for name in loggers), loggers
    assert any(entry["level"] == "DEBUG" for entry in entries)  # the sidecar's own


async def test_unreachable_collector_is_named_and_never_holds_up_shutdown(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    collector = free_port()  # nothing listens there
    config = write_process_config(
        tmp_path / "sidecar.json",
        [provider("primary", upstream.url)],
        telemetry={"log_format": "json"},
    )
    endpoint = f"http://127.0.0.1:{collector}"
    env = {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_METRICS_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "50",
        "OTEL_METRIC_EXPORT_INTERVAL": "100",
    }
    process = SidecarProcess(config, env=env)
    try:
        await process.wait_ready()
        port = process.port
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.LLMManagerServiceStub(channel)
            await stub.Ask(pb.AskRequest(prompt="traced"), metadata=(("x-user-id", "a"),))
        named = f"127.0.0.1:{collector}".encode()
        await eventually(lambda: named in process.output(), what="the endpoint in a log line")
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.LLMManagerServiceStub(channel)
            await stub.Ask(pb.AskRequest(prompt="buffered"), metadata=(("x-user-id", "a"),))
        started = time.monotonic()
        process.proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(process.proc.wait, 20)
        took = time.monotonic() - started
    finally:
        process.stop()
    assert code == 0
    # The SDK alone waited out its export timeout per provider (12.5 s measured).
    assert took < 4.0, f"shutdown took {took:.1f} s"
    exporter_lines = [
        json.loads(line)
        for line in process.output().splitlines()
        if line.startswith(b"{") and b"opentelemetry.exporter" in line
    ]
    assert exporter_lines and all("<withheld>" not in e["msg"] for e in exporter_lines)
