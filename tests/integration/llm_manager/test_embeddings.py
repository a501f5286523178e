"""Embeddings through both surfaces (gRPC Embed, OpenAI's /v1/embeddings with the
official SDK): vectors exact and in order, cached per user and per text, only the
missing texts sent upstream, bad vectors failed over, usage and quotas exact, the
kinds of route kept apart, and no text in any history or log."""

from __future__ import annotations

import base64
import json
import struct
from decimal import Decimal
from typing import Any

import aiohttp
import openai
import pytest
from pydantic import ValidationError

from llm_manager_client import (
    AsyncLLMManagerClient,
    InvalidArgumentError,
    ResourceExhaustedError,
    UserContext,
)
from llm_sidecar import Sidecar
from tests.support.sidecar import make_settings, provider
from tests.support.telemetry import JsonLines
from tests.support.upstream import EMBEDDING_DIMENSIONS, FakeUpstream, fake_vector

PRICE = {"input": "0.02"}  # USD per million tokens: text-embedding-3-small's


def routes(*upstreams: FakeUpstream, **extra: Any) -> dict[str, Any]:
    """A chat route "chat" and an embedding route "emb" over ``upstreams`` in order."""
    return {
        "chat": {"providers": [provider("chat", upstreams[0].url)]},
        "emb": {
            "kind": "embedding",
            "providers": [provider(u.name, u.url, **extra) for u in upstreams],
        },
    }


async def embedding_sidecar(sidecar_factory, *upstreams: FakeUpstream, **sections: Any) -> Sidecar:
    settings = make_settings(models=routes(*upstreams, price=PRICE), **sections)
    return await sidecar_factory(settings)


def grpc(sidecar: Sidecar, user: str = "alice") -> AsyncLLMManagerClient:
    return AsyncLLMManagerClient(
        f"127.0.0.1:{sidecar.port}", UserContext(user, session_id="s1"), timeout=10
    )


def sdk(sidecar: Sidecar, user: str = "alice") -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url=f"{sidecar.http_url}/v1",
        api_key="unused",
        default_headers={"x-user-id": user},
        max_retries=0,
    )


def float32(values: list[float]) -> bytes:
    return struct.pack(f"<{len(values)}f", *values)


async def test_openai_sdk_embeddings_are_exact_in_every_encoding(
    upstream_factory, sidecar_factory
) -> None:
    up = await upstream_factory("emb")
    sidecar = await embedding_sidecar(sidecar_factory, up)
    texts = ["the first text", "second", "a third, longer text of several words"]
    async with sdk(sidecar) as client:
        # The SDK asks for base64 unless told otherwise, and decodes it itself.
        raw = await client.embeddings.with_raw_response.create(model="emb", input=texts)
        default = raw.parse()
        floats = await client.embeddings.create(
            model="emb", input=texts, encoding_format="float", dimensions=4
        )
        encoded = await client.embeddings.create(
            model="emb", input="one text", encoding_format="base64", user="alice"
        )
    assert [d.index for d in default.data] == [0, 1, 2]
    for item, text in zip(default.data, texts, strict=True):
        assert float32(item.embedding) == float32(fake_vector(text, EMBEDDING_DIMENSIONS))
    assert default.model == "emb" and default.object == "list"
    tokens = sum(len(t.split()) for t in texts)
    assert (default.usage.prompt_tokens, default.usage.total_tokens) == (tokens, tokens)
    assert raw.headers["x-llm-route"] == "emb" and raw.headers["x-llm-provider"] == "emb"
    assert raw.headers["x-llm-cached"] == "false" and raw.headers["x-llm-cached-inputs"] == "0"
    assert raw.headers["x-llm-cost-micro-usd"] == "0"  # 11 tokens at $0.02/M: below a micro-USD
    # dimensions reached the provider; the vectors are the 4-dimensional ones.
    assert [float32(d.embedding) for d in floats.data] == [
        float32(fake_vector(t, 4)) for t in texts
    ]
    assert up.embedding_requests[1].body["dimensions"] == 4
    # base64 asked explicitly: the string is the float32 bytes themselves.
    vector = base64.b64decode(str(encoded.data[0].embedding))
    assert vector == float32(fake_vector("one text", EMBEDDING_DIMENSIONS))
    # Every request the provider got fits the SDK's types, and asked for floats.
    assert not up.format_errors
    assert {r.body["encoding_format"] for r in up.embedding_requests} == {"float"}
    assert {r.body["model"] for r in up.embedding_requests} == {"emb-model"}


