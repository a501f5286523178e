"""Bodies near ``server.max_request_bytes`` on every HTTP endpoint, sent as slow clients
and proxies send them: in several TCP writes with pauses between, with a length or in
chunks. Below the limit each is read whole and answered (JSON and streams alike), and
the upstream gets every byte; above it each is 413. A body read in one ``read(n)``
was cut at whatever had arrived and refused as "not JSON"."""

from __future__ import annotations

import base64
import os
from collections.abc import Callable
from typing import Any

import anthropic
import openai
import orjson
import pytest

from llm_sidecar import Sidecar
from tests.support.raw_http import RawReply, post_in_pieces
from tests.support.sidecar import make_settings, provider
from tests.support.upstream import FakeUpstream

LIMIT = 1024 * 1024  # the default server.max_request_bytes
USER = {"x-user-id": "alice", "content-type": "application/json"}

Builder = Callable[[str, bool], dict[str, Any]]


def _chat(payload: str, stream: bool) -> dict[str, Any]:
    image = {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{payload}"}}
    content = [{"type": "text", "text": "describe this"}, image]
    return {"model": "m", "messages": [{"role": "user", "content": content}], "stream": stream}


def _messages(payload: str, stream: bool) -> dict[str, Any]:
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png"}}
    image["source"]["data"] = payload  # type: ignore[index]
    content = [image, {"type": "text", "text": "describe this"}]
    message = {"role": "user", "content": content}
    return {"model": "m", "max_tokens": 64, "messages": [message], "stream": stream}


def _responses(payload: str, stream: bool) -> dict[str, Any]:
    image = {"type": "input_image", "image_url": f"data:image/png;base64,{payload}"}
    content = [{"type": "input_text", "text": "describe this"}, image]
    return {"model": "m", "input": [{"role": "user", "content": content}], "stream": stream}


def _embeddings(payload: str, stream: bool) -> dict[str, Any]:
    return {"model": "emb", "input": ["a short text", payload]}


ENDPOINTS: dict[str, Builder] = {
    "/v1/chat/completions": _chat,
    "/v1/messages": _messages,
    "/v1/responses": _responses,
    "/v1/embeddings": _embeddings,
}
#: The last bytes of a streamed answer that ended as it should.
STREAM_ENDS = {
    "/v1/chat/completions": b"data: [DONE]",
    "/v1/messages": b"event: message_stop",
    "/v1/responses": b"event: response.completed",
}
CASES = [(path, False) for path in ENDPOINTS] + [(path, True) for path in STREAM_ENDS]


def body_of(build: Builder, size: int, stream: bool) -> tuple[bytes, str]:
    """``build``'s body, exactly ``size`` bytes, and the base64 payload that fills it."""
    empty = len(orjson.dumps(build("", stream)))
    payload = base64.b64encode(os.urandom(size)).decode()[: size - empty]
    body = orjson.dumps(build(payload, stream))
    assert len(body) == size
    return body, payload


@pytest.fixture
async def sidecar(upstream: FakeUpstream, sidecar_factory) -> Sidecar:
    models = {
        "m": {"providers": [provider("primary", upstream.url)]},
        "emb": {"kind": "embedding", "providers": [provider("primary", upstream.url)]},
    }
    # The text cap sits above the body cap here: this test is about reading the body.
    settings = make_settings(models=models, embeddings={"max_total_chars": 2 * LIMIT})
    return await sidecar_factory(settings)


def upstream_got(upstream: FakeUpstream, payload: str) -> bool:
    """Whether the upstream's last request carried ``payload`` whole."""
    return payload.encode() in orjson.dumps(upstream.requests[-1].body)


def answered(path: str, stream: bool, reply: RawReply) -> None:
    assert reply.status == 200, reply.body[:300]
    if stream:
        assert reply.headers["content-type"].startswith("text/event-stream")
        assert STREAM_ENDS[path] in reply.body, reply.body[-300:]
    else:
        assert orjson.loads(reply.body)  # a whole JSON answer


@pytest.mark.parametrize(("path", "stream"), CASES)
async def test_bodies_near_the_limit_arrive_whole_in_pieces(
    sidecar: Sidecar, upstream: FakeUpstream, path: str, stream: bool
) -> None:
    port = int(sidecar.http_url.rsplit(":", 1)[1])
    for fraction, chunked in ((0.5, False), (0.99, False), (0.99, True)):
        body, payload = body_of(ENDPOINTS[path], int(LIMIT * fraction), stream)
        reply = await post_in_pieces("127.0.0.1", port, path, body, USER, chunked=chunked)
        answered(path, stream, reply)
        assert upstream_got(upstream, payload), (fraction, chunked)
    sent = len(upstream.requests)
    for chunked in (False, True):
        body, _ = body_of(ENDPOINTS[path], int(LIMIT * 1.01), stream)
        reply = await post_in_pieces("127.0.0.1", port, path, body, USER, chunked=chunked)
        assert reply.status == 413, reply.body[:300]
        message = orjson.loads(reply.body)["error"]["message"]
        assert "server.max_request_bytes" in message
    assert len(upstream.requests) == sent  # nothing over the limit went upstream


async def test_official_sdks_send_a_large_image(sidecar: Sidecar, upstream: FakeUpstream) -> None:
    """The OpenAI and Anthropic SDKs with an image whose body is 0.9 of the limit."""
    image = base64.b64encode(os.urandom(int(LIMIT * 0.9 * 3 / 4))).decode()
    openai_client = openai.AsyncOpenAI(
        base_url=f"{sidecar.http_url}/v1", api_key="unused", max_retries=0,
        default_headers={"x-user-id": "alice"},
    )  # fmt: skip
    anthropic_client = anthropic.AsyncAnthropic(
        base_url=sidecar.http_url, api_key="unused", max_retries=0,
        default_headers={"x-user-id": "alice"},
    )  # fmt: skip
    async with openai_client, anthropic_client:
        for _ in range(3):
            chat = await openai_client.chat.completions.create(
                model="m", messages=_chat(image, False)["messages"]
            )
            assert chat.choices[0].message.content
            assert upstream_got(upstream, image)
            message = await anthropic_client.messages.create(
                model="m", max_tokens=64, messages=_messages(image, False)["messages"]
            )
            assert message.content[0].type == "text"
            assert upstream_got(upstream, image)
            async with openai_client.chat.completions.stream(
                model="m", messages=_chat(image, False)["messages"]
            ) as events:
                final = await events.get_final_completion()
            assert final.choices[0].message.content
