"""Conversation and session context isolation, over real RPCs, with memory and Redis stores."""

from __future__ import annotations

import asyncio
import json
import random
import uuid

import pytest

from llm_manager_client import (
    AsyncLLMManagerClient,
    InvalidArgumentError,
    StructuredOutputError,
    UnavailableError,
    UserContext,
)
from llm_sidecar import Sidecar
from tests.support.sidecar import make_settings, provider
from tests.support.upstream import FakeUpstream
from tests.support.waiting import eventually

SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "words": {"type": "integer"}},
    "required": ["name", "words"],
    "additionalProperties": False,
}


@pytest.fixture
async def sidecar(upstream: FakeUpstream, sidecar_factory, store_settings) -> Sidecar:
    return await sidecar_factory(
        make_settings([provider("primary", upstream.url)], **store_settings)
    )


def secret() -> str:
    return uuid.uuid4().hex


def contents(messages) -> list[str]:
    return [m["content"] if isinstance(m, dict) else m.content for m in messages]


async def test_conversation_history_isolation(client_factory, upstream: FakeUpstream) -> None:
    a_secret, b_secret = secret(), secret()
    alice = client_factory("alice", session_id="shared-session")
    bob = client_factory("bob", session_id="shared-session")
    for turn in range(3):
        await alice.ask(f"alice {a_secret} {turn}")
        await bob.ask(f"bob {b_secret} {turn}")
    # The provider saw each user's own history growing, and nothing of the other's.
    sent = upstream.chat_requests
    for req in sent:
        text = " ".join(contents(req.messages))
        assert (a_secret in text) != (b_secret in text)
    alice_reqs = [r for r in sent if a_secret in r.last_user]
    assert [len(r.messages) for r in alice_reqs] == [1, 3, 5]
    assert contents(alice_reqs[2].messages)[:4] == [
        f"alice {a_secret} 0",
        f"primary says: alice {a_secret} 0 (turn 1)",
        f"alice {a_secret} 1",
        f"primary says: alice {a_secret} 1 (turn 3)",
    ]
    a_conv, b_conv = await alice.get_conversation(), await bob.get_conversation()
    assert len(a_conv.messages) == 6 and len(b_conv.messages) == 6
    assert all(b_secret not in m.content for m in a_conv.messages)
    assert all(a_secret not in m.content for m in b_conv.messages)
    # Naming another user's session id explicitly still only reads the caller's own data.
    assert (await alice.get_conversation(session_id="bob-only-session")).messages == ()


async def test_session_context_isolation(client_factory, upstream: FakeUpstream) -> None:
    s1, s2, t2 = secret(), secret(), secret()
    one = client_factory("alice", session_id="s1")
    two = client_factory("alice", session_id="s2")
    two_thread = client_factory("alice", session_id="s2", thread_id="side")
    await one.ask(f"first {s1}")
    await two.ask(f"second {s2}")
    await two_thread.ask(f"thread {t2}")
    await one.ask("follow-up in s1")
    await two.ask("follow-up in s2")
    last_s1, last_s2 = upstream.chat_requests[-2], upstream.chat_requests[-1]
    assert any(s1 in c for c in contents(last_s1.messages))
    assert not any(s2 in c or t2 in c for c in contents(last_s1.messages))
    assert any(s2 in c for c in contents(last_s2.messages))
    assert not any(s1 in c or t2 in c for c in contents(last_s2.messages))
    assert len((await one.get_conversation()).messages) == 4
    assert len((await two.get_conversation()).messages) == 4
    side = await two_thread.get_conversation()
    assert side.thread_id == "side" and contents(side.messages)[0] == f"thread {t2}"
    # Reading s2 from a client whose metadata says s1, by naming it: same user, allowed.
    named = await one.get_conversation(session_id="s2", thread_id="side")
    assert contents(named.messages) == contents(side.messages)