async def test_a_batch_sends_only_the_texts_the_callers_cache_lacks(
    store_settings: dict[str, Any], upstream_factory, sidecar_factory
) -> None:
    up = await upstream_factory("emb")
    sidecar = await embedding_sidecar(sidecar_factory, up, **store_settings)
    async with grpc(sidecar) as alice, grpc(sidecar, "bob") as bob:
        first = await alice.embed(["one", "two words"], model="emb")
        second = await alice.embed(["two words", "three", "one", "four and more"], model="emb")
        assert up.embedding_requests[-1].inputs == ["three", "four and more"]
        assert [e.cached for e in second.embeddings] == [True, False, True, False]
        wanted = ["two words", "three", "one", "four and more"]
        assert [float32(list(e.vector)) for e in second.embeddings] == [
            float32(fake_vector(t, EMBEDDING_DIMENSIONS)) for t in wanted
        ]
        assert second.usage.prompt_tokens == 1 + 3  # only the fresh texts are billed
        whole = await alice.embed(["one", "three"], model="emb")
        assert whole.provider == "emb" and all(e.cached for e in whole.embeddings)
        assert whole.usage.prompt_tokens == 0 and len(up.embedding_requests) == 2
        # bob's cache is his own: his "one" goes upstream.
        theirs = await bob.embed("one", model="emb")
        assert not theirs.embeddings[0].cached and up.embedding_requests[-1].inputs == ["one"]
        # A text in another dimension is another entry.
        await alice.embed("one", model="emb", dimensions=2)
        assert up.embedding_requests[-1].inputs == ["one"]
        report = await alice.get_usage()
        conversation = await alice.get_conversation()
        # Ending the session drops the vectors embedded in it with its other entries.
        await alice.end_session()
        await alice.embed("three", model="emb")
        assert up.embedding_requests[-1].inputs == ["three"]
    assert first.usage.prompt_tokens == 3
    (row,) = report.rows
    assert (row.model, row.provider) == ("emb", "emb")
    assert row.prompt_tokens == 3 + 4 + 1 and row.completion_tokens == 0
    assert row.requests == 4 and row.cache_hits == 1
    assert conversation.messages == ()  # embeddings are never part of a conversation


async def test_a_text_repeated_in_a_batch_is_embedded_and_billed_once(
    upstream_factory, sidecar_factory
) -> None:
    up = await upstream_factory("emb")
    sidecar = await embedding_sidecar(sidecar_factory, up)
    batch = ["one", "two words", "one", "two words", "three"]
    async with grpc(sidecar) as alice:
        answer = await alice.embed(batch, model="emb")
    assert up.embedding_requests[-1].inputs == ["one", "two words", "three"]
    assert [float32(list(e.vector)) for e in answer.embeddings] == [
        float32(fake_vector(t, EMBEDDING_DIMENSIONS)) for t in batch
    ]
    assert not any(e.cached for e in answer.embeddings)
    assert answer.usage.prompt_tokens == 1 + 2 + 1
    async with sdk(sidecar, "bob") as bob:
        twice = await bob.embeddings.create(model="emb", input=["same", "same"])
    assert up.embedding_requests[-1].inputs == ["same"]
    assert [d.index for d in twice.data] == [0, 1] and twice.data[0].embedding == twice.data[
        1
    ].embedding
    assert twice.usage.prompt_tokens == 1


