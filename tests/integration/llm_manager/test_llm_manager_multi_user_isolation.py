"""Multi-user isolation of the manager factory, registry and caches, over real RPCs."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
import warnings

import pytest

from llm_manager_client import AsyncLLMManagerClient, UserContext
from llm_sidecar import Sidecar, UserExecutionContext, get_llm_manager
from llm_sidecar.core.state.cache_keys import cache_key
from llm_sidecar.core.vocabulary.errors import IsolationViolationError
from llm_sidecar.core.vocabulary.models import ChatMessage, GenerationParams
from tests.support.sidecar import make_settings, provider
from tests.support.upstream import FakeUpstream


def marker() -> str:
    return uuid.uuid4().hex


async def test_factory_creates_isolated_managers(sidecar: Sidecar, client_factory) -> None:
    alice = client_factory("alice", session_id="s1")
    bob = client_factory("bob", session_id="s1")
    await alice.ask("alice prompt")
    await bob.ask("bob prompt")

    a, b = sidecar.registry.get("alice"), sidecar.registry.get("bob")
    assert a is not None and b is not None and a is not b
    assert a.context.user_id == "alice" and b.context.user_id == "bob"
    # No mutable state in common.
    for attr in ("cache", "state", "limiter", "pipeline"):
        assert getattr(a, attr) is not getattr(b, attr), attr
    for store in ("conversations", "usage", "turns", "quotas"):
        assert getattr(a.state, store) is not getattr(b.state, store), store
    assert len(a.cache) == 1 and len(b.cache) == 1
    # The registry keeps exactly one manager per user; the factory always builds a new one.
    ctx = UserExecutionContext(user_id="alice", session_id="s2")
    assert sidecar.registry.get_or_create(ctx) is a
    fresh = sidecar.factory.create_llm_manager(ctx)
    assert fresh is not a and fresh.cache is not a.cache and len(fresh.cache) == 0
    # A manager refuses another user's context outright.
    with pytest.raises(IsolationViolationError):
        await a.is_cached(UserExecutionContext(user_id="bob"), _inp("bob prompt"))


def _inp(prompt: str):
    from llm_sidecar.core.vocabulary.models import AskInput

    return AskInput(prompt=prompt)


async def test_concurrent_llm_operations_isolation(client_factory, upstream: FakeUpstream) -> None:
    users = {f"user-{i}": marker() for i in range(60)}

    async def converse(user_id: str, secret: str) -> None:
        client = client_factory(user_id, session_id="chat")
        for turn in range(3):
            prompt = f"{secret} turn {turn}"
            result = await client.ask_full(prompt)
            assert result.text == f"primary says: {prompt} (turn {2 * turn + 1})"
            for other, other_secret in users.items():
                if other != user_id:
                    assert other_secret not in result.text

    await asyncio.gather(*(converse(u, s) for u, s in users.items()))
    # What the provider received: every request carries exactly one user's secret.
    assert len(upstream.chat_requests) == 60 * 3
    for req in upstream.chat_requests:
        text = " ".join(m["content"] for m in req.messages)
        owners = [u for u, s in users.items() if s in text]
        assert len(owners) == 1, owners


async def test_cache_isolation_prevents_leakage(client_factory, upstream: FakeUpstream) -> None:
    alice = client_factory("alice")
    bob = client_factory("bob")
    prompt = "the very same prompt"
    first = await alice.ask_full(prompt)
    assert not first.metadata.cached
    assert await alice.is_cached(prompt)
    assert not await bob.is_cached(prompt)
    again = await alice.ask_full(prompt)
    assert again.metadata.cached and again.text == first.text
    assert len(upstream.chat_requests) == 1
    theirs = await bob.ask_full(prompt)
    assert not theirs.metadata.cached
    assert len(upstream.chat_requests) == 2
    assert theirs.metadata.response_id != first.metadata.response_id


async def test_user_context_scoped_cache_keys(client_factory) -> None:
    args = dict(
        session_id=None,
        thread_id=None,
        model="m",
        params=GenerationParams(temperature=0.2),
        messages=(ChatMessage("user", "hi"),),
    )
    k_alice = cache_key(user_id="alice", **args)
    assert k_alice == cache_key(user_id="alice", **args)
    assert k_alice != cache_key(user_id="bob", **args)
    assert k_alice != cache_key(user_id="alice", **{**args, "session_id": "s1"})
    assert k_alice != cache_key(user_id="alice", **{**args, "model": "other"})
    assert k_alice != cache_key(
        user_id="alice", **{**args, "params": GenerationParams(temperature=0.3)}
    )
    assert k_alice != cache_key(
        user_id="alice", **{**args, "messages": (ChatMessage("user", "hi!"),)}
    )
    # No field boundary can be shifted to forge another user's key.
    assert cache_key(user_id="ab", **{**args, "session_id": "c"}) != cache_key(
        user_id="a", **{**args, "session_id": "bc"}
    )
    # Stable across processes (Python's hash() is salted per process; ours is not).
    code = (
        "from llm_sidecar.core.state.cache_keys import cache_key;"
        "from llm_sidecar.core.vocabulary.models import ChatMessage, GenerationParams;"
        "print(cache_key(user_id='alice', session_id=None, thread_id=None, model='m',"
        "params=GenerationParams(temperature=0.2), messages=(ChatMessage('user','hi'),)))"
    )
    for seed in ("1", "2"):
        out = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        )
        assert out.stdout.strip() == k_alice
    # Over the wire: the same prompt is cached for its asker only.
    alice, bob = client_factory("alice"), client_factory("bob")
    await alice.ask("scoped")
    assert await alice.is_cached("scoped") and not await bob.is_cached("scoped")
    assert not await alice.is_cached("scoped", temperature=0.5)


async def test_manager_memory_isolation(
    sidecar: Sidecar, client_factory, upstream: FakeUpstream
) -> None:
    a_secret, b_secret = marker(), marker()
    alice = client_factory("alice", session_id="s")
    bob = client_factory("bob", session_id="s")
    await alice.ask(f"alice {a_secret}")
    await bob.ask(f"bob {b_secret}")
    await bob.ask(f"bob again {b_secret}")

    a_conv = await alice.get_conversation()
    b_conv = await bob.get_conversation()
    assert all(b_secret not in m.content for m in a_conv.messages)
    assert all(a_secret not in m.content for m in b_conv.messages)
    assert len(a_conv.messages) == 2 and len(b_conv.messages) == 4
    a_usage, b_usage = await alice.get_usage(), await bob.get_usage()
    assert a_usage.total.requests == 1 and b_usage.total.requests == 2
    # Same session id, different users: distinct histories, and ending one leaves the other.
    await alice.end_session()
    assert (await alice.get_conversation()).messages == ()
    assert len((await bob.get_conversation()).messages) == 4
    a, b = sidecar.registry.get("alice"), sidecar.registry.get("bob")
    assert a is not None and b is not None
    assert len(a.cache) == 0 and len(b.cache) == 2
    assert sidecar.budget.entries == len(a.cache) + len(b.cache)


async def test_concurrent_cache_operations_safety(
    sidecar: Sidecar, client_factory, upstream: FakeUpstream
) -> None:
    prompts = [f"shared prompt {i}" for i in range(5)]
    users = [f"u{i}" for i in range(50)]

    async def hammer(user_id: str) -> None:
        client = client_factory(user_id)
        results = await asyncio.gather(*(client.ask_full(p) for p in prompts * 3))
        for prompt, result in zip(prompts * 3, results, strict=True):
            assert result.text == f"primary says: {prompt} (turn 1)"
        for prompt in prompts:
            assert await client.is_cached(prompt)

    await asyncio.gather(*(hammer(u) for u in users))
    managers = [sidecar.registry.get(u) for u in users]
    assert all(m is not None and len(m.cache) == len(prompts) for m in managers)
    assert sidecar.budget.entries == len(users) * len(prompts)
    assert sidecar.budget.bytes == sum(m.cache.bytes for m in managers if m)
    # Every request was either sent upstream or a hit in its own user's cache.
    hits = sum(m.cache.hits for m in managers if m)
    assert len(upstream.chat_requests) + hits == len(users) * len(prompts) * 3


async def test_manager_cleanup_isolation(sidecar: Sidecar, client_factory) -> None:
    alice = client_factory("alice", session_id="s")
    bob = client_factory("bob", session_id="s")
    for i in range(3):
        await alice.ask(f"a{i}")
        await bob.ask(f"b{i}")
    released = await alice.release_manager()
    assert released.released and released.cache_entries_freed == 3
    assert sidecar.registry.get("alice") is None
    assert not await alice.is_cached("a0")
    assert (await alice.get_conversation()).messages == ()
    bob_manager = sidecar.registry.get("bob")
    assert bob_manager is not None and len(bob_manager.cache) == 3
    assert len((await bob.get_conversation()).messages) == 6
    assert sidecar.budget.entries == 3
    again = await alice.release_manager()
    assert not again.released and again.cache_entries_freed == 0
    # A released user comes back to a fresh manager.
    await alice.ask("a0")
    fresh = sidecar.registry.get("alice")
    assert fresh is not None and len(fresh.cache) == 1


async def test_deprecated_singleton_isolation_warning(sidecar: Sidecar, client_factory) -> None:
    alice = client_factory("alice", session_id="s")
    await alice.ask("private")
    with pytest.warns(DeprecationWarning, match="create_llm_manager"):
        legacy = get_llm_manager()
    assert legacy.is_cached("private") is False
    assert legacy.conversation() == [] and legacy.usage() == []
    with pytest.raises(IsolationViolationError):
        legacy.ask("private")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(DeprecationWarning):
            get_llm_manager()


async def test_stress_user_creation_cleanup(sidecar: Sidecar, upstream: FakeUpstream) -> None:
    target = f"127.0.0.1:{sidecar.port}"
    base = AsyncLLMManagerClient(target, UserContext("seed"), timeout=20)
    semaphore = asyncio.Semaphore(64)
    bad: list[str] = []

    async def lifecycle(i: int) -> None:
        async with semaphore:
            user = f"churn-{i}"
            client = base.with_context(UserContext(user, session_id="s"))
            secret = marker()
            text = await client.ask(f"{user} {secret}")
            if text != f"primary says: {user} {secret} (turn 1)":
                bad.append(user)
            released = await client.release_manager()
            if not released.released or released.cache_entries_freed != 1:
                bad.append(user)

    try:
        await asyncio.gather(*(lifecycle(i) for i in range(1000)))
    finally:
        await base.close()
    assert bad == []
    assert len(sidecar.registry) == 0
    assert sidecar.budget.entries == 0 and sidecar.budget.bytes == 0
    assert sidecar.registry.created == 1000 and sidecar.registry.released == 1000
    assert len(upstream.chat_requests) == 1000


async def test_a_cookie_an_upstream_sets_for_one_user_never_reaches_it_with_another(
    upstream: FakeUpstream, sidecar_factory
) -> None:
    """Every user's calls share a provider's HTTP connections; state an upstream hands
    back (a gateway's sticky-session cookie) must not ride on the next user's call.
    (By a host name: aiohttp keeps no cookies of an IP address.)"""
    upstream.set_cookie = f"alice-{marker()}"
    url = f"http://localhost:{upstream.port}/v1"
    sidecar = await sidecar_factory(make_settings([provider("primary", url)]))
    for user, prompt in (("alice", "alice first"), ("bob", "bob next"), ("alice", "again")):
        async with AsyncLLMManagerClient(f"127.0.0.1:{sidecar.port}", UserContext(user)) as client:
            await client.ask(prompt)
    assert [r.headers.get("Cookie") for r in upstream.chat_requests] == [None, None, None]
