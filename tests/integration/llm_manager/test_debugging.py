"""What an operator debugging a sidecar reads: a refusal that names each provider tried
and how it failed, and, at ``telemetry.log_level = "debug"``, the sidecar's decisions
(cache, admission, the provider tried and the one that answered), each line carrying
the call's request id, and never any content."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from llm_manager_client import UnavailableError
from tests.support.failover import client_for
from tests.support.sidecar import (
    debug_process,
    free_port,
    make_settings,
    provider,
)
from tests.support.upstream import FakeUpstream
from tests.support.waiting import eventually

PROMPT = "zq-debug-prompt-93be"
USER = "zq-debug-user-51aa"


async def chat(base_url: str, text: str, **headers: str) -> tuple[int, dict[str, Any]]:
    body = {"model": "m", "messages": [{"role": "user", "content": text}]}
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{base_url}/v1/chat/completions", json=body, headers={"x-user-id": USER, **headers}
        ) as reply,
    ):
        return reply.status, await reply.json()


async def test_a_503_names_each_provider_tried_and_how_it_failed(
    upstream_factory, sidecar_factory
) -> None:
    broken = await upstream_factory("broken", mode="error", error_status=502)
    slow = await upstream_factory("slow", mode="hang")
    closed = f"http://127.0.0.1:{free_port()}/v1"
    chain = [
        provider("down", closed),
        provider("broken", broken.url),
        provider("slow", slow.url, timeout=0.3),
    ]
    failover = {"failure_threshold": 1, "cooldown_seconds": 60}
    sidecar = await sidecar_factory(make_settings(chain, failover=failover))

    status, body = await chat(sidecar.http_url, PROMPT)
    assert status == 503
    message = body["error"]["message"]
    assert message == (
        "no provider of 'm' could answer: down (connection); broken (HTTP 502); slow (timeout)"
    )
    # Every circuit opened on the first failures: the next call says so, over gRPC too.
    async with await client_for(sidecar, USER) as client:
        with pytest.raises(UnavailableError) as refused:
            await client.ask(PROMPT)
    assert str(refused.value).endswith(
        "could answer: down (circuit_open); broken (circuit_open); slow (circuit_open)"
    ), str(refused.value)
    for said in (message, str(refused.value)):
        assert "127.0.0.1" not in said and PROMPT not in said


def lines_of(output: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.splitlines() if line.startswith(b"{")]


async def test_debug_logs_show_the_decisions_of_a_call_without_content(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    process = debug_process(tmp_path, [provider("primary", upstream.url)])
    try:
        await process.wait_ready()
        for request_id in ("dbg-miss", "dbg-hit"):
            status, _ = await chat(process.http_url, PROMPT, **{"x-request-id": request_id})
            assert status == 200

        def by_request(request_id: str) -> list[tuple[str, str, dict[str, Any]]]:
            return [
                (line["logger"], line["msg"], line)
                for line in lines_of(process.output())
                if line.get("request_id") == request_id
            ]

        await eventually(
            lambda: any(logger == "llm_sidecar.access" for logger, _, _ in by_request("dbg-hit")),
            what="the second call's access line",
        )
        miss = [(logger, msg) for logger, msg, _ in by_request("dbg-miss")]
        assert miss == [
            ("llm_sidecar.core.turn.pipeline", "cache"),
            ("llm_sidecar.core.turn.pipeline", "admitted"),
            ("llm_sidecar.routing", "attempt"),
            ("llm_sidecar.routing", "answered"),
            ("llm_sidecar.access", "call"),
        ], miss
        decisions = {msg: line for _, msg, line in by_request("dbg-miss")}
        assert decisions["cache"]["hit"] is False
        assert decisions["admitted"]["quota"] == "off"
        assert decisions["attempt"]["provider"] == "primary" and decisions["attempt"]["round"] == 1
        assert decisions["answered"]["attempts"] == 1
        hit = [(msg, line.get("hit")) for _, msg, line in by_request("dbg-hit")]
        assert hit == [("cache", True), ("call", None)], hit
    finally:
        process.stop()
    everything = process.output()
    assert PROMPT.encode() not in everything and USER.encode() not in everything