@pytest.mark.parametrize("fault", ["wrong_count", "wrong_dimension", "error", "bad_json"])
async def test_a_provider_with_bad_vectors_fails_over(
    fault: str, upstream_factory, sidecar_factory
) -> None:
    primary = await upstream_factory("primary", mode=fault)
    fallback = await upstream_factory("fallback")
    sidecar = await embedding_sidecar(sidecar_factory, primary, fallback)
    async with grpc(sidecar) as alice:
        result = await alice.embed(["alpha", "beta"], model="emb", dimensions=3)
    assert result.provider == "fallback"
    assert [a.provider for a in result.attempts] == ["primary", "fallback"]
    assert result.attempts[0].outcome == "error"
    if fault.startswith("wrong"):
        assert result.attempts[0].error_type == "bad_response"
    assert [float32(list(e.vector)) for e in result.embeddings] == [
        float32(fake_vector(t, 3)) for t in ("alpha", "beta")
    ]
    assert fallback.embedding_requests[0].inputs == ["alpha", "beta"]


async def test_vectors_match_across_surfaces_and_the_kinds_stay_apart(
    upstream_factory, sidecar_factory
) -> None:
    up = await upstream_factory("emb")
    sidecar = await embedding_sidecar(sidecar_factory, up)
    texts = ["same text", "on both surfaces"]
    async with grpc(sidecar, "grpc-user") as client, sdk(sidecar, "http-user") as http:
        over_grpc = await client.embed(texts, model="emb")
        over_http = await http.embeddings.create(model="emb", input=texts)
        assert [float32(list(e.vector)) for e in over_grpc.embeddings] == [
            float32(d.embedding) for d in over_http.data
        ]
        with pytest.raises(InvalidArgumentError) as wrong_kind:
            await client.embed("text", model="chat")
        assert "names a chat route, not an embedding route" in wrong_kind.value.message
        with pytest.raises(InvalidArgumentError):
            await client.ask("hello", model="emb")
        with pytest.raises(openai.BadRequestError) as http_wrong_kind:
            await http.embeddings.create(model="chat", input="text")
        assert http_wrong_kind.value.status_code == 400
        with pytest.raises(openai.BadRequestError):
            await http.chat.completions.create(
                model="emb", messages=[{"role": "user", "content": "hi"}]
            )
    assert len(up.embedding_requests) == 2 and not up.chat_requests


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({"model": "emb", "input": [1, 2, 3]}, 400, "input[0]"),
        ({"model": "emb", "input": [[1, 2]]}, 400, "input[0]"),
        ({"model": "emb", "input": []}, 400, "input"),
        ({"model": "emb", "input": ["fine", ""]}, 400, "input[1]"),
        ({"model": "emb", "input": "x", "dimensions": 0}, 400, "dimensions"),
        ({"model": "emb", "input": "x", "encoding_format": "int8"}, 400, "encoding_format"),
        ({"model": "emb", "input": "x", "user": "mallory"}, 400, "user"),
        ({"model": "emb"}, 400, "input"),
        ({"input": "x"}, 400, "model"),
        ({"model": "emb", "input": ["t"] * 5}, 413, "input"),
        ({"model": "emb", "input": "x" * 101}, 413, "input"),
    ],
)
async def test_bad_embedding_requests_are_refused_by_field(
    body: dict[str, Any], status: int, param: str, upstream_factory, sidecar_factory
) -> None:
    up = await upstream_factory("emb")
    limits = {"max_inputs": 4, "max_total_chars": 100}
    sidecar = await embedding_sidecar(sidecar_factory, up, embeddings=limits)
    headers = {"x-user-id": "alice", "Authorization": "Bearer unused"}
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{sidecar.http_url}/v1/embeddings", json=body, headers=headers) as reply,
    ):
        answer = await reply.json()
    assert reply.status == status, answer
    assert answer["error"]["param"] == param
    assert "mallory" not in answer["error"]["message"]
    assert not up.embedding_requests


