"""Placeholders are one user's: 200 users at once, each with a value of their own
behind the same placeholder, each typing the placeholders the others' values get.
No restoration crosses users, with histories in memory, Redis or Redis Cluster."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from llm_manager_client import AsyncLLMManagerClient, UserContext
from tests.integration.guardrails.conftest import GUARDRAILS, guarded_models
from tests.support.sidecar import make_settings

USERS = 200


async def test_no_restoration_crosses_users(
    store_settings: dict[str, Any], upstream_factory, sidecar_factory
) -> None:
    gpt, claude = await upstream_factory("gpt"), await upstream_factory("claude")
    settings = make_settings(
        models=guarded_models(gpt, claude),
        guardrails=GUARDRAILS,
        **store_settings,
    )
    sidecar = await sidecar_factory(settings)
    shared = AsyncLLMManagerClient(f"127.0.0.1:{sidecar.port}", UserContext("u0"), timeout=30)

    async def user(i: int) -> tuple[str, str]:
        client = shared.with_context(UserContext(f"user-{i}", session_id="s", thread_id="t"))
        mine = f"person{i}@corp.example"
        # Turn 1 puts the address in the thread's stored history, as <EMAIL_1>.
        first = await client.ask(f"remember {mine} please", model="gpt")
        # Turn 2 types the placeholders every other user's address gets, beside it.
        second = await client.ask(f"is <EMAIL_1> or <EMAIL_2> {mine}?", model="claude")
        return first, second

    try:
        answers = await asyncio.gather(*(user(i) for i in range(USERS)))
    finally:
        await shared.close()
    for i, (first, second) in enumerate(answers):
        mine = f"person{i}@corp.example"
        assert first == f"gpt says: remember {mine} please (turn 1)"
        assert second.startswith(f"claude says: is <EMAIL_1> or <EMAIL_2> {mine}? (turn ")
        assert second.count("@") == 1
    sent = json.dumps([r.body for r in gpt.requests + claude.requests])
    assert "@corp.example" not in sent
    # Each user's second turn: their history's address and the one typed got the same
    # placeholder, one the user did not type.
    assert sent.count("<EMAIL_3>") >= USERS