async def test_structured_response_isolation(client_factory, upstream: FakeUpstream) -> None:
    alice, bob = client_factory("alice", session_id="s"), client_factory("bob", session_id="s")
    a = await alice.ask_structured("describe alice please", SCHEMA, skip_history=True)
    b = await bob.ask_structured("describe bob", SCHEMA, skip_history=True)
    assert a.data == {"name": "describe alice please", "words": 3}
    assert b.data == {"name": "describe bob", "words": 2}
    sent = upstream.chat_requests
    assert sent[0].body["response_format"]["json_schema"]["schema"] == SCHEMA
    # Cached for its owner only; a hit returns the owner's own document.
    again = await alice.ask_structured("describe alice please", SCHEMA, skip_history=True)
    assert again.metadata.cached and again.data == a.data
    theirs = await bob.ask_structured("describe alice please", SCHEMA, skip_history=True)
    assert not theirs.metadata.cached and theirs.data == a.data
    assert len(upstream.chat_requests) == 3
    # A different schema is a different request.
    other = {**SCHEMA, "required": ["name"]}
    assert not (
        await alice.ask_structured("describe alice please", other, skip_history=True)
    ).metadata.cached


async def test_full_response_metadata_isolation(client_factory, upstream: FakeUpstream) -> None:
    users = [f"user-{i}" for i in range(40)]

    async def one(user: str) -> tuple[str, object]:
        client = client_factory(user, request_id=f"req-{user}")
        return user, await client.ask_full(f"{user} {secret()} " * (1 + len(user) % 5))

    results = dict(await asyncio.gather(*(one(u) for u in users)))
    by_prompt = {r.last_user: r for r in upstream.chat_requests}
    ids = set()
    for user, result in results.items():
        meta = result.metadata
        assert meta.request_id == f"req-{user}"
        assert not meta.cached and meta.provider == "primary" and meta.finish_reason == "stop"
        sent = next(r for p, r in by_prompt.items() if result.text.startswith(f"primary says: {p}"))
        assert sent.last_user.startswith(user)
        expected = upstream.usage(sent.body, result.text)
        assert (
            meta.usage.prompt_tokens,
            meta.usage.completion_tokens,
            meta.usage.total_tokens,
        ) == (expected["prompt_tokens"], expected["completion_tokens"], expected["total_tokens"])
        ids.add(meta.response_id)
    assert len(ids) == len(users)
    # A cache hit reports itself as cached, with zero provider tokens, to its owner only.
    hit = await client_factory("user-0", request_id="again").ask_full(
        results["user-0"].text.removeprefix("primary says: ").rsplit(" (turn", 1)[0]
    )
    assert hit.metadata.cached and hit.metadata.usage.total_tokens == 0
    assert hit.metadata.request_id == "again"


async def test_conversation_state_persistence_isolation(
    sidecar: Sidecar, upstream: FakeUpstream
) -> None:
    target = f"127.0.0.1:{sidecar.port}"
    a_secret = secret()
    async with AsyncLLMManagerClient(target, UserContext("alice", session_id="s")) as alice:
        await alice.ask(f"remember {a_secret}")
        await alice.ask("and this")
    async with AsyncLLMManagerClient(target, UserContext("bob", session_id="s")) as bob:
        await bob.ask("bob here")
        await bob.release_manager()
    # A new connection for alice sees her history; bob's release touched nothing of hers.
    async with AsyncLLMManagerClient(target, UserContext("alice", session_id="s")) as alice:
        conv = await alice.get_conversation()
        assert contents(conv.messages)[0] == f"remember {a_secret}" and len(conv.messages) == 4
        await alice.ask("third")
    assert len(upstream.chat_requests[-1].messages) == 5
    async with AsyncLLMManagerClient(target, UserContext("bob", session_id="s")) as bob:
        conv = await bob.get_conversation()
        assert all(a_secret not in m.content for m in conv.messages)
    if sidecar.settings.redis.url:
        # Durable store: the history outlives alice's manager too.
        async with AsyncLLMManagerClient(target, UserContext("alice", session_id="s")) as alice:
            await alice.release_manager()
            assert len((await alice.get_conversation()).messages) == 6