async def test_token_quota_bounds_a_batch_before_the_provider_sees_it(
    upstream_factory, sidecar_factory
) -> None:
    up = await upstream_factory("emb")
    quotas = {"tokens_per_minute": 50, "minute_seconds": 30}
    sidecar = await embedding_sidecar(sidecar_factory, up, quotas=quotas)
    async with grpc(sidecar) as alice, grpc(sidecar, "bob") as bob:
        small = await alice.embed("a few words", model="emb")
        with pytest.raises(ResourceExhaustedError) as refused:
            await alice.embed("far too long " * 10, model="emb")
        assert refused.value.quota == "tokens_per_minute"
        await bob.embed("far too long " * 3, model="emb")  # bob's quota is his own
        (view,) = (await alice.get_usage()).quotas
    assert view.used == small.usage.prompt_tokens == 3 and view.reserved == 0
    assert [r.inputs for r in up.embedding_requests] == [["a few words"], ["far too long " * 3]]


async def test_texts_stay_out_of_logs_and_the_default_route_is_simulated(
    json_logs: JsonLines, sidecar_factory
) -> None:
    settings = make_settings(quotas={"usd_per_day": Decimal("1")})
    sidecar = await sidecar_factory(settings)
    secret = "the secret text nobody may log"
    async with grpc(sidecar) as alice:
        result = await alice.embed([secret, "another"])
        again = await alice.embed(secret)
        usage = await alice.get_usage()
    assert result.route == "simulated-embedding" and result.provider == "simulated-embedding"
    assert len(result.embeddings[0].vector) == 256
    assert again.embeddings[0].vector == result.embeddings[0].vector and again.embeddings[0].cached
    assert result.usage.cost_micro_usd == 0
    assert usage.total.requests == 2
    calls = [json.loads(line) for line in json_logs.lines]
    embeds = [c for c in calls if c["logger"] == "llm_sidecar.access" and "Embed" in c["method"]]
    assert len(embeds) == 2 and embeds[1]["cached"] is True and embeds[0]["prompt_tokens"] > 0
    assert not any(secret in line for line in json_logs.lines)


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ({"kind": "anthropic"}, "does not embed"),
        ({"probe": "chat"}, "probed with a chat call"),
    ],
)
def test_providers_that_cannot_embed_stop_the_start(entry: dict[str, Any], problem: str) -> None:
    route = {"kind": "embedding", "providers": [provider("p", "http://127.0.0.1:9/v1", **entry)]}
    with pytest.raises(ValidationError, match=problem):
        make_settings(
            models={"chat": {"providers": [provider("c", "http://127.0.0.1:9/v1")]}, "emb": route}
        )
    with pytest.raises(ValidationError, match="not an embedding route"):
        make_settings(
            models={"chat": {"providers": [provider("c", "http://127.0.0.1:9/v1")]}},
            default_embedding_model="chat",
        )


async def test_an_embedding_attempt_is_a_genai_embeddings_span_without_text(
    upstream_factory, traced_factory
) -> None:
    up = await upstream_factory("emb")
    traced = await traced_factory(make_settings(models=routes(up, price=PRICE)))
    secret = "a text that is content"
    async with traced.client("alice") as alice:
        await alice.embed([secret, "two"], model="emb", dimensions=4)
    spans = traced.trace_of("llm_manager.v1.LLMManagerService/Embed")
    (attempt,) = [s for s in spans if s.name == "embeddings emb-model"]
    attributes = dict(attempt.attributes or {})
    assert attributes["gen_ai.operation.name"] == "embeddings"
    assert attributes["gen_ai.request.model"] == "emb-model"
    assert attributes["gen_ai.embeddings.dimension.count"] == 4
    assert attributes["gen_ai.usage.input_tokens"] == 6  # the words of both texts
    assert not any(secret in str(dict(s.attributes or {})) for s in spans)
    durations = traced.metric_points("gen_ai.client.operation.duration")
    assert any(p["gen_ai.operation.name"] == "embeddings" for p, _ in durations)
