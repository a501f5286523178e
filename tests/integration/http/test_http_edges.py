"""The HTTP surface at its edges: isolation, identity, token, limits, deadlines,
disconnects, the SIGTERM drain, ordered content parts, and the access log."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import aiohttp
import pytest

from llm_manager_client import AsyncLLMManagerClient, UserContext
from llm_sidecar import Sidecar
from tests.support.sidecar import make_settings, provider
from tests.support.telemetry import JsonLines
from tests.support.upstream import FakeUpstream
from tests.support.waiting import eventually

PNG_A = base64.b64encode(b"\x89PNG picture A").decode()
PNG_B = base64.b64encode(b"\x89PNG picture B").decode()


async def post(
    sidecar: Sidecar, path: str, body: Any, **headers: str
) -> tuple[int, dict[str, Any], dict[str, str]]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{sidecar.http_url}{path}", data=json.dumps(body), headers=headers) as reply,
    ):
        return reply.status, await reply.json(content_type=None), dict(reply.headers)


def chat(text: str, **extra: Any) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": text}], **extra}


async def test_users_sharing_prompts_and_session_names_never_meet(
    upstream: FakeUpstream, sidecar: Sidecar
) -> None:
    users = [f"user-{i}" for i in range(12)]

    async def converse(user: str) -> None:
        for turn in range(2):
            status, body, _ = await post(
                sidecar,
                "/v1/chat/completions",
                chat(f"{user} secret {turn}"),
                **{"x-user-id": user, "x-session-id": "s1"},
            )
            assert status == 200, body
        # The same stateless prompt for everyone: never answered from another's cache.
        status, body, headers = await post(
            sidecar, "/v1/chat/completions", chat("the same question"), **{"x-user-id": user}
        )
        assert status == 200 and headers["x-llm-cached"] == "false"

    await asyncio.gather(*(converse(u) for u in users))
    for record in upstream.chat_requests:
        texts = " ".join(str(m["content"]) for m in record.body["messages"])
        owners = {u for u in users if f"{u} secret" in texts}
        assert len(owners) <= 1, texts  # one user's turns only, per upstream request
    assert sum(r.last_user == "the same question" for r in upstream.chat_requests) == len(users)
    address = f"127.0.0.1:{sidecar.port}"
    for user in users:
        async with AsyncLLMManagerClient(address, UserContext(user, session_id="s1")) as client:
            history = [m.content for m in (await client.get_conversation()).messages]
        assert history[::2] == [f"{user} secret 0", f"{user} secret 1"]


async def test_identity_token_and_limits(
    upstream: FakeUpstream, sidecar_factory, monkeypatch
) -> None:
    monkeypatch.setenv("TEST_SIDECAR_TOKEN", "t0ken-9f")
    sidecar = await sidecar_factory(
        make_settings(
            [provider("primary", upstream.url)],
            server={"auth_token_env": "TEST_SIDECAR_TOKEN", "max_request_bytes": 4096},
        )
    )
    ok = {"x-user-id": "alice", "authorization": "Bearer t0ken-9f"}
    assert (await post(sidecar, "/v1/chat/completions", chat("hi"), **ok))[0] == 200
    status, body, _ = await post(
        sidecar,
        "/v1/messages",
        {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]},
        **{"x-user-id": "alice", "x-api-key": "t0ken-9f"},
    )
    assert status == 200 and body["type"] == "message"
    wrong = await post(
        sidecar,
        "/v1/chat/completions",
        chat("hi"),
        **{"x-user-id": "alice", "authorization": "Bearer nope"},
    )
    assert wrong[0] == 401 and wrong[1]["error"]["type"] == "authentication_error"
    missing = await post(
        sidecar, "/v1/chat/completions", chat("hi"), authorization="Bearer t0ken-9f"
    )
    assert missing[0] == 401 and "x-user-id" in missing[1]["error"]["message"]
    bad_id = await post(sidecar, "/v1/chat/completions", chat("hi"), **{**ok, "x-user-id": "null"})
    assert bad_id[0] == 400 and bad_id[1]["error"]["param"] == "x-user-id"
    big = await post(sidecar, "/v1/chat/completions", chat("x" * 8000), **ok)
    assert big[0] == 413 and "server.max_request_bytes" in big[1]["error"]["message"]
    async with aiohttp.ClientSession() as session:
        async with session.post(
            f"{sidecar.http_url}/v1/chat/completions", data=b"{not json", headers=ok
        ) as reply:
            assert reply.status == 400
        async with session.get(f"{sidecar.http_url}/v2/nothing", headers=ok) as reply:
            assert reply.status == 404 and (await reply.json())["error"]["message"]
        async with session.get(f"{sidecar.http_url}/v1/embeddings", headers=ok) as reply:
            assert reply.status == 405 and (await reply.json())["error"]["param"] is None
        # Under Anthropic's path, Anthropic's error shape.
        async with session.post(f"{sidecar.http_url}/v1/messages/batches", headers=ok) as reply:
            document = await reply.json()
            assert reply.status == 404 and document["type"] == "error"
            assert document["error"]["type"] == "not_found_error"


async def test_deadline_from_the_route_or_a_shorter_header(
    upstream_factory, sidecar_factory
) -> None:
    slow = await upstream_factory("slow")
    slow.mode = "hang"
    settings = make_settings(
        models={"m": {"providers": [provider("slow", slow.url, timeout=30)], "timeout_seconds": 5}}
    )
    sidecar = await sidecar_factory(settings)
    started = asyncio.get_running_loop().time()
    status, body, _ = await post(
        sidecar,
        "/v1/chat/completions",
        chat("wait"),
        **{"x-user-id": "a", "x-request-timeout": "0.4"},
    )
    assert status == 504 and body["error"]["type"] == "timeout"
    assert asyncio.get_running_loop().time() - started < 3
    await eventually(lambda: slow.hangs_abandoned == 1, what="the upstream call abandoned")


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/messages"])
async def test_a_caller_that_goes_away_mid_stream_cancels_and_settles(
    upstream: FakeUpstream, sidecar_factory, path: str
) -> None:
    upstream.stream_chunk_delay = 0.05
    kind = "anthropic" if path == "/v1/messages" else "openai"
    url = upstream.anthropic_url if kind == "anthropic" else upstream.url
    sidecar = await sidecar_factory(
        make_settings([provider("primary", url, kind=kind)], quotas={"requests_per_minute": 100})
    )
    body = {**chat("a long answer " + "word " * 60, stream=True), "max_tokens": 100}
    async with aiohttp.ClientSession() as session:
        reply = await session.post(
            f"{sidecar.http_url}{path}", data=json.dumps(body), headers={"x-user-id": "quitter"}
        )
        assert reply.status == 200
        await reply.content.readline()  # the stream is under way
        reply.close()  # and the caller is gone
    await eventually(lambda: upstream.streams_aborted == 1, what="the upstream stream cancelled")

    def settled() -> bool:
        manager = sidecar.registry.get("quitter")
        totals = sidecar.billing.gate.totals["requests_per_minute"]
        return manager is not None and manager.in_flight == 0 and totals.in_flight == 0

    await eventually(settled, what="slot released and reservation settled")


async def test_sigterm_drain_finishes_http_streams_and_refuses_new_requests(
    upstream: FakeUpstream, sidecar_factory
) -> None:
    upstream.stream_chunk_delay = 0.02
    sidecar = await sidecar_factory(make_settings([provider("primary", upstream.url)]))
    url = f"{sidecar.http_url}/v1/chat/completions"
    async with aiohttp.ClientSession() as session:
        reply = await session.post(
            url,
            data=json.dumps(chat("drain " + "w " * 30, stream=True)),
            headers={"x-user-id": "a"},
        )
        first = await reply.content.readline()
        assert first.startswith(b"data: ")
        stopping = asyncio.ensure_future(sidecar.stop(grace=5))
        rest = await reply.read()
        await stopping
        assert rest.rstrip().endswith(b"data: [DONE]")
        with pytest.raises(aiohttp.ClientConnectionError):
            await session.post(url, data=json.dumps(chat("late")), headers={"x-user-id": "a"})


ORDERED = [
    {"type": "text", "text": "Picture A:"},
    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_A}"}},
    {"type": "text", "text": "Picture B:"},
    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_B}"}},
    {"type": "text", "text": "Which is brighter?"},
]


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
async def test_interleaved_text_and_images_keep_their_order(
    upstream: FakeUpstream, sidecar_factory, kind: str
) -> None:
    url = upstream.anthropic_url if kind == "anthropic" else upstream.url
    sidecar = await sidecar_factory(make_settings([provider("primary", url, kind=kind)]))
    body = {"model": "m", "messages": [{"role": "user", "content": ORDERED}]}
    status, answer, _ = await post(
        sidecar, "/v1/chat/completions", body, **{"x-user-id": "viewer", "x-session-id": "s"}
    )
    assert status == 200, answer
    sent = upstream.chat_requests[-1].body["messages"][-1]["content"]
    if kind == "openai":
        order = [p["text"] if p["type"] == "text" else p["image_url"]["url"][-12:] for p in sent]
        expected = [
            "Picture A:",
            f"{PNG_A[-12:]}",
            "Picture B:",
            f"{PNG_B[-12:]}",
            "Which is brighter?",
        ]
    else:
        order = [b["text"] if b["type"] == "text" else b["source"]["data"][-12:] for b in sent]
        expected = ["Picture A:", PNG_A[-12:], "Picture B:", PNG_B[-12:], "Which is brighter?"]
    assert order == expected
    address = f"127.0.0.1:{sidecar.port}"
    async with AsyncLLMManagerClient(address, UserContext("viewer", session_id="s")) as client:
        (stored, _) = (await client.get_conversation()).messages
    kinds = ["text" if isinstance(p, str) else "image" for p in stored.parts]
    assert kinds == ["text", "image", "text", "image", "text"]
    texts = [p for p in stored.parts if isinstance(p, str)]
    assert texts == ["Picture A:", "Picture B:", "Which is brighter?"]


async def test_an_access_line_per_http_request(
    upstream: FakeUpstream, sidecar: Sidecar, json_logs: JsonLines
) -> None:
    await post(
        sidecar, "/v1/chat/completions", chat("logged"), **{"x-user-id": "a", "x-request-id": "h-1"}
    )
    await post(
        sidecar, "/v1/chat/completions", chat("x", n=3), **{"x-user-id": "a", "x-request-id": "h-2"}
    )
    # A wrong base_url is logged too, by method alone: a path may hold anything.
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{sidecar.http_url}/v1/logged-path", headers={"x-user-id": "a"}) as lost,
    ):
        assert lost.status == 404 and lost.headers["x-request-id"].startswith("sc-")
    lines = [json.loads(x) for x in json_logs.lines]
    access = [e for e in lines if e["logger"] == "llm_sidecar.access"]
    assert [(e["method"], e["status"], e["request_id"]) for e in access] == [
        ("POST /v1/chat/completions", "OK", "h-1"),
        ("POST /v1/chat/completions", "400", "h-2"),
        ("POST (no route)", "404", lost.headers["x-request-id"]),
    ]
    assert access[0]["provider"] == "primary" and access[0]["prompt_tokens"] > 0
    # The reason is the core's, as on gRPC's lines (one entrance writes both).
    assert access[1]["reason"] == "INVALID_REQUEST" and access[2]["reason"] == "NO_ROUTE"
    assert "logged" not in json.dumps(lines)