async def test_concurrent_conversation_isolation(client_factory, upstream: FakeUpstream) -> None:
    turns = 3
    secrets = {(f"user-{u}", f"sess-{s}"): secret() for u in range(50) for s in range(3)}

    async def converse(user: str, session: str, token: str) -> None:
        client = client_factory(user, session_id=session)
        for turn in range(turns):
            await asyncio.sleep(
                random.random() * 0.01
            )  # interleave turns across users and sessions
            text = await client.ask(f"{token} turn {turn}")
            assert text == f"primary says: {token} turn {turn} (turn {2 * turn + 1})"

    await asyncio.gather(*(converse(u, s, t) for (u, s), t in secrets.items()))
    assert len(upstream.chat_requests) == len(secrets) * turns
    for req in upstream.chat_requests:
        owners = {
            key for key, token in secrets.items() if any(token in c for c in contents(req.messages))
        }
        assert len(owners) == 1
        token = secrets[owners.pop()]
        assert contents(req.messages)[::2] == [
            f"{token} turn {i}" for i in range(len(req.messages) // 2 + 1)
        ]
    for (user, session), token in list(secrets.items())[:15]:
        conv = await client_factory(user, session_id=session).get_conversation()
        assert contents(conv.messages)[::2] == [f"{token} turn {i}" for i in range(turns)]


async def test_context_cleanup_prevents_leakage(
    sidecar: Sidecar, client_factory, upstream: FakeUpstream
) -> None:
    old = secret()
    a1 = client_factory("alice", session_id="s1")
    a2 = client_factory("alice", session_id="s2")
    b1 = client_factory("bob", session_id="s1")
    await a1.ask(f"old {old}")
    await a2.ask("keep me")
    await b1.ask("bob keeps his")
    ended = await a1.end_session()
    assert ended.threads_cleared == 1 and ended.cache_entries_cleared == 1
    assert (await a1.get_conversation()).messages == ()
    assert not await a1.is_cached(f"old {old}")
    assert len((await a2.get_conversation()).messages) == 2
    assert await a2.is_cached("keep me", skip_history=True)
    assert len((await b1.get_conversation()).messages) == 2
    await a1.ask("fresh start")
    assert all(old not in c for c in contents(upstream.chat_requests[-1].messages))
    assert len(upstream.chat_requests[-1].messages) == 1
    # Releasing drops the user's in-process state and nobody else's.
    await a1.release_manager()
    assert sidecar.registry.get("alice") is None
    assert len((await b1.get_conversation()).messages) == 2


# -- bounds, opt-out, failures, streams, schemas ---------------------------------------


async def test_history_is_bounded_by_turns_and_bytes(
    upstream: FakeUpstream, sidecar_factory, store_settings
) -> None:
    settings = make_settings(
        [provider("primary", upstream.url)],
        history={"max_turns": 2, "max_bytes": 4096},
        **store_settings,
    )
    sidecar = await sidecar_factory(settings)
    async with AsyncLLMManagerClient(
        f"127.0.0.1:{sidecar.port}", UserContext("alice", session_id="s")
    ) as c:
        for i in range(5):
            await c.ask(f"turn {i}")
        assert [len(r.messages) for r in upstream.chat_requests] == [1, 3, 5, 5, 5]
        conv = await c.get_conversation()
        assert contents(conv.messages)[::2] == ["turn 3", "turn 4"]
        big = "x" * 1500
        await c.ask(big)
        await c.ask(big + "y")
        conv = await c.get_conversation()
        assert sum(len(m) for m in contents(conv.messages)) <= 4096
        assert contents(conv.messages)[-2] == big + "y"


async def test_history_opt_out(client_factory, upstream: FakeUpstream) -> None:
    client = client_factory("alice", session_id="s")
    await client.ask("in history")
    await client.ask("outside history", skip_history=True)
    assert contents(upstream.chat_requests[-1].messages) == ["outside history"]
    assert contents((await client.get_conversation()).messages) == [
        "in history",
        "primary says: in history (turn 1)",
    ]
    stateless = client_factory("alice")  # no session: no history at all
    await stateless.ask("no session")
    assert len(upstream.chat_requests[-1].messages) == 1


async def test_failed_answer_is_not_appended(client_factory, upstream: FakeUpstream) -> None:
    client = client_factory("alice", session_id="s")
    await client.ask("good")
    upstream.mode = "error"
    with pytest.raises(UnavailableError):
        await client.ask("bad")
    upstream.mode = "healthy"
    assert contents((await client.get_conversation()).messages) == [
        "good",
        "primary says: good (turn 1)",
    ]


async def test_stream_appends_history_and_reports_usage(
    client_factory, upstream: FakeUpstream
) -> None:
    upstream.stream_chunk_delay = 0.1  # a paced upstream: the sidecar keeps up
    client = client_factory("alice", session_id="s")
    chunks = [c async for c in client.ask_stream("stream me please")]
    text = "".join(c.delta for c in chunks)
    assert text == "primary says: stream me please (turn 1)"
    # Keeping up, every delta went out alone, as it arrived; then the metadata.
    pieces = ["primary ", "says: ", "stream ", "me ", "please ", "(turn ", "1)"]
    assert [c.delta for c in chunks[:-1]] == pieces
    assert chunks[-1].delta == "" and chunks[-1].metadata is not None
    assert (
        chunks[-1].metadata.usage.total_tokens
        == upstream.usage(upstream.chat_requests[0].body, text)["total_tokens"]
    )
    assert contents((await client.get_conversation()).messages) == ["stream me please", text]
    usage = await client.get_usage()
    assert usage.total.total_tokens == chunks[-1].metadata.usage.total_tokens


async def test_stream_cancellation_stops_upstream(client_factory, upstream: FakeUpstream) -> None:
    upstream.stream_chunk_delay = 0.2
    client = client_factory("alice", session_id="s")
    received = []
    async for chunk in client.ask_stream("a long " + "word " * 40):
        received.append(chunk)
        if len(received) == 2:
            break
    await eventually(lambda: upstream.streams_aborted, what="the upstream stream aborted")
    assert upstream.streams_aborted == 1 and upstream.streams_completed == 0
    assert (await client.get_conversation()).messages == ()


@pytest.mark.parametrize(
    ("schema", "problem"),
    [
        ("{not json", "not JSON"),
        ("[1, 2]", "JSON object"),
        ('{"type": "no-such-type"}', "not a valid JSON Schema"),
        (
            '{"type": "object", "properties": {"a": {"minimum": "three"}}}',
            "not a valid JSON Schema: 'type' at properties/<name>/minimum",
        ),
        ("", "required"),
    ],
)
async def test_invalid_schema_is_invalid_argument(
    client_factory, upstream: FakeUpstream, schema: str, problem: str
) -> None:
    with pytest.raises(InvalidArgumentError) as info:
        await client_factory("alice").ask_structured("x", schema)
    assert info.value.field == "json_schema" and problem in info.value.message
    assert upstream.chat_requests == []


async def test_output_not_matching_schema_is_a_clear_error(
    client_factory, upstream: FakeUpstream
) -> None:
    upstream.json_answer = json.dumps({"name": "secret-output-text", "words": "many"})
    client = client_factory("alice", session_id="s")
    with pytest.raises(StructuredOutputError) as info:
        await client.ask_structured("x", SCHEMA)
    # Where, by keyword and place: the output's keys and values are the model's text.
    assert "'type' at /<key>" in info.value.message
    assert "secret-output-text" not in info.value.message and "words" not in info.value.message
    upstream.json_answer = "no json at all"
    with pytest.raises(StructuredOutputError):
        await client.ask_structured("x", SCHEMA)
    assert (await client.get_conversation()).messages == ()
    assert not await client.is_cached("x")
